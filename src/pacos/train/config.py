"""Training configuration: the Stanford Alpaca recipe's defaults, written once."""

from __future__ import annotations

from dataclasses import dataclass

# Alpaca: 3 epochs, cosine, warmup 0.03, effective batch 128, max length 512, lr 2e-5 (full);
# alpaca-lora: lr 3e-4, r 8, alpha 16, dropout 0.05 on q_proj+v_proj.
EFFECTIVE_BATCH = 128
FULL_LR = 2e-5
LORA_LR = 3e-4


@dataclass
class TrainConfig:
    model: str
    data: str
    out: str
    template: str | None = None  # None: alpaca for instructions, model/vicuna for conversations
    epochs: float = 3.0
    max_steps: int = -1  # > 0 overrides epochs
    lr: float | None = None  # None: FULL_LR or LORA_LR
    batch_size: int = 4  # per device
    grad_accum: int | None = None  # None: EFFECTIVE_BATCH / (batch_size * devices)
    max_len: int = 512
    warmup_ratio: float = 0.03
    weight_decay: float = 0.0
    lr_scheduler: str = "cosine"
    val_size: float = 0.0  # < 1: fraction of the records, >= 1: a count
    seed: int = 42
    resume: bool = False
    train_on_inputs: bool = False
    lora: bool = False
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    lora_target: str = "q_proj,v_proj"  # or "all-linear"
    save_every: float = 0.1  # < 1: fraction of total steps between checkpoints, else steps
    eval_every: float = 0.1
    log_every: int = 1
    save_total_limit: int = 2
    progress: bool = True

    @property
    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else (LORA_LR if self.lora else FULL_LR)

    def accumulation(self, devices: int = 1) -> int:
        if self.grad_accum is not None:
            return self.grad_accum
        return max(1, EFFECTIVE_BATCH // (self.batch_size * max(1, devices)))
