"""Alpaca's quality filters on generated tasks, each with a named reason so discards can be counted."""

from __future__ import annotations

import re

from pacos.self_instruct.parse import Candidate

# Things a text-only model cannot do well (stanford_alpaca's blacklist), matched as whole words, any case.
BLACKLIST = (
    "image", "images", "graph", "graphs", "picture", "pictures", "file", "files", "map", "maps",
    "draw", "plot", "go to", "video", "audio", "music", "flowchart", "diagram",
)
_BLACKLIST_RE = re.compile(r"\b(?:" + "|".join(re.escape(w) for w in BLACKLIST) + r")\b", re.I)
_PUNCTUATION = set("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")  # string.punctuation, as Alpaca tests it

# Every reason a candidate or an answer can be discarded for, in the order they are checked.
REASONS = (
    "unparseable_response",  # the HTTP answer itself could not be read
    "malformed",  # a block that is not a complete numbered task
    "truncated",  # the last block of an answer that hit --max-tokens
    "too_short",  # instruction of 3 words or fewer
    "too_long",  # instruction of more than 150 words
    "blacklisted",
    "write_a_program",
    "starts_with_punctuation",
    "non_ascii_start",
    "empty_output",  # nothing to train on
    "similar",  # ROUGE-L F > threshold with a seed or an earlier kept instruction
    "no_instance",  # --pipeline self-instruct: no usable instance generated for a novel instruction
)


def rejection_reason(candidate: Candidate) -> str | None:
    """Why Alpaca's filters drop this candidate (before the novelty check), or None to keep it."""
    instruction = candidate.instruction
    words = len(instruction.split())
    if words <= 3:
        return "too_short"
    if words > 150:
        return "too_long"
    if _BLACKLIST_RE.search(instruction):
        return "blacklisted"
    if instruction.lower().startswith("write a program"):
        return "write_a_program"
    if instruction[0] in _PUNCTUATION:
        return "starts_with_punctuation"
    if not instruction[0].isascii():
        return "non_ascii_start"
    if not candidate.output.strip():
        return "empty_output"
    return None
