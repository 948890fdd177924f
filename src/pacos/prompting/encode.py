"""Records to `input_ids`/`labels`: segments tokenized separately and concatenated, so masks are exact.

Rules (documented in the README):
- each template segment is tokenized on its own, without special tokens; the first gets the tokenizer's
  own leading specials (BOS) unless its text already starts with the BOS string;
- a trained segment's tokens carry their ids as labels, every other position is -100
  (`train_on_inputs` trains on everything);
- a segment marked `eos` is followed by the EOS id, trained with it, so the model learns to stop;
- over `max_len`: conversations drop whole turns from the end; a prompt/response pair shares the budget
  (a response that fits in half the budget is kept whole and the prompt loses its middle, and vice
  versa, else both are cut in proportion); a cut response keeps its last token (EOS / end-of-turn);
- a record left with no trained token is reported and skipped, never trained with every label masked.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from pacos.errors import PacosError
from pacos.prompting.templates import Segment, Template, get_template

IGNORE_INDEX = -100


class SkippedRecord(PacosError):
    """A record that can't be trained on (its response would be cut away entirely)."""


@dataclass
class Encoded:
    input_ids: list[int]
    labels: list[int]
    truncated: bool = False


def encode_record(record, tokenizer, template: str | Template | None = None, max_len: int | None = 512,
                  train_on_inputs: bool = False) -> Encoded:
    """Tokenize one record with its template into input_ids and labels (see the module rules)."""
    if not isinstance(template, Template):
        kind = "instruction" if type(record).__name__ == "Example" else "conversation"
        template = get_template(template, tokenizer, record_kind=kind)
    return encode_segments(template.segments(record), tokenizer, max_len=max_len, train_on_inputs=train_on_inputs)


def encode_prompt(record, tokenizer, template: Template) -> list[int]:
    """The ids a model is prompted with at inference: the same segments training saw, minus the answer."""
    return [t for ids, _ in _tokenize_segments(template.prompt_segments(record), tokenizer) for t in ids]


@dataclass
class EncodedPair:
    """A preference pair as TRL's DPO collator takes it: the shared prompt, then each answer's tokens."""

    prompt_ids: list[int]
    chosen_ids: list[int]
    rejected_ids: list[int]
    truncated: bool = False


def encode_preference(context, chosen: str, rejected: str, tokenizer, template: Template,
                      max_len: int | None = 512) -> EncodedPair:
    """Tokenize a prompt (a Conversation ending with a user turn) and two answers to it.

    The prompt is exactly `encode_prompt` (what the model is given when served) and each answer is the
    template's answer segment as SFT trains it, EOS or end-of-turn included, so DPO trains the format the
    model is served with. Over `max_len`: the prompt keeps at least half (its head and tail, as in SFT), and
    each answer is cut to what is left, keeping its last token.
    """
    from pacos.data.records import Conversation, Message

    prompt = encode_prompt(context, tokenizer, template)
    answers = []
    for answer in (chosen, rejected):
        conv = Conversation([*context.messages, Message("assistant", answer)], context.extra)
        ids = [t for piece, _ in _tokenize_segments(template.segments(conv), tokenizer) for t in piece]
        if ids[:len(prompt)] != prompt:
            raise PacosError(f"template {template.name!r} renders the prompt differently when an answer follows, "
                             "so the answer's tokens can't be told apart; use --template chatml or vicuna")
        answers.append(ids[len(prompt):])
    longest = max(len(a) for a in answers)
    truncated = max_len is not None and len(prompt) + longest > max_len
    if truncated:
        prompt = _cut_middle(prompt, max(max_len // 2, max_len - longest))
        budget = max_len - len(prompt)
        answers = [a if len(a) <= budget else a[:budget - 1] + a[-1:] for a in answers]
    return EncodedPair(prompt, answers[0], answers[1], truncated)


def encode_segments(segments: list[Segment], tokenizer, max_len: int | None = 512,
                    train_on_inputs: bool = False) -> Encoded:
    pieces = _tokenize_segments(segments, tokenizer)
    total = sum(len(ids) for ids, _ in pieces)
    truncated = max_len is not None and total > max_len
    if truncated:
        pieces = _truncate(pieces, max_len)
    input_ids, labels = [], []
    for ids, trained in pieces:
        input_ids += ids
        labels += ids if (trained or train_on_inputs) else [IGNORE_INDEX] * len(ids)
    if not any(trained and ids for ids, trained in pieces):
        raise SkippedRecord(f"no response token is left within max_len={max_len} ({total} tokens in all)")
    return Encoded(input_ids, labels, truncated)


def _tokenize_segments(segments: list[Segment], tokenizer) -> list[tuple[list[int], bool]]:
    pieces = []
    for i, seg in enumerate(segments):
        ids = tokenizer(seg.text, add_special_tokens=False, verbose=False)["input_ids"] if seg.text else []
        if i == 0 and not (tokenizer.bos_token and seg.text.startswith(tokenizer.bos_token)):
            ids = leading_special_ids(tokenizer) + ids
        if seg.eos:
            if tokenizer.eos_token_id is None:
                raise PacosError("this tokenizer has no EOS token, so the model can't learn to stop; set one")
            ids = ids + [tokenizer.eos_token_id]
        pieces.append((ids, seg.trained))
    return pieces


def leading_special_ids(tokenizer) -> list[int]:
    """The ids a tokenizer puts before text on its own (LLaMA: BOS; Qwen: none)."""
    return list(_leading_special_ids(tokenizer))


@lru_cache(maxsize=32)
def _leading_special_ids(tokenizer) -> tuple[int, ...]:
    with_special = tokenizer("a", add_special_tokens=True)["input_ids"]
    plain = tokenizer("a", add_special_tokens=False)["input_ids"]
    for start in range(len(with_special) - len(plain) + 1):
        if with_special[start:start + len(plain)] == plain:
            return tuple(with_special[:start])
    return ()


def _truncate(pieces: list[tuple[list[int], bool]], max_len: int) -> list[tuple[list[int], bool]]:
    # Conversations: keep whole leading (prompt, answer) pairs while they fit.
    kept, used = [], 0
    for j in range(0, len(pieces), 2):
        pair = pieces[j:j + 2]
        size = sum(len(ids) for ids, _ in pair)
        if used + size > max_len:
            if not kept:
                return _truncate_pair(pair, max_len)
            break
        kept += pair
        used += size
    return kept


def _truncate_pair(pair: list[tuple[list[int], bool]], max_len: int) -> list[tuple[list[int], bool]]:
    (prompt, p_trained), *rest = pair
    response, r_trained = rest[0] if rest else ([], True)
    p_len, r_len = len(prompt), len(response)
    half = max_len // 2
    if r_len <= half:
        r_budget = r_len
    elif p_len <= half:
        r_budget = max_len - p_len
    else:
        r_budget = max_len - int(max_len * p_len / (p_len + r_len))
    p_budget = max_len - r_budget
    out = [(_cut_middle(prompt, p_budget), p_trained)]
    if rest:
        # A cut answer keeps its last token: EOS or the end-of-turn marker.
        cut = response if r_budget >= r_len else (response[: r_budget - 1] + response[-1:] if r_budget > 1 else [])
        out.append((cut, r_trained))
    return out


def _cut_middle(ids: list[int], budget: int) -> list[int]:
    """Keep the head (BOS, preamble, instruction) and the tail (the response marker) of a prompt."""
    if len(ids) <= budget:
        return ids
    if budget <= 0:
        return []
    tail = budget // 2
    return ids[: budget - tail] + (ids[-tail:] if tail else [])
