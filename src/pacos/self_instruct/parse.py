"""Teacher answers -> candidate tasks: the numbered `N. Instruction / Input / Output` blocks, `###`-separated.

Labels may be any prompted language's (`4. 指令：`), whatever the run's language: a teacher mixing them loses nothing.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field

from pacos.self_instruct.languages import no_input_markers, number_marks, task_labels


def _label(names: set[str]) -> str:
    """A label of any language, with an ASCII or full-width colon: `Input:`, `输入：`."""
    return "(?:" + "|".join(sorted(map(re.escape, names))) + r")[ \t]*[:：]"


# Task numbers as `4.`, `4．` or `4、` (Chinese enumeration), labels in any language the prompts use.
_DOT = rf"[ \t]*[{re.escape(''.join(sorted(number_marks())))}][ \t]*"
_NUMBER = rf"\d+{_DOT}"
_INSTRUCTION, _INPUT, _OUTPUT = map(_label, task_labels())
_NO_INPUT = no_input_markers()
_SEPARATOR = re.compile(r"^[ \t]*###[ \t]*$", re.M)
_HEADER = re.compile(rf"^[ \t]*(?:###[ \t]*)?{_NUMBER}{_INSTRUCTION}", re.M)
_INPUT_LABEL = re.compile(rf"^[ \t]*{_NUMBER}{_INPUT}", re.M)
_BLOCK = re.compile(
    rf"^\s*(\d+){_DOT}{_INSTRUCTION}(?P<instruction>.*?)"
    rf"^[ \t]*\1{_DOT}{_INPUT}(?P<input>.*?)"
    rf"^[ \t]*\1{_DOT}{_OUTPUT}(?P<output>.*)\Z",
    re.M | re.S,
)


@dataclass
class Candidate:
    instruction: str
    input: str
    output: str


@dataclass
class ParsedAnswer:
    candidates: list[Candidate] = field(default_factory=list)
    malformed: int = 0  # blocks that are not a complete numbered task
    truncated: int = 0  # the last block, cut by the token limit


def parse_answer(text: str, next_number: int, finish_reason: str | None) -> ParsedAnswer:
    """The tasks of one answer to a prompt ending in `{next_number}. Instruction:`.

    A completions answer continues that line; a chat answer usually repeats it, maybe after a preamble:
    both are accepted. When the answer hit the token limit its last block is dropped, complete or not.
    """
    header, first_input = _HEADER.search(text), _INPUT_LABEL.search(text)
    if header and (not first_input or header.start() < first_input.start()):
        text = text[header.start():]
    else:
        text = f"{next_number}. Instruction:{text}"
    blocks = [b for b in _SEPARATOR.split(text.replace("\r\n", "\n")) if b.strip()]
    parsed = ParsedAnswer()
    if finish_reason == "length" and blocks:
        blocks.pop()
        parsed.truncated = 1
    for block in blocks:
        match = _BLOCK.match(block.lstrip("#"))
        if not match:
            parsed.malformed += 1
            continue
        input_ = match["input"].strip()
        parsed.candidates.append(Candidate(
            instruction=re.sub(r"\s+", " ", match["instruction"]).strip(),
            input="" if unicodedata.normalize("NFKC", input_).lower() in _NO_INPUT else input_,
            output=match["output"].strip(),
        ))
    return parsed
