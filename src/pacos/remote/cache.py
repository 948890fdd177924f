"""Every judgement of a remote judge kept in SQLite (WAL, one commit per finished judgement), keyed by what
decides it (the callers' keys: eval.judge_cache.game_key, data.quality_score.score_key): a rerun sends no
request for what is done, and a killed run loses only the requests in flight."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from pacos.errors import DataError


class JudgementCache:
    """key -> the finished judgement (a JSON object), in the SQLite file at `path`."""

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
