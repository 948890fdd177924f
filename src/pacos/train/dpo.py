"""Preference training (`pacos train --method dpo`): TRL's DPOTrainer on pairs tokenized by pacos's templates.

The pairs are tokenized here, not by TRL: the prompt exactly as the model is prompted when served
(`encode_prompt`), each answer as SFT trains it (`encode_preference`), so DPO trains the format the model
is served with, whichever template that is. The reference model is the policy as it starts: for `--lora`
the base model with the adapter disabled (TRL's own handling of a peft_config), for full training a frozen
copy. The output directory is laid out like SFT's (model or adapter, pacos_train.json, train_log.jsonl,
loss curve), so `pacos chat`/`serve`/`eval` take it as they take an SFT run.
"""

from __future__ import annotations

import copy
import time

from pacos.errors import PacosError
from pacos.train.config import TrainConfig
from pacos.train.loop import EncodeReport, TrainResult, _checkpoint_step, split_validation, start_run


def encode_pairs(pairs, tokenizer, template, max_len: int) -> tuple[list[dict], int]:
    """TRL's tokenized preference rows (prompt_ids, chosen_ids, rejected_ids) and how many were truncated."""
    from pacos.prompting.encode import encode_preference

    rows, truncated = [], 0
    for pair in pairs:
        enc = encode_preference(pair.context, pair.chosen, pair.rejected, tokenizer, template, max_len)
        truncated += enc.truncated
        rows.append({"prompt_ids": enc.prompt_ids, "chosen_ids": enc.chosen_ids, "rejected_ids": enc.rejected_ids})
    return rows, truncated


def _trainer_class():
    from trl import DPOTrainer

    from pacos.train.resuming import ResumingTrainer

    class PretokenizedDPOTrainer(ResumingTrainer, DPOTrainer):
        """DPOTrainer taking rows pacos already tokenized (TRL would re-render them with the chat template)."""

        def _prepare_dataset(self, dataset, *args, **kwargs):
            return dataset

    return PretokenizedDPOTrainer


def train_dpo(config: TrainConfig, pairs=None, log=print, callbacks=()) -> TrainResult:
    """Run one DPO job as configured; `pairs` (PreferencePairs) override reading `config.data`."""
    import torch
    from datasets import Dataset
    from transformers import PrinterCallback
    from transformers import ProgressCallback as HFProgress

    try:
        from trl import DPOConfig
    except ImportError:
        raise PacosError("--method dpo needs TRL: pip install 'pacos[dpo]' (or trl>=1.16)") from None

    from pacos.data.preferences import load_preferences, pairs_kind
    from pacos.models.peft_warnings import peft_alias_filter
    from pacos.prompting.templates import resolve_template
    from pacos.train.arguments import trainer_arguments
    from pacos.train.lora import log_trainable, lora_config
    from pacos.train.progress import JsonlLogCallback, ProgressCallback
    from pacos.train.save import LOG_FILE, save_run

    run = start_run(config, pairs, load_preferences, "preference pairs", log)
    out, ckpt_dir, resume_from, pairs, counts = run.out, run.ckpt_dir, run.resume_from, run.items, run.counts
    model, tokenizer = run.model, run.tokenizer
    # The template the model was trained with (and is served with), unless --template says otherwise.
    template = resolve_template(config.model, tokenizer, pairs_kind(pairs), config.template)
    rows, truncated = encode_pairs(pairs, tokenizer, template, config.max_len)
    report = EncodeReport(total=len(rows), truncated=truncated)
    log(f"template: {template.name} | max_len: {config.max_len} | pairs: {len(rows)} | truncated: {truncated}")
    train_rows, val_rows = split_validation(rows, config.val_size, config.seed)

    ref_model = None
    if not config.lora:
        ref_model = copy.deepcopy(model).eval().requires_grad_(False)
    accum = config.accumulation(max(1, torch.cuda.device_count()) if torch.cuda.is_available() else 1)
    args = DPOConfig(**trainer_arguments(config, ckpt_dir, accum, bool(val_rows), packed=False, model=model),
                     beta=config.dpo_beta, max_length=None)  # max_len is applied when encoding, as for SFT
    callbacks = [JsonlLogCallback(out / LOG_FILE, _checkpoint_step(resume_from)), *callbacks]
    if config.progress:
        callbacks.append(ProgressCallback())
    try:
        with peft_alias_filter():  # TRL wraps the model with peft here (and reads the alias every step)
            trainer = _trainer_class()(
                model=model, ref_model=ref_model, args=args, processing_class=tokenizer,
                train_dataset=Dataset.from_list(train_rows),
                eval_dataset=Dataset.from_list(val_rows) if val_rows else None,
                peft_config=lora_config(config) if config.lora else None, callbacks=callbacks)
    except ValueError as e:
        if config.lora and "target" in str(e).lower():
            raise PacosError(f"--lora-target {config.lora_target!r}: {e}") from None
        raise
    if config.lora:
        log_trainable(trainer.model, config, log)
    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(HFProgress)
    log(f"training (DPO, beta {config.dpo_beta:g}, reference: "
        f"{'the base model, adapter disabled' if config.lora else 'a frozen copy'}): {len(train_rows)} pairs, "
        f"{len(val_rows)} validation, batch {config.batch_size} x accumulation {accum}, lr {config.learning_rate:g}"
        + (f" (resuming {resume_from})" if resume_from else ""))
    start = time.perf_counter()
    with peft_alias_filter():
        result = trainer.train(resume_from_checkpoint=resume_from)
    seconds = time.perf_counter() - start
    final = save_run(trainer.model, tokenizer, template, config, out, {
        "pairs": len(rows), "truncated": truncated, "sources": [c.as_dict() for c in counts],
        "steps": result.global_step, "train_seconds": round(seconds, 2)}, log)
    return TrainResult(out, result.global_step, seconds, final, report)
