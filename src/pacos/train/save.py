"""Saving what training produced: full weights or a verified LoRA adapter, with a generation config that stops."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from pacos.errors import PacosError
from pacos.prompting.special_tokens import stop_token_ids

RUN_FILE = "pacos_train.json"  # beside the saved model: template and settings, read back by inference
LOG_FILE = "train_log.jsonl"
PLOT_FILE = "loss_curve.png"


def save_run(model, tokenizer, template, config, out: Path, run: dict, log, state_dict: dict | None = None):
    """What a finished run leaves in `out`: the model or adapter, RUN_FILE (template, settings, and `run`:
    steps, train_seconds, counts), the loss curve. Returns the last logged training loss."""
    from pacos.train.progress import plot_loss, read_log

    out = Path(out)
    save_trained(model, tokenizer, template, out, lora=config.lora, state_dict=state_dict)
    (out / RUN_FILE).write_text(json.dumps({
        "template": template.name, "base_model": config.model, "config": asdict(config), **run}, indent=2))
    plot_loss(out / LOG_FILE, out / PLOT_FILE)
    final = next((r["loss"] for r in reversed(read_log(out / LOG_FILE)) if "loss" in r), None)
    log(f"saved {'LoRA adapter' if config.lora else 'model'} to {out} ({run['steps']} steps, "
        f"{run['train_seconds']:.0f}s, final loss {final if final is None else round(final, 4)}); "
        f"loss curve: {out / PLOT_FILE}")
    return final


def save_trained(model, tokenizer, template, out: Path, lora: bool, state_dict: dict | None = None) -> None:
    """Save on one process; `state_dict` is the whole model when the live one is sharded (FSDP)."""
    out = Path(out)
    gen = model.generation_config
    eos = stop_token_ids(tokenizer, template)
    gen.eos_token_id = eos[0] if len(eos) == 1 else eos
    gen.pad_token_id = tokenizer.pad_token_id
    if tokenizer.bos_token_id is not None:
        gen.bos_token_id = tokenizer.bos_token_id
    model.config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out, state_dict=state_dict)
    tokenizer.save_pretrained(out)
    if lora:
        # The adapter dir carries the generation config too, so inference on it stops where training taught.
        gen.save_pretrained(out)
        verify_adapter(model, out)


def verify_adapter(model, out: Path) -> None:
    """Catch alpaca-lora's classic failure: an adapter file with no (or untrained) LoRA weights.

    Checks the saved tensors exist and B matrices are not all zero, then reloads the adapter onto a fresh
    base model and compares logits with the in-memory model.
    """
    import torch
    from safetensors.torch import load_file

    path = Path(out) / "adapter_model.safetensors"
    if not path.is_file():
        raise PacosError(f"LoRA save failed: {path} was not written")
    tensors = load_file(str(path))
    lora_b = [t for k, t in tensors.items() if "lora_B" in k]
    if not tensors or not lora_b:
        raise PacosError(f"LoRA save failed: {path} holds no LoRA weights (empty adapter)")
    if all(float(t.abs().max()) == 0.0 for t in lora_b):
        raise PacosError(f"LoRA adapter in {out} is untrained (every lora_B is zero): did training run any step?")
    if getattr(model, "is_loaded_in_4bit", False):
        return  # QLoRA: a full-precision reload differs by the quantization, and would need the base's full memory

    from pacos.models.loading import load_model

    # The base in the dtype it was trained in (pacos.train.loop.weights_dtype), not the checkpoint's.
    reloaded, _ = load_model(out, merge_adapter=False, dtype=model.get_input_embeddings().weight.dtype)
    probe = torch.tensor([[1, 5, 9, 13, 17, 21, 25, 29]]) % model.get_input_embeddings().num_embeddings
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    with torch.no_grad():
        a = model(input_ids=probe.to(device)).logits.float().cpu()
        b = reloaded(input_ids=probe).logits.float()
    if was_training:
        model.train()
    diff = float((a - b).abs().max())
    if diff > 1e-3 * max(1.0, float(a.abs().max())):
        raise PacosError(f"LoRA adapter in {out} does not reload to the trained model (max logit diff {diff:.3g})")
