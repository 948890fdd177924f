"""Votes from the web pages, kept durably in SQLite and exported as SFT records or DPO preference pairs.

Each response the page shows is stored once with everything needed to train on it later: the
conversation up to it (system prompt included), the response text, model name and revision, template,
sampling parameters and time. A regenerated answer records which one it replaced, so the replaced one is
kept as a rejected alternative. Votes are an append-only log ("up", "down", "clear", "flag", "unflag");
a response's rating is its latest up/down/clear vote. SQLite in WAL mode with one connection per call:
the server's threads and a concurrent `pacos feedback export` never block each other for long. Export and
stats open the file read-only (`FeedbackStore(path, create=False)`): reading never changes it.

Blind side-by-side votes from the compare page are one row each in `comparisons`: the context, both models
as shown (A left), their revisions and templates, both texts as the server streamed them, the sampling and
the vote ("a", "b", "tie", "both_bad"). A database from before comparisons gets the table when the server
opens it; read-only, it simply has none.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import sqlite3
import time
from contextlib import closing
from pathlib import Path
from urllib.parse import quote

from pacos.errors import PacosError

VOTES = ("up", "down", "clear", "flag", "unflag")
COMPARISON_VOTES = ("a", "b", "tie", "both_bad")
SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
  id TEXT PRIMARY KEY,
  conversation_id TEXT,
  context TEXT NOT NULL,          -- JSON list of {role, content}: the conversation up to this response
  context_hash TEXT NOT NULL,     -- groups alternatives to the same context
  response TEXT NOT NULL,
  model TEXT, revision TEXT, template TEXT,
  params TEXT,                    -- JSON sampling parameters
  regenerated_from TEXT,          -- the response this one replaced (that one becomes a rejected alternative)
  created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS responses_context ON responses(context_hash);
CREATE TABLE IF NOT EXISTS votes (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  response_id TEXT NOT NULL REFERENCES responses(id),
  vote TEXT NOT NULL,
  created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS votes_response ON votes(response_id);
CREATE TABLE IF NOT EXISTS comparisons (
  id TEXT PRIMARY KEY,            -- the compare session: one vote each
  context TEXT NOT NULL,          -- JSON list of {role, content}: system prompt + question
  model_a TEXT NOT NULL, revision_a TEXT, template_a TEXT,   -- A: shown on the left
  model_b TEXT NOT NULL, revision_b TEXT, template_b TEXT,
  response_a TEXT NOT NULL, response_b TEXT NOT NULL,        -- exactly as the server streamed them
  params TEXT,                    -- JSON sampling parameters (the same for both)
  vote TEXT NOT NULL,             -- "a", "b", "tie" or "both_bad"
  created_at REAL NOT NULL
);
"""


def default_feedback_path() -> Path:
    from platformdirs import user_data_dir

    return Path(user_data_dir("pacos")) / "feedback.sqlite3"


def context_hash(context: list[dict]) -> str:
    canonical = json.dumps([[m["role"], m["content"]] for m in context], ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


class FeedbackStore:
    """The feedback database; `create=False` opens an existing one read-only (for export and stats)."""

    def __init__(self, path: str | Path, create: bool = True):
        self.path, self.read_only = Path(path).expanduser(), not create
        if self.read_only and not self.path.is_file():
            raise PacosError(f"{self.path}: no such feedback database (pacos serve writes it; see --feedback-db)")
        if not self.read_only:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with closing(self._connect()) as db:
                if self.read_only:
                    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
                    if not {"responses", "votes"} <= tables:
                        raise PacosError(f"{self.path}: not a pacos feedback database (no responses/votes tables)")
                else:
                    db.execute("PRAGMA journal_mode=WAL")
                    db.executescript(SCHEMA)
        except sqlite3.Error as e:  # "file is not a database", a read-only directory, a locked file...
            raise self._unusable(e) from None

    def _connect(self) -> sqlite3.Connection:
        try:
            if self.read_only:  # mode=ro: SQLite itself refuses any write, so reading can't change the file
                db = sqlite3.connect(f"file:{quote(str(self.path.resolve()))}?mode=ro", uri=True, timeout=30,
                                     isolation_level=None)
            else:
                db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
                db.execute("PRAGMA synchronous=NORMAL")  # durable across process crashes in WAL mode
        except sqlite3.Error as e:
            raise self._unusable(e) from None
        db.row_factory = sqlite3.Row
        return db

    def _unusable(self, e: sqlite3.Error) -> PacosError:
        return PacosError(f"{self.path}: can't use it as a feedback database ({e}); give a new file or one that "
                          "pacos serve wrote")

    def record(self, *, response_id: str, context: list[dict], response: str, conversation_id: str | None = None,
               model: str = "", revision: str = "", template: str = "", params: dict | None = None,
               regenerated_from: str | None = None, vote: str | None = None) -> None:
        """Store a response (once; later calls only add their vote) and optionally a vote on it."""
        if vote is not None and vote not in VOTES:
            raise PacosError(f"unknown vote {vote!r}; one of: {', '.join(VOTES)}")
        now = time.time()
        with closing(self._connect()) as db:
            db.execute("BEGIN IMMEDIATE")
            db.execute(
                "INSERT OR IGNORE INTO responses VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (response_id, conversation_id, json.dumps(context, ensure_ascii=False), context_hash(context),
                 response, model, revision, template, json.dumps(params or {}), regenerated_from, now))
            if vote is not None:
                db.execute("INSERT INTO votes (response_id, vote, created_at) VALUES (?,?,?)", (response_id, vote, now))
            db.execute("COMMIT")

    def vote(self, response_id: str, vote: str) -> bool:
        """Add a vote to a stored response; False if there is no such response."""
        if vote not in VOTES:
            raise PacosError(f"unknown vote {vote!r}; one of: {', '.join(VOTES)}")
        with closing(self._connect()) as db:
            db.execute("BEGIN IMMEDIATE")
            if db.execute("SELECT 1 FROM responses WHERE id=?", (response_id,)).fetchone() is None:
                db.execute("ROLLBACK")
                return False
            db.execute("INSERT INTO votes (response_id, vote, created_at) VALUES (?,?,?)",
                       (response_id, vote, time.time()))
            db.execute("COMMIT")
        return True

    def responses(self) -> list[dict]:
        """Every response with its current state: `rating` ("up"/"down"/None), `flagged`, `replaced`."""
        with closing(self._connect()) as db:
            rows = [dict(r) for r in db.execute("SELECT * FROM responses ORDER BY created_at, rowid")]
            votes = db.execute("SELECT response_id, vote FROM votes ORDER BY id").fetchall()
        rating: dict[str, str | None] = {}
        flagged: dict[str, bool] = {}
        for rid, vote in votes:
            if vote in ("up", "down", "clear"):
                rating[rid] = None if vote == "clear" else vote
            else:
                flagged[rid] = vote == "flag"
        replaced = {r["regenerated_from"] for r in rows if r["regenerated_from"]}
        for r in rows:
            r["context"], r["params"] = json.loads(r["context"]), json.loads(r["params"] or "{}")
            r["rating"], r["flagged"], r["replaced"] = rating.get(r["id"]), flagged.get(r["id"], False), r["id"] in replaced
        return rows

    def vote_count(self) -> int:
        with closing(self._connect()) as db:
            return db.execute("SELECT COUNT(*) FROM votes").fetchone()[0]

    def record_comparison(self, *, comparison_id: str, context: list[dict], model_a: str, model_b: str,
                          response_a: str, response_b: str, vote: str, revision_a: str = "", template_a: str = "",
                          revision_b: str = "", template_b: str = "", params: dict | None = None) -> bool:
        """Store one blind side-by-side vote; False if this comparison already has one (the first one stands)."""
        if vote not in COMPARISON_VOTES:
            raise PacosError(f"unknown comparison vote {vote!r}; one of: {', '.join(COMPARISON_VOTES)}")
        with closing(self._connect()) as db:
            cursor = db.execute(
                "INSERT OR IGNORE INTO comparisons VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (comparison_id, json.dumps(context, ensure_ascii=False), model_a, revision_a, template_a, model_b,
                 revision_b, template_b, response_a, response_b, json.dumps(params or {}), vote, time.time()))
            return cursor.rowcount == 1

    def comparisons(self) -> list[dict]:
        """Every blind side-by-side vote, oldest first: `id`, `context` (list of {role, content}), `model_a`,
        `model_b` (A was shown on the left), `revision_a/b`, `template_a/b`, `response_a`, `response_b`,
        `params` (dict), `vote` ("a", "b", "tie", "both_bad") and `created_at` (Unix time)."""
        with closing(self._connect()) as db:
            if db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='comparisons'").fetchone() is None:
                return []  # a database from before comparisons, opened read-only
            rows = [dict(r) for r in db.execute("SELECT * FROM comparisons ORDER BY created_at, rowid")]
        for r in rows:
            r["context"], r["params"] = json.loads(r["context"]), json.loads(r["params"] or "{}")
        return rows


# -- exports (pure functions of `FeedbackStore.responses()` and `.comparisons()`) ------------------------------
def is_chosen(r: dict) -> bool:
    return r["rating"] == "up" and not r["flagged"]


def is_rejected(r: dict) -> bool:
    """Downvoted or flagged, or replaced by a regeneration and never upvoted."""
    return r["rating"] == "down" or r["flagged"] or (r["replaced"] and r["rating"] != "up")


def sft_records(responses: list[dict]) -> list[dict]:
    """Upvoted, unflagged answers as OpenAI-messages records (the conversation up to the answer, then it)."""
    return [{"messages": r["context"] + [{"role": "assistant", "content": r["response"]}]}
            for r in responses if is_chosen(r)]


def dpo_pairs(responses: list[dict]) -> list[dict]:
    """TRL's conversational preference format: every chosen x rejected answer to the same context."""
    groups: dict[str, list[dict]] = {}
    for r in responses:
        groups.setdefault(r["context_hash"], []).append(r)
    pairs = []
    for group in groups.values():
        chosen = [r for r in group if is_chosen(r)]
        rejected = [r for r in group if is_rejected(r) and not is_chosen(r)]
        for c, j in itertools.product(chosen, rejected):
            pairs.append({"prompt": c["context"], "chosen": [{"role": "assistant", "content": c["response"]}],
                          "rejected": [{"role": "assistant", "content": j["response"]}]})
    return pairs


def comparison_pairs(comparisons: list[dict]) -> list[dict]:
    """A decisive side-by-side vote (A or B better) as one preference pair, in `dpo_pairs`' format; a tie or
    "both bad" says nothing about which answer to prefer, so it gives none."""
    pairs = []
    for c in comparisons:
        if c["vote"] in ("a", "b"):
            winner, loser = (c["response_a"], c["response_b"]) if c["vote"] == "a" else (c["response_b"], c["response_a"])
            pairs.append({"prompt": c["context"], "chosen": [{"role": "assistant", "content": winner}],
                          "rejected": [{"role": "assistant", "content": loser}]})
    return pairs


def feedback_stats(responses: list[dict], votes: int, comparisons: list[dict] = ()) -> dict:
    models: dict[str, int] = {}
    for r in responses:
        models[r["model"] or "?"] = models.get(r["model"] or "?", 0) + 1
    comparison_votes = {kind: sum(c["vote"] == kind for c in comparisons) for kind in COMPARISON_VOTES}
    return {
        "responses": len(responses),
        "conversations": len({r["conversation_id"] for r in responses}),
        "votes": votes,
        "upvoted": sum(r["rating"] == "up" for r in responses),
        "downvoted": sum(r["rating"] == "down" for r in responses),
        "flagged": sum(r["flagged"] for r in responses),
        "regenerated": sum(r["replaced"] for r in responses),
        "sft_records": len(sft_records(responses)),
        "dpo_pairs": len(dpo_pairs(responses)) + len(comparison_pairs(comparisons)),
        "models": models,
        "comparisons": len(comparisons),
        "comparison_votes": comparison_votes,
    }


def export_feedback(db: str | Path, fmt: str, out: str | Path, sft_style: str = "messages") -> int:
    """Write the SFT records or DPO pairs of `db` to `out` as JSONL (sft_style alpaca: Alpaca records, a JSON
    array when `out` ends in .json; multi-turn conversations have no Alpaca form and are left out)."""
    from pacos.data.atomic_write import write_objects
    from pacos.data.formats import save_records
    from pacos.data.records import Conversation, Message

    store = FeedbackStore(db, create=False)
    responses = store.responses()
    if fmt == "dpo":
        objects = dpo_pairs(responses) + comparison_pairs(store.comparisons())
    elif fmt == "sft" and sft_style == "alpaca":
        records = [Conversation([Message(m["role"], m["content"]) for m in o["messages"]])
                   for o in sft_records(responses)]
        records = [r for r in records if len(r.turns) == 2]
        save_records(records, out, "alpaca" if str(out).endswith(".json") else "jsonl")
        return len(records)
    elif fmt == "sft":
        objects = sft_records(responses)
    else:
        raise PacosError(f"unknown export format {fmt!r}; choose dpo or sft")
    write_objects(objects, out, as_lines=True)
    return len(objects)
