"""Every judgement kept in SQLite (WAL, one commit per finished game), keyed by what decides the verdict:
a rerun sends no request for a game already judged, and a killed run loses only the games in flight."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path

from pacos.errors import DataError


def game_key(judge_model: str, prompt_version: str, question_key: str, turn: int, answers: list[list[str]],
             order: str, logprobs: bool, reference: str | None = None) -> str:
    """sha256 over everything that makes the judge's request (the prompt text follows from the version)."""
    parts = [judge_model, prompt_version, question_key, turn, answers, order, logprobs, reference]
    return hashlib.sha256(json.dumps(parts, ensure_ascii=False, separators=(",", ":")).encode()).hexdigest()


class JudgementCache:
    """key -> the finished game (a JSON object), in the SQLite file at `path`."""

    def __init__(self, path):
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, isolation_level=None)  # autocommit: one write, one commit
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")  # a killed process loses nothing committed
            self._db.execute("CREATE TABLE IF NOT EXISTS games (key TEXT PRIMARY KEY, game TEXT NOT NULL)")
        except (sqlite3.Error, OSError) as e:
            raise DataError(f"{self.path}: not a usable judgement cache ({e}); pass another --cache FILE "
                            "or remove this one") from None

    def get(self, key: str) -> dict | None:
        row = self._db.execute("SELECT game FROM games WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def put(self, key: str, game: dict) -> None:
        self._db.execute("INSERT OR REPLACE INTO games (key, game) VALUES (?, ?)",
                         (key, json.dumps(game, ensure_ascii=False)))

    def __len__(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM games").fetchone()[0]

    def close(self) -> None:
        self._db.close()
