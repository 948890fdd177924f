"""Crash-safe run files: kept records appended to OUT.jsonl, one raw-log line per committed batch beside it.

Each batch is committed in order: its kept records are appended to OUT.jsonl and flushed, then its log line
(prompts, raw answers cut at RAW_TEXT_CAP characters, usage, timing, discards) is appended to OUT.raw.jsonl.
A batch counts as done only once its log line is whole, so on resume a torn last line in either file is cut
off, records of a batch without a log line (killed between the two writes) are cut off too, and generation
continues with the next batch: nothing is duplicated, and only batches in flight are lost.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from pacos.errors import DataError
from pacos.remote.reply import Reply
from pacos.self_instruct.parse import Candidate

RAW_TEXT_CAP = 64 * 1024  # characters of one answer kept in the raw log; a real answer is ~15 KB


def raw_log_path(out: str | os.PathLike) -> Path:
    """The sidecar log of an output file: `regen.jsonl` -> `regen.raw.jsonl`."""
    out = Path(out)
    stem = out.name[: -len(".jsonl")] if out.name.endswith(".jsonl") else out.name
    return out.with_name(f"{stem}.raw.jsonl")


@dataclass
class Resumed:
    """What an earlier run left: kept records and committed batches' log entries, in order."""

    records: list[dict] = field(default_factory=list)
    log: list[dict] = field(default_factory=list)
    torn_lines: int = 0  # partial last lines cut off
    orphans: int = 0  # records of a batch whose log line was never written, cut off

    @property
    def next_batch(self) -> int:
        return max((entry["batch"] for entry in self.log), default=-1) + 1


def read_appended_jsonl(path: Path) -> tuple[list[tuple[dict, int]], int, bool]:
    """(object, end offset) per whole line, the offset where whole lines end, and whether a torn tail follows.

    Only the last line may be torn (appends die mid-write); a bad line before it means the file is not ours.
    """
    if not path.exists():
        return [], 0, False
    lines = path.read_bytes().split(b"\n")  # the last piece is what follows the last newline
    items, offset, torn = [], 0, False
    for i, line in enumerate(lines):
        end = offset + len(line) + 1
        if line.strip():
            try:
                obj = json.loads(line)
            except ValueError:
                obj = None
            if i == len(lines) - 1 or not isinstance(obj, dict):  # no newline after it, or not a whole object
                if any(rest.strip() for rest in lines[i + 1:]):
                    raise DataError(f"{path}:{i + 1}: not a JSON object line; this file was not written by "
                                    "pacos self-instruct (or was edited): fix or move it away")
                torn = True
                break
            items.append((obj, end))
        offset = end
    return items, (items[-1][1] if items else 0), torn


def record(candidate: Candidate, decision, batch: int, **extra) -> dict:
    """An output record: trainable fields first, then where it came from and how novel it was."""
    return {"instruction": candidate.instruction, "input": candidate.input, "output": candidate.output,
            **extra, "similarity": decision.score, "nearest": decision.nearest, "batch": batch}


def capped_text(text: str) -> dict:
    """An answer's text for the raw log: at most RAW_TEXT_CAP characters, and how many were cut if any."""
    if len(text) <= RAW_TEXT_CAP:
        return {"text": text}
    return {"text": text[:RAW_TEXT_CAP], "cut_chars": len(text) - RAW_TEXT_CAP}


def raw_entry(pipeline: str, prompts: list[str], reply: Reply, discards: Counter, **extra) -> dict:
    """The sidecar-log line of a batch (its `batch`, `kept` and `time` are added at commit)."""
    return {"pipeline": pipeline, "prompts": prompts,
            "answers": [{**capped_text(a.text), "finish_reason": a.finish_reason, "error": a.error}
                        for a in reply.answers],
            "usage": {"prompt_tokens": reply.prompt_tokens, "completion_tokens": reply.completion_tokens},
            "requests": reply.requests, "seconds": round(reply.seconds, 3), "discards": dict(discards), **extra}


class RunStore:
    """The output file and its raw log, opened for appending after reconciling what a previous run left."""

    def __init__(self, out: str | os.PathLike):
        self.out = Path(out)
        self.log_path = raw_log_path(out)
        self._out_file = self._log_file = None

    def resume(self) -> Resumed:
        """Read both files, cut torn tails and orphan records, and open them for appending."""
        log_items, log_end, log_torn = read_appended_jsonl(self.log_path)
        out_items, out_end, out_torn = read_appended_jsonl(self.out)
        committed = {obj.get("batch") for obj, _ in log_items}
        keep = len(out_items)
        while keep and out_items[keep - 1][0].get("batch") not in committed:
            keep -= 1  # batches commit in order, so orphans can only sit at the end
        out_end = out_items[keep - 1][1] if keep else 0
        self.out.parent.mkdir(parents=True, exist_ok=True)
        for path, end in ((self.out, out_end), (self.log_path, log_end)):
            with open(path, "ab") as f:
                f.truncate(end)
        self._out_file = open(self.out, "a", encoding="utf-8")
        self._log_file = open(self.log_path, "a", encoding="utf-8")
        return Resumed([obj for obj, _ in out_items[:keep]], [obj for obj, _ in log_items],
                       int(log_torn) + int(out_torn), len(out_items) - keep)

    def commit(self, records: list[dict], log_entry: dict) -> None:
        """Append a batch's kept records, then its log line; each write flushed to disk before the next."""
        if records:
            _append(self._out_file, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
        _append(self._log_file, json.dumps(log_entry, ensure_ascii=False) + "\n")

    def close(self) -> None:
        for f in (self._out_file, self._log_file):
            if f is not None:
                f.close()


def _append(f, text: str) -> None:
    f.write(text)
    f.flush()
    os.fsync(f.fileno())
