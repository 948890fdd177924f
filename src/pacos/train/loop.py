"""The fine-tuning recipe in one place: records → masked tokens → transformers Trainer (full or LoRA) → saved model."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

from pacos.errors import PacosError
from pacos.train.config import TrainConfig
from pacos.train.save import LOG_FILE, PLOT_FILE, RUN_FILE  # noqa: F401  (RUN_FILE: where callers look)


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


@dataclass
class RunStart:
    out: Path
    ckpt_dir: Path
    resume_from: str | None
    items: list  # what is trained on: records (SFT) or preference pairs (DPO)
    counts: list  # per --data source (pacos.data.mixture.SourceCount); empty when the items were given
    model: object
    tokenizer: object


def weights_dtype(config: TrainConfig):
    """The dtype the trained model is loaded in: fp32 master weights for full fine-tuning, as the Alpaca recipe
    (a bf16/fp16 checkpoint trained as loaded would keep its AdamW moments in 16 bits, where fp16 underflows;
    `--bf16` then autocasts the compute); for LoRA the frozen base stays in the checkpoint's dtype on a GPU
    (the adapters are fp32 either way) and is fp32 on a CPU, where 16-bit matmuls are slow or emulated."""
    import torch

    if config.lora and torch.cuda.is_available():
        return None  # the checkpoint's own dtype
    return torch.float32


def start_run(config: TrainConfig, items, load, what: str, log) -> RunStart:
    """What every method does first: the output directory, the checkpoint to resume, the items (`load`ed from
    each --data source and mixed, unless given) and the model with a pad token, ready to train."""
    from pacos.data.mixture import counts_summary, load_mixture
    from pacos.models.loading import check_model_ref, load_model
    from pacos.prompting.special_tokens import ensure_pad_token
    from pacos.train.checkpoints import choose_resume_checkpoint
    from pacos.train.distributed import is_main_process

    if config.qlora:
        from pacos.train.qlora import check_qlora

        check_qlora()  # no GPU or no bitsandbytes: one line now, not after loading the data
    check_model_ref(config.model)  # a missing local directory: one line before the data is read
    out = Path(config.out)
    ckpt_dir = out / "checkpoints"
    # Chosen before the model loads: a run with nothing to resume from fails in a second, not a minute.
    resume_from = str(choose_resume_checkpoint(ckpt_dir, config.lora, log, set_aside=is_main_process())
                      ) if config.resume else None  # rank 0 moves damaged ones aside, the others skip them
    out.mkdir(parents=True, exist_ok=True)
    counts = []
    if items is None:
        items, counts = load_mixture(config.sources, config.seed, load)
        log(counts_summary(counts))
    if not items:
        raise PacosError(f"{', '.join(config.data)}: no {what} to train on")
    import torch

    if not torch.cuda.is_available():
        from pacos.train.host_memory import keep_freed_memory

        keep_freed_memory()  # CPU: no step page-faults its activations anew (faster: docs/training.md)
    if config.qlora:
        from pacos.train.qlora import load_quantized, local_compute_dtype

        model, tokenizer = load_quantized(config, local_compute_dtype(config))
    else:
        model, tokenizer = load_model(config.model, trainable=True, dtype=weights_dtype(config))
    tokenizer.padding_side = "right"
    log(ensure_pad_token(tokenizer, model, add=not config.lora))
    return RunStart(out, ckpt_dir, resume_from, items, counts, model, tokenizer)


def train(config: TrainConfig, records=None, log=print, callbacks=()) -> TrainResult:
    """Run one fine-tuning job as configured; returns where the model went and what happened.

    `records` overrides reading `config.data`; `callbacks` are extra transformers TrainerCallbacks. This is
    `--method sft`; `--method dpo` is `pacos.train.dpo.train_dpo`.
    """
    if config.method != "sft":
        raise PacosError(f"--method {config.method}: train() is SFT; call pacos.train.dpo.train_dpo")
    import time

    from pacos.data.formats import load_records
    from pacos.prompting.templates import get_template, record_kind
    from pacos.train import distributed

    processes = distributed.world_size()
    if config.nproc > 1 and not distributed.launched():
        raise PacosError(f"--nproc {config.nproc}: the `pacos train` command launches the processes; from Python, "
                         "run under torchrun or accelerate launch")
    if config.fsdp and processes < 2:
        raise PacosError("--fsdp shards the model over several processes: add --nproc N (N >= 2), or launch "
                         "with torchrun / accelerate launch")
    main = distributed.is_main_process()
    if not main:
        log = _quiet  # rank 0 speaks for the run
    run = start_run(config, records, load_records, "records", log)
    # The training stack loads once the data and the model did: a bad --data or --resume fails in a second.
    import torch
    from datasets import Dataset
    from transformers import PrinterCallback, TrainingArguments
    from transformers import ProgressCallback as HFProgress

    from pacos.train.arguments import trainer_arguments
    from pacos.train.lora import wrap_lora
    from pacos.train.packing import choose_packing, packed_collator, padded_collator, restore_attention
    from pacos.train.progress import JsonlLogCallback, ProgressCallback
    from pacos.train.resuming import ResumingTrainer

    out, ckpt_dir, resume_from, records, counts = run.out, run.ckpt_dir, run.resume_from, run.items, run.counts
    model, tokenizer = run.model, run.tokenizer
    template = get_template(config.template, tokenizer, record_kind(records))
    rows, report = encode_dataset(records, tokenizer, template, config.max_len, config.train_on_inputs,
                                  source=config.data[0] if len(config.data) == 1 else "mixture")
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
        model = wrap_lora(model, config, log)
    qlora_args = {}
    if config.qlora:
        from pacos.train import qlora

        dtype = qlora.local_compute_dtype(config)
        qlora.cast_like_qlora(model, dtype)  # the QLoRA recipe's adapters in bf16 (after LoRA wraps them)
        qlora_args = qlora.training_arguments(dtype)

    use_cuda = torch.cuda.is_available()
    # Each process takes a batch of --batch-size; accumulation keeps the effective batch over all of them.
    accum = config.accumulation(processes if distributed.launched() else
                                max(1, torch.cuda.device_count()) if use_cuda else 1)
    args = TrainingArguments(**{**trainer_arguments(config, ckpt_dir, accum, bool(val_rows), packed, model),
                                **qlora_args})
    resume_step = _checkpoint_step(resume_from)
    callbacks = [*([JsonlLogCallback(out / LOG_FILE, resume_step)] if main else []), *callbacks]
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
    across = f" x {processes} processes ({'FSDP' if config.fsdp else 'DDP'})" if processes > 1 else ""
    log(f"training: {len(train_rows)} records, {len(val_rows)} validation, batch {config.batch_size}{across} x "
        f"accumulation {accum}, lr {config.learning_rate:g}" + (f" (resuming {resume_from})" if resume_from else ""))
    start = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=resume_from)
    seconds = time.perf_counter() - start

    from pacos.train.save import save_run

    restore_attention(trainer.model, attention)
    state_dict = distributed.full_state_dict(trainer)  # every process takes part in gathering FSDP's shards
    if not main:
        return TrainResult(out, result.global_step, seconds, None, report)
    final = save_run(trainer.model, tokenizer, template, config, out, {
        "records": report.total, "truncated": report.truncated, "skipped": len(report.skipped),
        "sources": [c.as_dict() for c in counts], "steps": result.global_step, "train_seconds": round(seconds, 2),
        "processes": processes}, log, state_dict=state_dict)
    return TrainResult(out, result.global_step, seconds, final, report)


def _quiet(*_args, **_kwargs) -> None:
    return None


def _checkpoint_step(path: str | None) -> int:
    return int(Path(path).name.split("-")[-1]) if path else 0

