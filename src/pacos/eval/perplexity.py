"""Perplexity of a model on a text or data file, and its divergence from a reference model (docs/perplexity.md).

What is scored, the same token windows for every model so that numbers compare:
- a plain text file (.txt) is tokenized once and cut into consecutive, non-overlapping windows of `ctx` tokens,
  each led by the tokenizer's own leading specials (BOS for LLaMA, nothing for Qwen); as llama.cpp's
  perplexity tool does, a window scores only the tokens from position ctx/2 on, so every scored token is
  predicted from at least ctx/2 tokens of context (a trailing window too short to reach ctx/2 is dropped);
- any other file is read as records (any format pacos reads): one window per record, tokenized exactly as
  training does (`encode_record`, the model's template, truncated to `ctx`); every token after the first is
  scored, or with `responses` only the trained ones (labels != -100, the training loss masks).

The token at position i of a window is scored from the logits at position i - 1. The math works on the
tensors it is given and the run imports torch itself, so importing this module (the CLI does, for its
config) stays light.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from pacos.errors import DataError, PacosError
from pacos.options import ConfigError, check_fields, option
from pacos.prompting.templates import TEMPLATE_NAMES

TEXT_SUFFIX = ".txt"


@dataclass
class PerplexityConfig:
    """`pacos perplexity`: how a model (and optionally a reference) is scored on a file."""

    data: str = option(help="a plain text file (.txt: windows of --ctx tokens) or records in any format pacos "
                            "reads (one window each, tokenized as training does)", nonempty=True, path=True,
                       metavar="FILE")
    ctx: int = option(512, "tokens per window (text: each scores its second half; records: truncated to it)",
                      ge=2, metavar="N")
    responses: bool = option(False, "records: score only the trained spans (the training loss masks)")
    reference: str | None = option(None, "also report KL(reference || model), top-1 agreement and the "
                                         "reference's perplexity (same vocabulary needed)", metavar="MODEL")
    json: bool = option(False, "print the result as a JSON object")
    batch_size: int = option(1, "windows per forward pass (transformers models)", ge=1, metavar="B")
    template: str | None = option(None, "records: prompt template; default: the one the model was trained with, "
                                        "else by record kind", choices=TEMPLATE_NAMES)
    progress: bool | None = option(None, "no progress bar (default: a bar on stderr only on a terminal)")

    def __post_init__(self):
        check_fields(self)
        if self.responses and is_text_file(self.data):
            raise ConfigError(f"--responses scores the trained spans of records; {self.data} is plain text")


@dataclass(frozen=True)
class Window:
    """Token ids scored together, and per position whether its token is scored (position 0 never is)."""

    ids: list[int]
    scored: list[bool]

    @property
    def n_scored(self) -> int:
        return sum(self.scored)


def is_text_file(path) -> bool:
    return Path(path).suffix.lower() == TEXT_SUFFIX


def text_windows(ids: list[int], ctx: int, lead: list[int] = ()) -> list[Window]:
    """Consecutive non-overlapping windows of `ctx` tokens over `ids`, each `lead` (BOS) + the next text tokens;
    positions from ctx // 2 on are scored; a last window that doesn't reach ctx // 2 is dropped."""
    lead = list(lead)
    body = ctx - len(lead)
    if body < 1:
        raise PacosError(f"--ctx {ctx} leaves no room for text after the {len(lead)} leading special token(s)")
    first = max(1, ctx // 2)
    windows = []
    for start in range(0, len(ids), body):
        window = lead + ids[start:start + body]
        if len(window) > first:
            windows.append(Window(window, [i >= first for i in range(len(window))]))
    return windows


def record_windows(records, tokenizer, template, ctx: int, responses: bool = False, where: str = "") -> list[Window]:
    """One window per record, tokenized as training does with `template` (a Template) and truncated to `ctx`."""
    from pacos.prompting.encode import IGNORE_INDEX, encode_record

    windows = []
    for i, record in enumerate(records):
        try:
            encoded = encode_record(record, tokenizer, template, max_len=ctx)
        except PacosError as e:
            raise DataError(f"{where}: record {i + 1}: {e}") from None
        ids = encoded.input_ids
        if len(ids) < 2:
            raise DataError(f"{where}: record {i + 1} is {len(ids)} token(s) long; a window needs at least 2 "
                            "(one to predict from, one to score)")
        scored = [label != IGNORE_INDEX for label in encoded.labels[1:]] if responses else [True] * (len(ids) - 1)
        windows.append(Window(ids, [False, *scored]))
    return windows


def read_text(path) -> str:
    """A .txt data file's text (UTF-8); one-line errors for a missing, special, undecodable or empty file."""
    from pacos.data.raw_files import _decode, _read_regular_file

    data = _read_regular_file(str(path))
    text = _decode(str(path), data, 3 if data.startswith(b"\xef\xbb\xbf") else 0)
    if not text.strip():
        raise DataError(f"{path}: empty file: no text to score")
    return text


def read_data(config: PerplexityConfig) -> str | list:
    """The text of a .txt file, else the records of a record file: read before any model loads, so a bad file
    fails fast."""
    if is_text_file(config.data):
        return read_text(config.data)
    from pacos.data.formats import load_records

    records = load_records(config.data)
    if not records:
        raise DataError(f"{config.data}: no records to score")
    return records


def load_windows(config: PerplexityConfig, data: str | list, tokenizer, trained_template: str | None) -> list[Window]:
    """The windows of `data` (from `read_data`) for a model with this tokenizer and the template it was trained
    with (None: the default for the records' kind)."""
    from pacos.prompting.encode import leading_special_ids
    from pacos.prompting.templates import get_template, record_kind

    if isinstance(data, str):
        ids = tokenizer(data, add_special_tokens=False, verbose=False)["input_ids"]
        windows = text_windows(ids, config.ctx, leading_special_ids(tokenizer))
        if not windows:
            raise DataError(f"{config.data}: {len(ids)} token(s) of text, too few for --ctx {config.ctx} (a window "
                            f"scores its tokens from position {max(1, config.ctx // 2)} on); lower --ctx")
        return windows
    template = get_template(config.template or trained_template, tokenizer, record_kind(data))
    return record_windows(data, tokenizer, template, config.ctx, config.responses, where=str(config.data))


# --- scoring from per-position logits ---------------------------------------------------------------------------


ROWS_PER_CHUNK = 64  # float64 rows of a large vocabulary (150k: 1.2 MB each) are taken a bounded slice at a time


def scored_log_probs(logits, positions):
    """Log-probabilities predicting the tokens at `positions` (a long tensor, none 0): rows positions - 1 of
    `logits` [len, vocab], log-softmaxed in float64, so that the KL of two near-equal distributions comes out
    a small positive number, not float32 rounding noise of either sign."""
    return logits[positions - 1].double().log_softmax(-1)


def token_nll(log_probs, targets):
    """Negative log-likelihood of each target under its row of log-probabilities."""
    return -log_probs.gather(-1, targets[:, None]).squeeze(-1)


def kl_divergence(ref_log_probs, log_probs):
    """KL(reference || model) of each row: sum over the vocabulary of p_ref * (log p_ref - log p_model)."""
    return (ref_log_probs.exp() * (ref_log_probs - log_probs)).sum(-1)


def top1_agreement(ref_log_probs, log_probs):
    """Per row, whether both distributions put their highest probability on the same token."""
    return ref_log_probs.argmax(-1) == log_probs.argmax(-1)


@dataclass
class Totals:
    """Sums over scored tokens, accumulated window by window."""

    windows: int = 0
    tokens: int = 0
    nll: float = 0.0
    ref_nll: float = 0.0
    kl: float = 0.0
    top1: int = 0

    def add(self, logits, ids, scored, ref_logits=None) -> None:
        """One window: its logits [len, vocab] (and the reference's), ids [len] long, scored [len] bool tensors."""
        self.windows += 1
        for positions in scored.nonzero().squeeze(-1).split(ROWS_PER_CHUNK):
            targets = ids[positions]
            log_probs = scored_log_probs(logits, positions)
            self.tokens += len(positions)
            self.nll += float(token_nll(log_probs, targets).sum())
            if ref_logits is not None:
                ref_log_probs = scored_log_probs(ref_logits, positions)
                self.ref_nll += float(token_nll(ref_log_probs, targets).sum())
                self.kl += float(kl_divergence(ref_log_probs, log_probs).sum())
                self.top1 += int(top1_agreement(ref_log_probs, log_probs).sum())

    def result(self, *, model: str, data: str, ctx: int, reference: str | None = None) -> dict:
        """The reported figures: perplexity = exp(mean NLL over scored tokens), and with a reference the means of
        KL and top-1 agreement per scored token and the reference's own perplexity."""
        n = max(self.tokens, 1)
        out = {"model": model, "reference": reference, "data": data, "ctx": ctx, "windows": self.windows,
               "tokens": self.tokens, "perplexity": _exp(self.nll / n), "nll": self.nll / n}
        if reference is not None:
            out.update(kl_divergence=self.kl / n, top1_agreement=self.top1 / n,
                       reference_perplexity=_exp(self.ref_nll / n))
        return out


def _exp(x: float) -> float:
    return math.exp(x) if x < 709 else math.inf


def format_result(result: dict) -> str:
    """The human-readable report."""
    lines = [f"model:       {result['model']}",
             f"data:        {result['data']} ({result['windows']} windows of at most {result['ctx']} tokens)",
             f"scored:      {result['tokens']} tokens",
             f"perplexity:  {result['perplexity']:.4f}  (mean NLL {result['nll']:.6f} nats/token)"]
    if result.get("reference") is not None:
        lines += [f"reference:   {result['reference']}",
                  f"  perplexity:       {result['reference_perplexity']:.4f}",
                  f"  KL(ref || model): {result['kl_divergence']:.4g} nats/token",
                  f"  top-1 agreement:  {100 * result['top1_agreement']:.2f}%"]
    return "\n".join(lines)


# --- the run ----------------------------------------------------------------------------------------------------


def measure_perplexity(model: str, config: PerplexityConfig) -> dict:
    """Score `config.data` with `model` (and `config.reference`): the figures of `Totals.result`."""
    import torch
    from tqdm.auto import tqdm

    from pacos.eval.perplexity_scorers import open_scorer

    data = read_data(config)
    scorer = open_scorer(model, ctx=config.ctx, batch_size=config.batch_size)
    windows = load_windows(config, data, scorer.tokenizer, scorer.trained_template)
    reference = None
    if config.reference is not None:
        reference = open_scorer(config.reference, ctx=config.ctx, batch_size=config.batch_size)
        if reference.vocab_size != scorer.vocab_size:
            raise PacosError(f"{model} has a vocabulary of {scorer.vocab_size} tokens and the reference "
                             f"{config.reference} one of {reference.vocab_size}; they must be the same to compare")
    totals = Totals()
    order = sorted(windows, key=lambda w: len(w.ids))  # batches of similar lengths pad little
    step = min(scorer.batch_size, reference.batch_size if reference else scorer.batch_size)
    with tqdm(total=len(order), desc="perplexity", unit="window", disable=None if config.progress is None
              else not config.progress, leave=False, dynamic_ncols=True) as bar:
        for start in range(0, len(order), step):
            batch = order[start:start + step]
            ids = [w.ids for w in batch]
            ref_logits = reference.logits(ids) if reference else [None] * len(batch)
            for window, logits, ref in zip(batch, scorer.logits(ids), ref_logits):
                totals.add(logits, torch.tensor(window.ids), torch.tensor(window.scored), ref)
            bar.update(len(batch))
    return totals.result(model=str(model), data=str(config.data), ctx=config.ctx,
                         reference=None if config.reference is None else str(config.reference))
