"""Preference pairs (prompt, chosen, rejected) read from TRL-format files, with FILE:LINE errors.

`pacos feedback export --format dpo` writes TRL's conversational form, one pair a line:
    {"prompt": [{"role": "user", "content": ...}, ...], "chosen": [{"role": "assistant", "content": ...}],
     "rejected": [{"role": "assistant", "content": ...}]}
The plain form with strings is read too; a string prompt is the user's message (rendered with the model's
template like any other), not text already rendered with one.
"""

from __future__ import annotations

from dataclasses import dataclass

from pacos.data.parse import RecordError, parse_conversation
from pacos.data.raw_files import read_raw
from pacos.data.records import Conversation, Message
from pacos.errors import DataError

KEYS = ("prompt", "chosen", "rejected")


@dataclass
class PreferencePair:
    context: Conversation  # the conversation up to the answer: optional system message, ends with a user turn
    chosen: str
    rejected: str
    kind: str = "conversation"  # "instruction" for a string prompt (see pairs_kind)


def parse_pair(obj) -> PreferencePair:
    if not isinstance(obj, dict) or not any(k in obj for k in KEYS):
        found = ", ".join(sorted(obj)) if isinstance(obj, dict) else type(obj).__name__
        raise RecordError(f"not a preference pair ({found or 'no keys'}); expected prompt/chosen/rejected, as "
                          "`pacos feedback export --format dpo` writes")
    missing = [k for k in KEYS if k not in obj]
    if missing:
        raise RecordError(f"no {' or '.join(repr(k) for k in missing)} (a pair needs prompt, chosen and rejected)")
    context = _prompt(obj["prompt"])
    chosen, rejected = _answer(obj["chosen"], "chosen"), _answer(obj["rejected"], "rejected")
    if chosen == rejected:
        raise RecordError("chosen and rejected are the same answer, so there is nothing to prefer")
    return PreferencePair(context, chosen, rejected, "instruction" if isinstance(obj["prompt"], str) else "conversation")


def _prompt(value) -> Conversation:
    if isinstance(value, str):
        if not value.strip():
            raise RecordError("empty 'prompt'")
        return Conversation([Message("user", value)])
    if not isinstance(value, list):
        raise RecordError(f"'prompt' is {type(value).__name__}; expected a list of messages or a string")
    try:
        conv = parse_conversation({"prompt": value}, "prompt", "role", "content", require_output=False)
    except RecordError as e:
        raise RecordError(f"'prompt': {e}") from None
    if conv.messages[-1].role != "user":
        raise RecordError("'prompt' must end with a user message (the answer to prefer comes after it)")
    return Conversation(conv.messages)


def _answer(value, key: str) -> str:
    if isinstance(value, list):
        if len(value) != 1 or not isinstance(value[0], dict) or value[0].get("role") != "assistant":
            raise RecordError(f"'{key}' must be one assistant message ([{{\"role\": \"assistant\", \"content\": "
                              "...}]) or a string")
        value = value[0].get("content")
    if not isinstance(value, str):
        raise RecordError(f"'{key}' has no text (got {type(value).__name__})")
    if not value.strip():
        raise RecordError(f"empty '{key}'")
    return value


def load_preferences(path) -> list[PreferencePair]:
    """Every pair of a JSONL (or JSON array) file; raises DataError naming the first bad record as FILE:LINE."""
    raw = read_raw(path)  # an empty or unreadable file raises here, naming it
    pairs = []
    for entry in raw.entries:
        if entry.error:
            raise DataError(f"{entry.where}: {entry.error}")
        try:
            pairs.append(parse_pair(entry.obj))
        except RecordError as e:
            raise DataError(f"{entry.where}: {e}") from None
    if not pairs:
        raise DataError(f"{raw.path}: no preference pairs")
    return pairs


def pairs_kind(pairs: list[PreferencePair]) -> str:
    """The record kind that picks the default template, as for SFT records: message prompts are conversations
    (like a messages file), string prompts instructions (like an Alpaca file)."""
    return "conversation" if any(p.kind == "conversation" for p in pairs) else "instruction"
