"""The fine-tuning recipe in one place: records → masked tokens → transformers Trainer (full or LoRA) → saved model."""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path

from pacos.errors import PacosError
from pacos.train.config import TrainConfig

RUN_FILE = "pacos_train.json"  # beside the saved model: template and settings, read back by inference
LOG_FILE = "train_log.jsonl"
PLOT_FILE = "loss_curve.png"


@dataclass
class EncodeReport:
    total: int = 0
    truncated: int = 0
    skipped: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (f"records: {self.total} | truncated: {self.truncated} | "
                f"skipped (response would be cut away): {len(self.skipped)}")


@dataclass
class TrainResult:
    out: Path
    steps: int
    train_seconds: float
    final_loss: float | None
    report: EncodeReport


def encode_dataset(records, tokenizer, template, max_len: int, train_on_inputs: bool, source: str = "data"):
    """Tokenize every record; count truncations and skip (with a reason) records that have nothing to learn."""
    from pacos.prompting.encode import SkippedRecord, encode_record

    report = EncodeReport(total=len(records))
    rows = []
    for i, record in enumerate(records):
        try:
            enc = encode_record(record, tokenizer, template, max_len=max_len, train_on_inputs=train_on_inputs)
        except SkippedRecord as e:
            report.skipped.append(f"{source}[{i}]: {e}")
            continue
        report.truncated += enc.truncated
        rows.append({"input_ids": enc.input_ids, "labels": enc.labels})
    return rows, report


def split_validation(rows: list, val_size: float, seed: int) -> tuple[list, list]:
    n_val = int(round(val_size * len(rows))) if val_size < 1 else int(val_size)
    if n_val <= 0:
        return rows, []
    if n_val >= len(rows):
        raise PacosError(f"--val-size {val_size} leaves no training records (there are {len(rows)})")
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    val_idx = set(order[:n_val])
    return [r for i, r in enumerate(rows) if i not in val_idx], [rows[i] for i in sorted(val_idx)]


def train(config: TrainConfig, records=None, log=print, callbacks=()) -> TrainResult:
    """Run one fine-tuning job as configured; returns where the model went and what happened.

    `records` overrides reading `config.data`; `callbacks` are extra transformers TrainerCallbacks.
    """
    import time

    import torch
    from datasets import Dataset
    from transformers import PrinterCallback, TrainingArguments
    from transformers import ProgressCallback as HFProgress

    from pacos.data.formats import load_records
    from pacos.models.loading import load_model
    from pacos.prompting.special_tokens import ensure_pad_token
    from pacos.prompting.templates import get_template, record_kind
    from pacos.train.checkpoints import ResumingTrainer, choose_resume_checkpoint
    from pacos.train.packing import choose_packing, packed_collator, padded_collator, restore_attention
    from pacos.train.progress import (
        JsonlLogCallback,
        ProgressCallback,
        plot_loss,
        read_log,
    )

    out = Path(config.out)
    ckpt_dir = out / "checkpoints"
    # Chosen before the model loads: a run with nothing to resume from fails in a second, not a minute.
    resume_from = str(choose_resume_checkpoint(ckpt_dir, config.lora, log)) if config.resume else None
    out.mkdir(parents=True, exist_ok=True)

    records = load_records(config.data) if records is None else records
    if not records:
        raise PacosError(f"{config.data}: no records to train on")
    model, tokenizer = load_model(config.model, trainable=True)
    tokenizer.padding_side = "right"
    log(ensure_pad_token(tokenizer, model, add=not config.lora))
    template = get_template(config.template, tokenizer, record_kind(records))
    rows, report = encode_dataset(records, tokenizer, template, config.max_len, config.train_on_inputs,
                                  source=str(config.data))
    log(f"template: {template.name} | max_len: {config.max_len} | " + report.summary())
    for reason in report.skipped[:5]:
        log(f"  skipped {reason}")
    if not rows:
        raise PacosError("every record was skipped: raise --max-len")
    train_rows, val_rows = split_validation(rows, config.val_size, config.seed)
    packed, attention = choose_packing(model, config.packing, log)  # before LoRA: the base model's attention

    if config.lora:
        from transformers import set_seed

        set_seed(config.seed)  # LoRA's A matrices are drawn now, before the Trainer seeds anything
        model = _wrap_lora(model, config, log)

    use_cuda = torch.cuda.is_available()
    accum = config.accumulation(max(1, torch.cuda.device_count()) if use_cuda else 1)
    args = TrainingArguments(
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
        eval_strategy="steps" if val_rows else "no",
        eval_steps=config.eval_every if val_rows else None,
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
    )
    resume_step = _checkpoint_step(resume_from)
    callbacks = [JsonlLogCallback(out / LOG_FILE, resume_step), *callbacks]
    if config.progress:
        callbacks.append(ProgressCallback())
    trainer = ResumingTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(train_rows),
        eval_dataset=Dataset.from_list(val_rows) if val_rows else None,
        data_collator=packed_collator() if packed else padded_collator(tokenizer),
        callbacks=callbacks,
    )
    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(HFProgress)
    log(f"training: {len(train_rows)} records, {len(val_rows)} validation, batch {config.batch_size} x "
        f"accumulation {accum}, lr {config.learning_rate:g}" + (f" (resuming {resume_from})" if resume_from else ""))
    start = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=resume_from)
    seconds = time.perf_counter() - start

    from pacos.train.save import save_trained

    restore_attention(trainer.model, attention)
    save_trained(trainer.model, tokenizer, template, out, lora=config.lora)
    (out / RUN_FILE).write_text(json.dumps({
        "template": template.name, "base_model": config.model, "config": asdict(config),
        "records": report.total, "truncated": report.truncated, "skipped": len(report.skipped),
        "steps": result.global_step, "train_seconds": round(seconds, 2),
    }, indent=2))
    plot_loss(out / LOG_FILE, out / PLOT_FILE)
    final = next((r["loss"] for r in reversed(read_log(out / LOG_FILE)) if "loss" in r), None)
    log(f"saved {'LoRA adapter' if config.lora else 'model'} to {out} ({result.global_step} steps, "
        f"{seconds:.0f}s, final loss {final if final is None else round(final, 4)}); loss curve: {out / PLOT_FILE}")
    return TrainResult(out, result.global_step, seconds, final, report)


def _wrap_lora(model, config: TrainConfig, log):
    from peft import LoraConfig, get_peft_model

    from pacos.models.peft_warnings import peft_alias_filter

    targets = "all-linear" if config.lora_target == "all-linear" else [
        t.strip() for t in config.lora_target.split(",") if t.strip()]
    lora = LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                      target_modules=targets, task_type="CAUSAL_LM")
    try:
        with peft_alias_filter():
            model = get_peft_model(model, lora)
    except ValueError as e:
        raise PacosError(f"--lora-target {config.lora_target!r}: {e}") from None
    trainable, total = model.get_nb_trainable_parameters()
    log(f"LoRA r={config.lora_r} alpha={config.lora_alpha} on {config.lora_target}: "
        f"{trainable:,} trainable of {total:,} parameters ({100 * trainable / total:.2f}%)")
    return model


def _checkpoint_step(path: str | None) -> int:
    return int(Path(path).name.split("-")[-1]) if path else 0

