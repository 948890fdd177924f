"""Quality scores of instruction records (AlpaGasus): pacos's rating prompt, the strict reader of its reply,
where a score lives in a record, and the histogram of scores. Pure functions on plain data.

The judge answers in one format only: a first line `Score: N` (N from 0 to 5, at most two decimals), then a
short explanation. Anything else is no score (None), whatever number it mentions, so a judge that rambles,
rates 7/5 or says NaN is asked again rather than believed.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from pacos.data.records import Conversation, Example, Record
from pacos.remote.reply import one_line

QUALITY_FIELD = "quality"  # the extra field of a record holding {score, reason, judge, prompt} (or error)
MAX_SCORE = 5.0
BIN_WIDTH = 0.5
REASON_CHARS = 500  # the judge's explanation kept in the record, on one line


@dataclass(frozen=True)
class ScorePrompt:
    version: str  # bump it whenever `system` or `user` changes: it is part of every cache key
    system: str
    user: str  # str.format fields: instruction, input, response


SCORE_V1 = ScorePrompt(
    "score-v1",
    "You review training data for an AI assistant. Each example is an instruction, an optional input that "
    "the instruction refers to, and a response written for them. Rate how accurate and helpful the response "
    "is as an answer to the instruction and its input, on a scale from 0 to 5: 5 means correct, complete and "
    "as helpful as the instruction allows; 4 good with a small flaw; 3 acceptable but with gaps or a minor "
    "error; 2 partly wrong or partly off the point; 1 mostly wrong or unhelpful; 0 wrong, off-topic, empty "
    "or harmful. Judge what the response says, not its length or its tone. Reply in exactly this format: "
    "a first line `Score: N`, where N is a number from 0 to 5 in steps of 0.5 (for example `Score: 4.5`), "
    "then a line of one or two sentences explaining the score.",
    "[Instruction]\n{instruction}\n\n[Input]\n{input}\n\n[Response]\n{response}\n[End of response]",
)
SCORE_PROMPT = SCORE_V1  # the prompt `pacos data score` uses

_SCORE_LINE = re.compile(r"Score:[ \t]*(\d(?:\.\d{1,2})?)[ \t]*")
_HEAD_CHARS = 8 * REASON_CHARS  # of a reply, what is read: blank lines, the score line and the reason


@dataclass(frozen=True)
class Rated:
    """What the judge is shown of one record."""

    instruction: str
    input: str
    response: str


def rated_of(record: Record) -> Rated | None:
    """The instruction, input and response of a record; None for a conversation of more than one exchange
    (AlpaGasus rates single instructions; a transcript would need another prompt)."""
    if isinstance(record, Example):
        return Rated(record.instruction, record.input, record.output)
    assert isinstance(record, Conversation)
    turns = record.turns
    if len(turns) == 2 and turns[0].role == "user" and turns[1].role == "assistant":
        return Rated(turns[0].content, "", turns[1].content)
    return None


def score_messages(rated: Rated, prompt: ScorePrompt = SCORE_PROMPT) -> list[dict]:
    user = prompt.user.format(instruction=rated.instruction, input=rated.input or "(none)", response=rated.response)
    return [{"role": "system", "content": prompt.system}, {"role": "user", "content": user}]


def parse_score(text: str) -> tuple[float, str] | None:
    """(score, reason) from a reply of the prompt's format; None when the first non-blank line is not exactly
    `Score: N` with 0 <= N <= 5. Reads at most a few KB, whatever the reply's size."""
    if not isinstance(text, str):
        return None
    head = text[:_HEAD_CHARS].lstrip()
    first, _, rest = head.partition("\n")
    m = _SCORE_LINE.fullmatch(first.rstrip("\r"))
    if m is None:
        return None
    score = float(m.group(1))
    return (score, one_line(rest, REASON_CHARS)) if 0 <= score <= MAX_SCORE else None


def score_of(record: Record) -> float | None:
    """The record's quality score, or None when it has none that is a number in 0..5 (unscored, a failed
    judgement, or a field edited into something else)."""
    quality = record.extra.get(QUALITY_FIELD)
    score = quality.get("score") if isinstance(quality, dict) else None
    if isinstance(score, bool) or not isinstance(score, (int, float)):
        return None
    return float(score) if math.isfinite(score) and 0 <= score <= MAX_SCORE else None


def bin_edges() -> list[float]:
    """Lower edges of the histogram's bins: [0, 0.5), [0.5, 1), ..., [4.5, 5) and 5 alone."""
    return [i * BIN_WIDTH for i in range(int(MAX_SCORE / BIN_WIDTH) + 1)]


def histogram(scores) -> list[tuple[float, int]]:
    """(lower edge, count) for every bin, empty ones included."""
    counts = dict.fromkeys(bin_edges(), 0)
    for s in scores:
        counts[min(math.floor(s / BIN_WIDTH), int(MAX_SCORE / BIN_WIDTH)) * BIN_WIDTH] += 1
    return list(counts.items())


def bin_label(edge: float) -> str:
    return f"{edge:g}" if edge >= MAX_SCORE else f"{edge:g}-<{edge + BIN_WIDTH:g}"


def describe_histogram(scores) -> str:
    """One line: `scores: 0-<0.5 n | ... | 5 n`."""
    return "scores: " + " | ".join(f"{bin_label(edge)} {n}" for edge, n in histogram(scores))
