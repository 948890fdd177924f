"""The transformers TrainingArguments every training method shares, from TrainConfig (SFT's Trainer, DPO's too)."""

from __future__ import annotations

from pathlib import Path

from pacos.train.config import TrainConfig


def trainer_arguments(config: TrainConfig, ckpt_dir: Path, accum: int, validation: bool, packed: bool,
                      model) -> dict:
    """Keyword arguments for TrainingArguments (or a subclass such as TRL's DPOConfig)."""
    import torch

    from pacos.train import distributed

    use_cuda = torch.cuda.is_available()
    return dict(
        output_dir=str(ckpt_dir),
        num_train_epochs=config.epochs,
        max_steps=config.max_steps,
        learning_rate=config.learning_rate,
        per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=config.batch_size,
        gradient_accumulation_steps=accum,
        warmup_steps=config.warmup_ratio,  # a float < 1 is a ratio of the total steps
        lr_scheduler_type=config.lr_scheduler,
        weight_decay=config.weight_decay,
        logging_steps=config.log_every,
        save_strategy="steps",
        save_steps=config.save_every,
        save_total_limit=config.save_total_limit,
        eval_strategy="steps" if validation else "no",
        eval_steps=config.eval_every if validation else None,
        seed=config.seed,
        data_seed=config.seed,
        report_to="none",
        disable_tqdm=True,
        include_num_input_tokens_seen="all" if packed else "non_padding",  # a packed batch has no padding
        bf16=config.use_bf16(use_cuda, use_cuda and torch.cuda.is_bf16_supported()),
        train_sampling_strategy="group_by_length" if config.group_by_length else "random",
        activation_checkpointing=config.gradient_checkpointing,
        use_cpu=not use_cuda,
        dataloader_num_workers=0,
        ddp_backend="gloo" if distributed.world_size() > 1 and not use_cuda else None,  # 1 process: no group
        ddp_find_unused_parameters=False if distributed.world_size() > 1 else None,  # all weights train each step
        fsdp=config.fsdp or None,
        fsdp_config=distributed.fsdp_settings(model) if config.fsdp else None,
    )
