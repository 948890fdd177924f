"""Batched generation with transformers: same template as training, left padding, stops at EOS or stop strings."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from pacos.errors import PacosError
from pacos.templates import Template, get_template, record_kind


# Bounds that keep every sampling step finite in float32 (logits / temperature, logits / penalty).
MAX_TEMPERATURE = 2.0
GREEDY_BELOW = 1e-5  # a temperature under this samples greedily (vLLM's rule): logits / 1e-320 would be inf
MIN_TOP_P = 1e-3
MIN_REPETITION_PENALTY, MAX_REPETITION_PENALTY = 1e-2, 10.0


class SamplingError(PacosError):
    """A sampling value out of range; `param` is its name (the server answers 400 naming it)."""

    def __init__(self, message: str, param: str):
        super().__init__(message)
        self.param = param


@dataclass
class SamplingParams:
    max_new_tokens: int = 256
    temperature: float = 0.0  # 0 = greedy, deterministic
    top_p: float = 1.0
    top_k: int = 0  # 0 = off
    repetition_penalty: float = 1.0
    seed: int | None = None
    # OpenAI-style penalties; applied by the batching engine (infer/batching.py), not by `Generator`.
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0

    def check(self) -> None:
        """Finite values in range, or SamplingError naming the field: nothing reaches the sampler that could
        turn probabilities into NaN (a denormal temperature or penalty overflows the logits to inf)."""
        def need(ok: bool, param: str, rule: str) -> None:
            if not ok:
                raise SamplingError(f"'{param}' must be {rule} (got {getattr(self, param)!r})", param)

        for name in ("temperature", "top_p", "repetition_penalty", "presence_penalty", "frequency_penalty"):
            value = getattr(self, name)
            need(isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value), name,
                 "a finite number")
        need(isinstance(self.max_new_tokens, int) and self.max_new_tokens >= 1, "max_new_tokens", "an integer >= 1")
        need(0 <= self.temperature <= MAX_TEMPERATURE, "temperature", f"between 0 (greedy) and {MAX_TEMPERATURE}")
        need(MIN_TOP_P <= self.top_p <= 1, "top_p", f"between {MIN_TOP_P} and 1")
        need(isinstance(self.top_k, int) and self.top_k >= 0, "top_k", "an integer >= 0 (0 = off)")
        need(MIN_REPETITION_PENALTY <= self.repetition_penalty <= MAX_REPETITION_PENALTY, "repetition_penalty",
             f"between {MIN_REPETITION_PENALTY} and {MAX_REPETITION_PENALTY} (1 = off)")
        need(-2 <= self.presence_penalty <= 2, "presence_penalty", "between -2 and 2")
        need(-2 <= self.frequency_penalty <= 2, "frequency_penalty", "between -2 and 2")
        need(self.seed is None or (isinstance(self.seed, int) and -(2 ** 63) <= self.seed < 2 ** 63), "seed",
             "an integer that fits in 64 bits")

    @property
    def greedy(self) -> bool:
        """Whether to take the most likely token: temperature 0, or too small to divide the logits by."""
        return self.temperature < GREEDY_BELOW

    @property
    def seed64(self) -> int | None:
        """The seed as torch.Generator takes it (0 <= seed < 2**64): the server's per-choice seed + index
        may pass 64 bits, and any integer reduced modulo 2**64 still gives one reproducible stream."""
        return None if self.seed is None else self.seed % 2 ** 64


def trained_template_name(model_ref: str | Path) -> str | None:
    """The template a pacos-trained model was fine-tuned with (recorded beside its weights)."""
    run = Path(model_ref) / "pacos_train.json"
    if run.is_file():
        return json.loads(run.read_text()).get("template")
    return None


def resolve_template(model_ref, tokenizer, records, name: str | None) -> Template:
    """Explicit name, else the one the model was trained with, else the default for these records."""
    return get_template(name or trained_template_name(model_ref), tokenizer, record_kind(records))


class Generator:
    """A loaded model + tokenizer + template that turns records into answers."""

    def __init__(self, model, tokenizer, template: Template):
        self.model, self.tokenizer, self.template = model, tokenizer, template
        if tokenizer.pad_token is None:
            from pacos.train.special_tokens import ensure_pad_token

            ensure_pad_token(tokenizer)  # reuse, never resize at inference
        tokenizer.padding_side = "left"

    @classmethod
    def load(cls, model_ref: str, template: str | None = None, records=(), dtype=None) -> "Generator":
        from pacos.models.loading import load_model

        model, tokenizer = load_model(model_ref, dtype=dtype)
        if _cuda():
            model.to("cuda")
        return cls(model, tokenizer, resolve_template(model_ref, tokenizer, list(records), template))

    def prompt_ids(self, record) -> list[int]:
        from pacos.train.tokenize import encode_prompt

        return encode_prompt(record, self.tokenizer, self.template)

    def generate(self, records, params: SamplingParams, batch_size: int = 16, progress: bool = False) -> list[str]:
        """Answers for `records`, in order; batches are formed from prompts of similar length."""
        import torch

        params.check()
        if params.seed is not None:
            torch.manual_seed(params.seed64)
        prompts = [self.prompt_ids(r) for r in records]
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
        answers: list[str] = [""] * len(prompts)
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(prompts), desc="generate", unit="rec", dynamic_ncols=True)
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            for i, text in zip(idx, self.generate_ids([prompts[i] for i in idx], params)):
                answers[i] = text
            if bar:
                bar.update(len(idx))
        if bar:
            bar.close()
        return answers

    def generate_ids(self, prompts: list[list[int]], params: SamplingParams) -> list[str]:
        import torch

        limit = getattr(self.model.config, "max_position_embeddings", None)
        longest = max(len(p) for p in prompts)
        if limit and longest + params.max_new_tokens > limit:
            raise PacosError(f"prompt of {longest} tokens + {params.max_new_tokens} new tokens exceeds the "
                             f"model's context of {limit}; lower --max-new-tokens or shorten the input")
        batch = self.tokenizer.pad({"input_ids": prompts}, return_tensors="pt", padding=True)
        device = next(self.model.parameters()).device
        with torch.no_grad():
            out = self.model.generate(
                input_ids=batch["input_ids"].to(device),
                attention_mask=batch["attention_mask"].to(device),
                generation_config=self._generation_config(params),
                tokenizer=self.tokenizer,
            )
        new = out[:, batch["input_ids"].shape[1]:]
        return [self.clean(self.tokenizer.decode(row, skip_special_tokens=True)) for row in new]

    def clean(self, text: str) -> str:
        """Cut at the first stop string (generation stops after it, the answer excludes it)."""
        for stop in self.template.stop_strings:
            if stop and stop in text:
                text = text[: text.index(stop)]
        return text.strip()

    def _generation_config(self, params: SamplingParams):
        from transformers import GenerationConfig

        from pacos.train.save import stop_token_ids

        base = self.model.generation_config
        eos = base.eos_token_id if base.eos_token_id is not None else stop_token_ids(self.tokenizer, self.template)
        sample = not params.greedy
        return GenerationConfig(
            max_new_tokens=params.max_new_tokens,
            do_sample=sample,
            temperature=params.temperature if sample else None,
            top_p=params.top_p if sample else None,
            top_k=params.top_k if sample else None,
            repetition_penalty=params.repetition_penalty,
            eos_token_id=eos,
            pad_token_id=self.tokenizer.pad_token_id,
            bos_token_id=self.tokenizer.bos_token_id,
            stop_strings=list(self.template.stop_strings) or None,
        )


def infer_file(model_ref: str, data: str, out: str, params: SamplingParams, template: str | None = None,
               batch_size: int = 16, progress: bool = True) -> int:
    """Answer every record of `data`; write them to `out` with a `generated` field (atomic)."""
    from pacos.data.formats import load_records, save_records

    records = load_records(data, require_output=False)
    if not records:
        raise PacosError(f"{data}: no records")
    gen = Generator.load(model_ref, template, records)
    for record, answer in zip(records, gen.generate(records, params, batch_size, progress)):
        record.extra["generated"] = answer
    if record_kind(records) == "instruction":
        fmt = "alpaca" if out.endswith(".json") else "jsonl"
    else:
        fmt = "messages"
    save_records(records, out, fmt=fmt)
    return len(records)


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()
