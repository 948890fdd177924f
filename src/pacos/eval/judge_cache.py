"""The cache key of a judge's game: what decides the verdict. The games are kept in remote.cache's
JudgementCache: a rerun sends no request for a game already judged, and a killed run loses only the games in
flight."""

from __future__ import annotations

import hashlib
import json


def game_key(judge_model: str, prompt_version: str, question_key: str, turn: int, answers: list[list[str]],
             order: str, logprobs: bool, reference: str | None = None) -> str:
    """sha256 over everything that makes the judge's request (the prompt text follows from the version)."""
    parts = [judge_model, prompt_version, question_key, turn, answers, order, logprobs, reference]
    return hashlib.sha256(json.dumps(parts, ensure_ascii=False, separators=(",", ":")).encode()).hexdigest()
