"""Training configuration: the Stanford Alpaca recipe's defaults, written once (the `pacos train` flags too)."""

from __future__ import annotations

import os
from dataclasses import dataclass

from pacos.data.mixture import Source, parse_sources
from pacos.options import ConfigError, check_fields, flag_of, option
from pacos.prompting.templates import TEMPLATE_NAMES
from pacos.train.packing import PACKING_MODES

# Alpaca: 3 epochs, cosine, warmup 0.03, effective batch 128, max length 512, lr 2e-5 (full);
# alpaca-lora: lr 3e-4, r 8, alpha 16, dropout 0.05 on q_proj+v_proj.
EFFECTIVE_BATCH = 128
FULL_LR = 2e-5
LORA_LR = 3e-4
# DPO (TRL / alignment-handbook Zephyr recipes): lr 5e-7 full, 5e-6 LoRA; beta 0.1 (TRL's default).
DPO_FULL_LR = 5e-7
DPO_LORA_LR = 5e-6
METHODS = ("sft", "dpo")


@dataclass
class TrainConfig:
    model: str = option(help="hub id or local path of the base model", nonempty=True, path=True)
    data: tuple[str, ...] = option(
        help="alpaca json/jsonl, self-instruct, sharegpt or messages file (--method dpo: prompt/chosen/rejected "
             "pairs, as `pacos feedback export --format dpo` writes); repeat for a mixture, FILE:WEIGHT samples "
             "WEIGHT x the file's records (0.3: 30% of them, 2: each twice; no weight: all once)",
        nonempty=True, path=True, split=False, metavar="FILE[:WEIGHT]", required=False)
    out: str = option(help="output directory (model or adapter, train_log.jsonl, loss curve)", nonempty=True,
                      path=True, required=False)  # --data and --out: not required flags, --dry-run goes without
    method: str = option("sft", "sft: supervised fine-tuning on answers; dpo: direct preference optimization "
                                "(TRL) on chosen/rejected pairs", choices=METHODS)
    dpo_beta: float = option(0.1, "DPO: how far the policy may move from the reference model (TRL's beta; "
                                  "smaller lets it move further)", gt=0)
    template: str | None = option(None, "default: alpaca for instruction records, model (else vicuna) for "
                                        "conversations", choices=TEMPLATE_NAMES)
    epochs: float = option(3.0, "passes over the training records", gt=0)
    max_steps: int = option(-1, "stop after this many steps (> 0 overrides epochs)")
    lr: float | None = option(None, "learning rate (default 2e-5 full, 3e-4 LoRA; --method dpo: 5e-7 full, "
                                    "5e-6 LoRA)", gt=0)
    batch_size: int = option(4, "per-device batch size", ge=1)
    grad_accum: int | None = option(None, f"gradient accumulation steps (default: effective batch "
                                          f"{EFFECTIVE_BATCH})", ge=1)
    max_len: int = option(512, "tokens per record; longer records are truncated", ge=1)
    packing: str = option("auto", "records end to end in one row, no padding, attention within each record: auto "
                                  "(when a check on the model finds it exact), on, off", choices=PACKING_MODES)
    group_by_length: bool = option(False, "batch records of similar length (less padding with --packing off)")
    bf16: str = option("auto", "bfloat16 mixed precision: auto (on CUDA GPUs that support it), on (CPU too), off",
                       choices=("auto", "on", "off"))
    gradient_checkpointing: bool = option(False, "recompute activations in the backward pass: less memory, slower")
    warmup_ratio: float = option(0.03, "warmup: a fraction (<1) of the steps, or a step count", ge=0)
    weight_decay: float = option(0.0, "AdamW weight decay", ge=0)
    lr_scheduler: str = option("cosine", "transformers scheduler name", nonempty=True)
    val_size: float = option(0.0, "validation share (<1) or count (>=1)", ge=0)
    seed: int = option(42, "seed of the shuffles, the split and the LoRA init", ge=0, le=2**32 - 1)
    resume: bool = option(False, "continue from the last checkpoint in OUT/checkpoints")
    train_on_inputs: bool = option(False, "also take loss on the prompt")
    lora: bool = option(False, "train a LoRA adapter (peft) instead of all weights")
    lora_r: int = option(8, "LoRA rank", ge=1)
    lora_alpha: int = option(16, "LoRA scaling alpha", ge=1)
    lora_dropout: float = option(0.05, "dropout on the LoRA input", ge=0, lt=1)
    lora_target: str = option("q_proj,v_proj", "comma-separated module names, or all-linear", nonempty=True)
    qlora: bool = option(False, "QLoRA: the base model in 4-bit NF4 (bitsandbytes, double quantization), LoRA on "
                                "top, paged AdamW; implies --lora; needs a CUDA GPU and pip install 'pacos[qlora]'")
    save_every: float = option(0.1, "checkpoint interval: steps, or a fraction (<1) of the run", gt=0)
    eval_every: float = option(0.1, "validation interval: steps, or a fraction (<1) of the run", gt=0)
    log_every: int = option(1, "steps between train_log.jsonl lines", ge=1)
    save_total_limit: int = option(2, "checkpoints kept in OUT/checkpoints (oldest deleted)", ge=1)
    progress: bool = option(True, "no progress bar")
    nproc: int = option(1, "processes to launch on this machine (torchrun); inside a launched run the world size "
                           "comes from the launcher", ge=1)
    fsdp: bool = option(False, "FSDP full_shard, wrapping each decoder layer (Alpaca's setting); else DDP when there "
                               "are several processes")

    def __post_init__(self) -> None:
        if self.data is None or self.out is None:
            raise ConfigError("pacos train needs --data FILE and --out DIR (only --dry-run goes without)")
        if isinstance(self.data, (str, os.PathLike)):  # Python callers: data="file.json"
            self.data = (self.data,)
        check_fields(self)
        self.data = tuple(os.fspath(d) for d in self.data)
        parse_sources(self.data, flag_of(self, "data"))  # bad weights fail here, before anything loads
        if self.method == "dpo":
            sft_only = [flag for flag, used in (("--train-on-inputs", self.train_on_inputs),
                                                ("--packing on", self.packing == "on"),
                                                ("--group-by-length", self.group_by_length),
                                                ("--nproc", self.nproc > 1), ("--fsdp", self.fsdp)) if used]
            if sft_only:
                raise ConfigError(f"{sft_only[0]} is not available with --method dpo (DPO pads each pair and runs "
                                  "in one process)")
        if self.qlora:
            if self.fsdp or self.method != "sft":
                raise ConfigError(f"--qlora with {'--fsdp' if self.fsdp else '--method ' + self.method} is not "
                                  "supported: QLoRA trains a LoRA adapter by SFT, on one GPU or with DDP")
            self.lora = True  # QLoRA is LoRA on a 4-bit base
        if self.fsdp and self.lora:
            raise ConfigError("--fsdp with --lora is not supported: a LoRA adapter trains with DDP (drop --fsdp)")

    @property
    def sources(self) -> list[Source]:
        """The --data files with their mixture weights (see pacos.data.mixture)."""
        return parse_sources(self.data, flag_of(self, "data"))

    @property
    def learning_rate(self) -> float:
        if self.lr is not None:
            return self.lr
        if self.method == "dpo":
            return DPO_LORA_LR if self.lora else DPO_FULL_LR
        return LORA_LR if self.lora else FULL_LR

    def use_bf16(self, cuda: bool, cuda_bf16: bool) -> bool:
        """`--bf16` on this machine: `cuda` when training on GPUs, `cuda_bf16` when they support bfloat16."""
        if self.bf16 == "on" and cuda and not cuda_bf16:
            raise ConfigError("--bf16 on: this GPU has no bfloat16 support; use --bf16 off")
        return self.bf16 == "on" or (self.bf16 == "auto" and cuda and cuda_bf16)

    def accumulation(self, devices: int = 1) -> int:
        if self.grad_accum is not None:
            return self.grad_accum
        return max(1, EFFECTIVE_BATCH // (self.batch_size * max(1, devices)))
