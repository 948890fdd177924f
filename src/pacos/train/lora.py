"""The LoRA adapter `--lora` trains: its peft config from the flags, and the base model wrapped with it."""

from __future__ import annotations

from pacos.errors import PacosError
from pacos.train.config import TrainConfig


def lora_config(config: TrainConfig):
    from peft import LoraConfig

    targets = "all-linear" if config.lora_target == "all-linear" else [
        t.strip() for t in config.lora_target.split(",") if t.strip()]
    return LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                      target_modules=targets, task_type="CAUSAL_LM")


def wrap_lora(model, config: TrainConfig, log):
    from peft import get_peft_model

    from pacos.models.peft_warnings import peft_alias_filter

    try:
        with peft_alias_filter():
            model = get_peft_model(model, lora_config(config))
    except ValueError as e:
        raise PacosError(f"--lora-target {config.lora_target!r}: {e}") from None
    log_trainable(model, config, log)
    return model


def log_trainable(model, config: TrainConfig, log) -> None:
    trainable, total = model.get_nb_trainable_parameters()
    log(f"LoRA r={config.lora_r} alpha={config.lora_alpha} on {config.lora_target}: "
        f"{trainable:,} trainable of {total:,} parameters ({100 * trainable / total:.2f}%)")
