"""`pacos train --dry-run`: the memory plan of a TrainConfig, from the model's config.json (never its weights)."""

from __future__ import annotations

import json
from dataclasses import dataclass

from pacos.errors import PacosError
from pacos.options import ConfigError, check_fields, option
from pacos.train.config import TrainConfig
from pacos.train.memory_plan import GPU_NAMES, GPUS, MemoryPlan, ModelShape, Setup, format_plan, gpu_bf16, plan_memory


@dataclass
class PlanOptions:
    dry_run: bool = option(False, "print the memory plan per device (weights, gradients, optimizer state, "
                                  "activations; from the model's config.json) and exit without training")
    gpu: str | None = option(None, "with --dry-run: say whether the plan fits this GPU: " + ", ".join(GPU_NAMES))
    devices: int | None = option(None, "with --dry-run: GPUs to plan for (default: --nproc), so that a laptop can "
                                       "plan an 8-GPU run", ge=1)
    json: bool = option(False, "with --dry-run: print the plan as JSON")

    def __post_init__(self) -> None:
        check_fields(self)
        if self.gpu is not None and self.gpu.lower() not in GPUS:
            raise ConfigError(f"--gpu {self.gpu!r} is not a GPU the plan knows; known: {', '.join(GPU_NAMES)}")
        if self.gpu is not None:
            self.gpu = self.gpu.lower()


def read_model_shape(ref: str) -> ModelShape:
    """The dimensions in a model's config.json: a local directory, a hub id, or a LoRA adapter's base."""
    from transformers import AutoConfig

    from pacos.models.loading import _from_pretrained, adapter_base, is_adapter

    ref = str(ref)
    if is_adapter(ref):
        ref = adapter_base(ref)
    return ModelShape.from_config(_from_pretrained(AutoConfig, ref, "config"))


def setup_of(config: TrainConfig, options: PlanOptions, device: str = "cuda") -> Setup:
    """The planner's view of a run: method, precision, devices (--devices, else --nproc), batch, length."""
    if config.method != "sft":
        raise PacosError(f"--dry-run plans supervised fine-tuning; --method {config.method} is not planned")
    devices = options.devices or config.nproc
    if config.fsdp and devices < 2:
        raise PacosError("--dry-run --fsdp: FSDP shards over several GPUs; say how many with --devices N or "
                         "--nproc N (N >= 2)")
    return Setup(method="qlora" if config.qlora else "lora" if config.lora else "full",
                 bf16=config.use_bf16(cuda=True, cuda_bf16=gpu_bf16(options.gpu)),
                 batch_size=config.batch_size, max_len=config.max_len, devices=devices, fsdp=config.fsdp,
                 gradient_checkpointing=config.gradient_checkpointing, lora_r=config.lora_r,
                 lora_target=config.lora_target, lora_dropout=config.lora_dropout, device=device)


def dry_run(config: TrainConfig, options: PlanOptions, log=print) -> MemoryPlan:
    plan = plan_memory(read_model_shape(config.model), setup_of(config, options))
    log(json.dumps(plan.as_dict(options.gpu), indent=2) if options.json else format_plan(plan, options.gpu))
    return plan
