"""Alpaca's quality filters on generated tasks, each with a named reason so discards can be counted.

The rules' data per language (limits, blacklist, ...) are in languages.py.
"""

from __future__ import annotations

from pacos.self_instruct.languages import ENGLISH, Language
from pacos.self_instruct.parse import Candidate

# Every reason a candidate or an answer can be discarded for, in the order they are checked.
REASONS = (
    "unparseable_response",  # the HTTP answer itself could not be read
    "malformed",  # a block that is not a complete numbered task
    "truncated",  # the last block of an answer that hit --max-tokens
    "too_short",  # instruction of 3 words or fewer (Chinese: 5 characters or fewer)
    "too_long",  # instruction of more than 150 words (Chinese: 300 characters)
    "blacklisted",
    "write_a_program",
    "starts_with_punctuation",
    "non_ascii_start",  # English only
    "wrong_language",  # Chinese: an instruction without a Han character
    "empty_output",  # nothing to train on
    "similar",  # ROUGE-L F > threshold with a seed or an earlier kept instruction
    "no_instance",  # --pipeline self-instruct: no usable instance generated for a novel instruction
)


def rejection_reason(candidate: Candidate, language: Language = ENGLISH) -> str | None:
    """Why Alpaca's filters, in `language`'s version, drop this candidate (before the novelty check), or None."""
    instruction = candidate.instruction
    length = language.length(instruction)
    if length < language.min_length:
        return "too_short"
    if length > language.max_length:
        return "too_long"
    if language.blacklist and language.blacklist.search(instruction):
        return "blacklisted"
    if language.program and language.program.match(instruction):
        return "write_a_program"
    if language.starts_with_punctuation(instruction):
        return "starts_with_punctuation"
    if language.ascii_start and not instruction[0].isascii():
        return "non_ascii_start"
    if language.script and not language.script.search(instruction):
        return "wrong_language"
    if not candidate.output.strip():
        return "empty_output"
    return None
