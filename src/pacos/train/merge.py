"""Fold a LoRA adapter into its base model's weights: a plain Hugging Face model llama.cpp and others can load."""

from __future__ import annotations

from pathlib import Path

from pacos.errors import PacosError


def merge_adapter(adapter: str | Path, out: str | Path) -> Path:
    from pacos.models.loading import is_adapter, load_model

    if not is_adapter(adapter):
        raise PacosError(f"{adapter}: not a LoRA adapter directory (no adapter_config.json)")
    model, tokenizer = load_model(adapter, merge_adapter=True)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    run_file = Path(adapter) / "pacos_train.json"
    if run_file.is_file():  # keep the template the adapter was trained with
        (out / run_file.name).write_text(run_file.read_text())
    return out
