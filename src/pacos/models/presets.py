"""Offline model presets: LLaMA-architecture models with random weights, saved like any hub model."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pacos.errors import PacosError


@dataclass(frozen=True)
class Preset:
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    max_position_embeddings: int
    note: str = ""  # for --preset's help
    num_key_value_heads: int | None = None  # None: one per attention head
    vocab_size: int | None = None  # None: the tokenizer's; more rows cost what a real vocabulary's cost


# Sizes from the issue: tiny ~1-5M (tests), small ~20-40M, base-100m ~100M (benchmarks). nano (~0.5M, two
# layers) is the demo's: on 2 CPU cores it learns the synthetic tasks in minutes, where wider/deeper models
# took more wall time per task learnt (measured, see docs/demo.md).
PRESETS = {
    "nano": Preset(128, 2, 4, 341, 512, "~0.5M params (demo)"),
    "tiny": Preset(192, 4, 4, 512, 1024, "~2M (tests)"),
    "small": Preset(512, 8, 8, 1376, 2048, "~26M"),
    "base-100m": Preset(768, 14, 12, 2048, 2048, "~100M (benchmarks)"),
}
PRESET_NAMES = tuple(PRESETS)


def build_model(preset: str | Preset, seed: int = 0):
    """A (model, tokenizer) pair: `LlamaForCausalLM` with random init and the offline char tokenizer.

    `preset` is a name from PRESETS or a shape of one's own (a benchmark's)."""
    if not isinstance(preset, Preset) and preset not in PRESETS:
        raise PacosError(f"unknown preset {preset!r}; choose one of: {', '.join(PRESETS)}")
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    from pacos.models.tokenizer import build_char_tokenizer

    p = preset if isinstance(preset, Preset) else PRESETS[preset]
    tokenizer = build_char_tokenizer()
    config = LlamaConfig(
        vocab_size=p.vocab_size or len(tokenizer),
        hidden_size=p.hidden_size,
        num_hidden_layers=p.num_hidden_layers,
        num_attention_heads=p.num_attention_heads,
        num_key_value_heads=p.num_key_value_heads or p.num_attention_heads,
        intermediate_size=p.intermediate_size,
        max_position_embeddings=p.max_position_embeddings,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id
    )
    return model, tokenizer


def init_model(preset: str | Preset, out: str | Path, seed: int = 0) -> int:
    """Build a preset and save it to `out` in the standard Hugging Face layout; returns its parameter count."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # a "Writing model shards" bar for one small file is noise
    model, tokenizer = build_model(preset, seed)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return sum(p.numel() for p in model.parameters())
