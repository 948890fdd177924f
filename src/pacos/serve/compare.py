"""Blind side-by-side comparisons in progress: what the server showed, kept by the server, so a vote can't lie.

A compare session holds the pairing (two different models drawn at random), the left/right assignment
(A is the first of the draw), the context and sampling, and the two texts exactly as they were streamed.
The page only ever learns the session's random id and the letters A and B; its vote names the session and
the choice, nothing else, and the row stored is built from what is held here. A session takes one vote,
and only once both answers have ended. Sessions are bounded in number (the oldest is dropped first) and in
age, so a client that starts many and never votes holds only a fixed amount of memory.
"""

from __future__ import annotations

import random
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field

from pacos.serve.protocol import APIError

MAX_SESSIONS = 256
SESSION_SECONDS = 3600.0  # time to read two answers and vote
SIDES = ("a", "b")


@dataclass
class CompareSession:
    id: str
    models: tuple[str, str]  # (A, B): A is shown on the left
    context: list[dict]  # [{role, content}]: system prompt (if any) + the question
    params: dict  # the sampling the page asked for
    created: float
    texts: list[str] = field(default_factory=lambda: ["", ""])
    finished: list[bool] = field(default_factory=lambda: [False, False])
    failed: bool = False
    vote: str | None = None  # set once, when the vote is taken

    @property
    def complete(self) -> bool:
        return all(self.finished) and not self.failed


class CompareSessions:
    """The sessions of one server, oldest first; `rng` draws the pairs (a system source: no page can guess)."""

    def __init__(self, max_sessions: int = MAX_SESSIONS, max_age: float = SESSION_SECONDS,
                 rng: random.Random | None = None, clock=time.monotonic):
        self.max_sessions, self.max_age, self.clock = max_sessions, max_age, clock
        self.rng = rng or random.SystemRandom()
        self._sessions: OrderedDict[str, CompareSession] = OrderedDict()

    def __len__(self) -> int:
        return len(self._sessions)

    def draw(self, names: list[str]) -> tuple[str, str]:
        """Two different models in a random order: (A, B)."""
        if len(names) < 2:
            raise APIError(404, "comparing needs two or more models: start pacos serve with several, e.g. "
                           "pacos serve base=MODEL tuned=MODEL", code="not_found")
        a, b = self.rng.sample(names, 2)
        return a, b

    def open(self, models: tuple[str, str], context: list[dict], params: dict) -> CompareSession:
        self._expire()
        while len(self._sessions) >= self.max_sessions:
            self._sessions.popitem(last=False)
        session = CompareSession(uuid.uuid4().hex, models, context, params, self.clock())
        self._sessions[session.id] = session
        return session

    def get(self, session_id: str) -> CompareSession:
        self._expire()
        session = self._sessions.get(session_id)
        if session is None:
            raise APIError(404, f"No comparison '{session_id[:64]}' on this server: it is unknown, expired (after "
                           f"{self.max_age:.0f} s) or was dropped for newer ones; ask the question again",
                           param="session", code="comparison_not_found")
        return session

    def take_vote(self, session_id: str, vote: str) -> CompareSession:
        """Mark the session voted (once, and only once both answers have ended); the caller stores the row."""
        session = self.get(session_id)
        if session.vote is not None:
            raise APIError(409, "This comparison already has its vote; each takes one", param="session",
                           code="already_voted")
        if session.failed:
            raise APIError(409, "A generation of this comparison failed, so it takes no vote; ask again",
                           param="session", code="comparison_failed")
        if not session.complete:
            raise APIError(409, "Both answers must finish before the vote", param="session",
                           code="comparison_not_finished")
        session.vote = vote
        return session

    def _expire(self) -> None:
        oldest = self.clock() - self.max_age
        while self._sessions and next(iter(self._sessions.values())).created < oldest:
            self._sessions.popitem(last=False)
