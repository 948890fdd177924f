"""A Hugging Face tokenizer as llama.cpp's GGUF vocabulary, read from its `tokenizer.json`.

Two kinds, the two llama.cpp implements for these architectures:

- `llama` (SentencePiece-style BPE with byte fallback: LLaMA 1/2, Mistral, and pacos's offline presets).
  llama.cpp writes a space as `▁` before it looks tokens up, so a vocabulary whose tokens hold real spaces
  (the presets') is written with `▁` in their place; added tokens keep their text (llama.cpp matches them on
  the raw text). Scores follow the merge ranks, so llama.cpp merges in HF's order; `add_space_prefix` is
  what the HF normalizer does.
- `gpt2` (byte-level BPE: Llama 3, Qwen2): tokens and merges as they are, and `tokenizer.ggml.pre` named
  from the pre-tokenizer's split regex (llama.cpp splits with its own copy of that regex, so the name must
  match it: `qwen2`, `llama-bpe`, `gpt-2`).

`pacos export` then checks llama.cpp's token ids against the HF tokenizer's on a fixed set of strings.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from pacos.errors import PacosError

SPACE = "\u2581"  # ▁

# The split regexes of byte-level tokenizers, as their tokenizer.json holds them, and llama.cpp's name.
GPT2_REGEX = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
PRE_TOKENIZERS = {
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+":
        "qwen2",
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+":
        "llama-bpe",
    GPT2_REGEX: "gpt-2",
}

# gguf.TokenType values (kept here so this module imports without gguf)
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6


class UnsupportedTokenizer(PacosError):
    pass


@dataclass
class Vocab:
    model: str  # "llama" or "gpt2"
    pre: str
    tokens: list[str]
    types: list[int]
    scores: list[float] | None = None
    merges: list[str] = field(default_factory=list)
    add_space_prefix: bool | None = None


def tokenizer_json(tokenizer) -> dict:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise UnsupportedTokenizer(f"{type(tokenizer).__name__} is not a fast (tokenizers) tokenizer; GGUF export "
                                   "reads tokenizer.json")
    return json.loads(backend.to_str())


def build_vocab(tokenizer, vocab_size: int) -> Vocab:
    spec = tokenizer_json(tokenizer)
    model = spec.get("model") or {}
    if model.get("type") != "BPE":
        raise UnsupportedTokenizer(f"tokenizer model {model.get('type')!r} is not supported for GGUF export "
                                   "(supported: SentencePiece-style BPE with byte fallback, byte-level BPE)")
    if len(tokenizer) > vocab_size:
        raise UnsupportedTokenizer(f"the tokenizer has {len(tokenizer)} tokens but the model only {vocab_size} "
                                   "embeddings")
    if model.get("byte_fallback"):
        return _llama_vocab(tokenizer, spec, vocab_size)
    if _is_byte_level(spec):
        return _gpt2_vocab(tokenizer, spec, vocab_size)
    raise UnsupportedTokenizer("a BPE tokenizer without byte fallback or byte-level pre-tokenizer is not supported "
                               "for GGUF export")


def _added(tokenizer) -> dict[int, object]:
    return dict(tokenizer.added_tokens_decoder)


def _merge_list(model: dict) -> list[tuple[str, str]]:
    out = []
    for merge in model.get("merges") or []:
        left, right = merge.split(" ", 1) if isinstance(merge, str) else merge
        out.append((left, right))
    return out


def _llama_vocab(tokenizer, spec: dict, vocab_size: int) -> Vocab:
    model = spec["model"]
    vocab: dict[str, int] = model["vocab"]
    raw_spaces = _uses_raw_spaces(spec)
    ranks = {left + right: rank for rank, (left, right) in enumerate(_merge_list(model))}
    added = _added(tokenizer)
    tokens, types, scores = [f"[PAD{i}]" for i in range(vocab_size)], [UNUSED] * vocab_size, [-1000.0] * vocab_size
    unk = model.get("unk_token")
    for text, i in vocab.items():
        if i >= vocab_size:
            continue
        if re.fullmatch(r"<0x[0-9A-Fa-f]{2}>", text):
            kind = BYTE
        elif text == unk:
            kind = UNKNOWN
        else:
            kind = NORMAL
        tokens[i] = text.replace(" ", SPACE) if raw_spaces else text
        types[i] = kind
        scores[i] = -float(ranks[text] + 1) if text in ranks else 0.0
    for i, token in added.items():
        if i >= vocab_size:
            continue
        content = token.content
        if token.special:
            types[i] = UNKNOWN if content == unk else CONTROL
        else:
            types[i] = USER_DEFINED
            content = content.replace(SPACE, " ")  # llama.cpp matches user-defined tokens on the raw text
        tokens[i], scores[i] = content, -1000.0
    return Vocab("llama", "default", tokens, types, scores, add_space_prefix=_adds_space_prefix(spec))


def _gpt2_vocab(tokenizer, spec: dict, vocab_size: int) -> Vocab:
    model = spec["model"]
    pre = _pre_name(spec)
    tokens, types = [f"[PAD{i}]" for i in range(vocab_size)], [UNUSED] * vocab_size
    for text, i in model["vocab"].items():
        if i < vocab_size:
            tokens[i], types[i] = text, NORMAL
    for i, token in _added(tokenizer).items():
        if i < vocab_size:
            tokens[i] = token.content
            types[i] = CONTROL if token.special or _looks_special(token.content) else USER_DEFINED
    merges = [f"{left} {right}" for left, right in _merge_list(model)]
    return Vocab("gpt2", pre, tokens, types, merges=merges)


def _looks_special(text: str) -> bool:
    return text.startswith("<|") and text.endswith("|>")


def _walk(node) -> list[dict]:
    """A normalizer or pre-tokenizer and everything in its Sequence, flattened."""
    if not node:
        return []
    children = node.get("normalizers") or node.get("pretokenizers")
    if node.get("type") == "Sequence" and children is not None:
        return [n for child in children for n in _walk(child)]
    return [node]


def _uses_raw_spaces(spec: dict) -> bool:
    """Whether the vocabulary holds real spaces (no normalizer/pre-tokenizer turns them into ▁)."""
    steps = _walk(spec.get("normalizer")) + _walk(spec.get("pre_tokenizer"))
    for step in steps:
        if step.get("type") == "Metaspace":
            return False
        if step.get("type") == "Replace" and step.get("content") == SPACE:
            return False
    return True


def _adds_space_prefix(spec: dict) -> bool:
    for step in _walk(spec.get("normalizer")):
        if step.get("type") == "Prepend" and step.get("prepend") == SPACE:
            return True
    for step in _walk(spec.get("pre_tokenizer")):
        if step.get("type") == "Metaspace":
            return step.get("prepend_scheme", "always") != "never" and step.get("add_prefix_space", True)
    return False


def _is_byte_level(spec: dict) -> bool:
    return any(step.get("type") == "ByteLevel" for step in _walk(spec.get("pre_tokenizer")))


def _pre_name(spec: dict) -> str:
    steps = _walk(spec.get("pre_tokenizer"))
    for step in steps:
        if step.get("type") == "Split":
            pattern = (step.get("pattern") or {}).get("Regex")
            if pattern in PRE_TOKENIZERS:
                return PRE_TOKENIZERS[pattern]
            raise UnsupportedTokenizer(f"the byte-level pre-tokenizer regex {pattern!r} is not one llama.cpp knows "
                                       f"by name (known: {', '.join(PRE_TOKENIZERS.values())})")
    level = next(step for step in steps if step.get("type") == "ByteLevel")
    if level.get("use_regex", True):
        return "gpt-2"
    raise UnsupportedTokenizer("a byte-level tokenizer without a split regex is not supported for GGUF export")


def write_vocab(writer, vocab: Vocab) -> None:
    writer.add_tokenizer_model(vocab.model)
    writer.add_tokenizer_pre(vocab.pre)
    writer.add_token_list(vocab.tokens)
    writer.add_token_types(vocab.types)
    if vocab.scores is not None:
        writer.add_token_scores(vocab.scores)
    if vocab.merges:
        writer.add_token_merges(vocab.merges)
    if vocab.add_space_prefix is not None:
        writer.add_add_space_prefix(vocab.add_space_prefix)
