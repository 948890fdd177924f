"""Training speed: `pacos train`'s defaults against the stanford_alpaca recipe and TRL's SFTTrainer defaults.

    python bench/train.py                 # prints the table
    python bench/train.py --record        # also writes the "Training speed" section of docs/benchmarks.md

One run; for each model (`small`, `base-100m` presets, random weights, built offline) every method trains
the same model from the same weights on the same 1,000 real Alpaca records (../shared/data), tokenized once
by pacos (Alpaca template, prompt labels -100), with the same hyperparameters: batch 4, no accumulation,
AdamW at `--lr`, cosine, no warmup, seed 42, `--steps` optimizer steps (`--bf16-steps` for `--bf16 on`). Each method runs in a subprocess of
its own, so its peak RSS (wait4's ru_maxrss) is its own. Methods:
- `stanford_alpaca`: their train.py as written: `Trainer`, their `DataCollatorForSupervisedDataset` (pad to
  the longest record of the batch, attention mask = not pad), their `smart_tokenizer_and_embedding_resize`
  ([PAD] added, mean-initialised), random order, fp32 (their bf16/tf32 flags are GPU ones);
- `stanford-kept`: the same, with glibc keeping freed memory for the next step as `pacos train` has it on a
  CPU (`pacos.train.host_memory`): how much of pacos's gain is that setting;
- `TRL SFTTrainer`: trl's defaults (`SFTConfig`: gradient checkpointing on, padding to the longest, eos as
  pad) given our tokenized records with their labels, except bf16: SFTConfig turns it on wherever fp16 is
  off, CPU included, and on a CPU without bf16 instructions that is 20-30x slower (see docs/training.md);
- `pacos train` with its defaults (packing), and with `--bf16 on`, `--gradient-checkpointing`, and
  `--packing off --group-by-length` (the alternative to packing).
Real tokens are the records' tokens (padding excluded), counted in each method's collator; tokens/s is real
tokens over the wall time of `trainer.train()` (model loading and tokenization excluded). Final loss is the
last logged step's loss: the random-order methods see the same records in the same order.
The stanford_alpaca recipe and pacos's defaults run `--rounds` times (default 3), alternated after the first
round, and each keeps its fastest run: this 2-core VM's speed moves by tens of percent between minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchlib import REPO, commit, machine, publish

SECTION = "## Training speed (`pacos train`)"
ALPACA = REPO.parent / "shared" / "data" / "alpaca_en_1k.json"
PRESETS = ("small", "base-100m")
METHODS = {  # name: (label, pacos TrainConfig overrides or None for a baseline)
    "stanford": ("stanford_alpaca recipe (Trainer, pad to longest, random order, fp32)", None),
    "stanford-kept": ("stanford_alpaca recipe, freed memory kept as pacos train keeps it", None),
    "trl": ("TRL SFTTrainer, defaults but bf16 off (gradient checkpointing, pad to longest)", None),
    "pacos": ("**pacos train, defaults (packing, fp32)**", {}),
    "pacos-bf16": ("pacos train --bf16 on", {"bf16": "on"}),
    "pacos-ckpt": ("pacos train --gradient-checkpointing", {"gradient_checkpointing": True}),
    "pacos-group": ("pacos train --packing off --group-by-length", {"packing": "off", "group_by_length": True}),
}
BASE_METHODS = ("stanford", "trl", "pacos")  # base-100m: the three the issue compares
PAIR = ("stanford", "pacos")  # the target's two, run `--rounds` times alternately


class CountingCollator:
    """Wraps a collator: each batch's real tokens (the records' own) and computed tokens (padding included).

    The data loader collates one batch ahead of the one trained on, so only the first `batches` count."""

    def __init__(self, collate):
        self.collate, self.batches = collate, []

    def __call__(self, features, *args, **kwargs):
        batch = self.collate(features, *args, **kwargs)
        self.batches.append((sum(len(f["input_ids"]) for f in features), batch["input_ids"].numel()))
        return batch

    def tokens(self, batches: int) -> dict:
        assert len(self.batches) >= batches, (len(self.batches), batches)
        real, computed = zip(*self.batches[:batches])
        return dict(real=sum(real), computed=sum(computed))


def encoded_records(tokenizer, max_len: int):
    from pacos.data.formats import load_records
    from pacos.prompting.templates import get_template
    from pacos.train.loop import encode_dataset

    if not ALPACA.is_file():
        raise SystemExit(f"{ALPACA} is missing: this benchmark needs the real Alpaca records in ../shared/data")
    rows, _ = encode_dataset(load_records(ALPACA), tokenizer, get_template("alpaca"), max_len, False)
    return rows


def trainer_args(cls, args, out: str, **extra):
    return cls(output_dir=out, max_steps=args.steps, per_device_train_batch_size=args.batch_size,
               gradient_accumulation_steps=args.grad_accum, learning_rate=args.lr, lr_scheduler_type="cosine",
               warmup_steps=0, weight_decay=0.0, seed=42, logging_steps=1, save_strategy="no", report_to="none",
               disable_tqdm=True, use_cpu=True, dataloader_num_workers=0, **extra)


def run_stanford(args, out: str) -> dict:
    """stanford_alpaca's train.py on our tokenized records (their SupervisedDataset tokenizes the same way)."""
    import torch
    import transformers
    from torch.utils.data import Dataset

    ignore_index = -100
    model = transformers.AutoModelForCausalLM.from_pretrained(args.model_dir)
    tokenizer = transformers.AutoTokenizer.from_pretrained(args.model_dir, model_max_length=args.max_len,
                                                           padding_side="right")
    # smart_tokenizer_and_embedding_resize, as they wrote it.
    num_new_tokens = tokenizer.add_special_tokens({"pad_token": "[PAD]"})
    model.resize_token_embeddings(len(tokenizer))
    input_embeddings = model.get_input_embeddings().weight.data
    output_embeddings = model.get_output_embeddings().weight.data
    input_embeddings[-num_new_tokens:] = input_embeddings[:-num_new_tokens].mean(dim=0, keepdim=True)
    output_embeddings[-num_new_tokens:] = output_embeddings[:-num_new_tokens].mean(dim=0, keepdim=True)

    rows = encoded_records(tokenizer, args.max_len)

    class SupervisedDataset(Dataset):
        def __len__(self):
            return len(rows)

        def __getitem__(self, i):
            return dict(input_ids=torch.tensor(rows[i]["input_ids"]), labels=torch.tensor(rows[i]["labels"]))

    def collate(instances):  # DataCollatorForSupervisedDataset
        input_ids, labels = tuple([instance[key] for instance in instances] for key in ("input_ids", "labels"))
        input_ids = torch.nn.utils.rnn.pad_sequence(input_ids, batch_first=True, padding_value=tokenizer.pad_token_id)
        labels = torch.nn.utils.rnn.pad_sequence(labels, batch_first=True, padding_value=ignore_index)
        return dict(input_ids=input_ids, labels=labels, attention_mask=input_ids.ne(tokenizer.pad_token_id))

    counter = CountingCollator(collate)
    trainer = transformers.Trainer(model=model, processing_class=tokenizer,
                                   args=trainer_args(transformers.TrainingArguments, args, out),
                                   train_dataset=SupervisedDataset(), data_collator=counter)
    return _timed(trainer, counter, args)


def run_trl(args, out: str) -> dict:
    import transformers
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    model = transformers.AutoModelForCausalLM.from_pretrained(args.model_dir)
    tokenizer = transformers.AutoTokenizer.from_pretrained(args.model_dir)
    rows = encoded_records(tokenizer, args.max_len)
    trainer = SFTTrainer(model=model, processing_class=tokenizer, train_dataset=Dataset.from_list(rows),
                         args=trainer_args(SFTConfig, args, out, max_length=args.max_len, bf16=False))
    counter = CountingCollator(trainer.data_collator)
    trainer.data_collator = counter
    return _timed(trainer, counter, args)


def _timed(trainer, counter, args) -> dict:
    started = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - started
    losses = [row["loss"] for row in trainer.state.log_history if "loss" in row]
    return dict(seconds=seconds, losses=losses, **counter.tokens(args.steps * args.grad_accum))


def run_pacos(args, out: str, overrides: dict) -> dict:
    import pacos.train.packing as packing
    from pacos.data.formats import load_records
    from pacos.train.config import TrainConfig
    from pacos.train.loop import train
    from pacos.train.progress import read_log

    counters = []

    def counted(make):
        def build(*a):
            counters.append(CountingCollator(make(*a)))
            return counters[-1]
        return build

    # The loop imports its collators when it runs: count their batches as the baselines' are counted.
    packing.packed_collator, packing.padded_collator = counted(packing.packed_collator), counted(packing.padded_collator)
    config = TrainConfig(model=args.model_dir, data=str(ALPACA), out=out, max_steps=args.steps,
                         batch_size=args.batch_size, grad_accum=args.grad_accum, lr=args.lr, warmup_ratio=0.0,
                         max_len=args.max_len, seed=42, save_every=10**6, progress=False, **overrides)
    result = train(config, records=load_records(ALPACA), log=lambda *_: None)
    log = [row for row in read_log(Path(out) / "train_log.jsonl") if "loss" in row]
    tokens = counters[-1].tokens(args.steps * args.grad_accum)  # the trainer's (the packing check builds one first)
    assert log[-1]["tokens_seen"] == tokens["real"], (log[-1]["tokens_seen"], tokens)  # the log's tokens/s is real
    return dict(seconds=result.train_seconds, losses=[row["loss"] for row in log], **tokens)


def worker(args) -> int:
    import pacos  # noqa: F401  (OpenMP threads sleep between passes, as in the `pacos` command)

    with tempfile.TemporaryDirectory() as out:
        if args.worker == "stanford-kept":
            from pacos.train.host_memory import keep_freed_memory

            keep_freed_memory()
        if args.worker in ("stanford", "stanford-kept"):
            result = run_stanford(args, out)
        elif args.worker == "trl":
            result = run_trl(args, out)
        else:
            result = run_pacos(args, out, METHODS[args.worker][1])
    Path(args.result).write_text(json.dumps(result))
    return 0


def run_method(method: str, model_dir: Path, steps: int, args, tmp: Path) -> dict:
    result = tmp / f"{model_dir.name}-{method}.json"
    command = [sys.executable, __file__, "--worker", method, "--model-dir", str(model_dir), "--result", str(result),
               "--steps", str(steps), "--batch-size", str(args.batch_size), "--grad-accum", str(args.grad_accum),
               "--lr", str(args.lr), "--max-len", str(args.max_len)]
    proc = subprocess.Popen(command, cwd=REPO)
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{method} on {model_dir.name} failed")
    out = json.loads(result.read_text())
    out["peak_rss_gb"] = usage.ru_maxrss / 2**20  # KiB on Linux
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", default="small=6,base-100m=2", help="optimizer steps per preset")
    parser.add_argument("--bf16-steps", type=int, default=1, help="steps of `pacos train --bf16 on` (slow on CPU)")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--grad-accum", type=int, default=1)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--max-len", type=int, default=2048,
                        help="tokens per record: our presets' tokenizer is per character, so 2048 is about the "
                             "recipe's 512 LLaMA tokens")
    parser.add_argument("--methods", default=",".join(METHODS), help="for small; base-100m runs "
                        + ", ".join(BASE_METHODS))
    parser.add_argument("--presets", default=",".join(PRESETS))
    parser.add_argument("--rounds", type=int, default=3, help="alternated runs of the recipe and pacos (fastest kept)")
    parser.add_argument("--record", action="store_true", help="write the results to docs/benchmarks.md")
    parser.add_argument("--worker", choices=tuple(METHODS), help=argparse.SUPPRESS)
    parser.add_argument("--model-dir", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        args.steps = int(args.steps)
        return worker(args)

    import torch
    import transformers
    import trl

    from pacos.models.presets import init_model

    steps = dict(item.split("=") for item in args.steps.split(","))
    load = os.getloadavg()[0]
    rows, rounds_note = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for preset in args.presets.split(","):
            model_dir = Path(tmp) / preset
            params = init_model(preset, model_dir, seed=0)
            methods = [m for m in args.methods.split(",") if preset == "small" or m in BASE_METHODS]
            best, seconds = {}, {m: [] for m in methods}
            # Round 1 runs every method; later rounds alternate the compared pair (the recipe, then pacos), so a
            # machine that speeds up or slows down does so for both; each keeps its fastest run.
            for r in range(args.rounds):
                for method in methods if r == 0 else [m for m in PAIR if m in methods]:
                    n = args.bf16_steps if method == "pacos-bf16" else int(steps[preset])
                    out = run_method(method, model_dir, n, args, Path(tmp))
                    seconds[method].append(out["seconds"])
                    if method not in best or out["seconds"] < best[method][1]["seconds"]:
                        best[method] = (n, out)
                    print(f"{preset} {method}: {out['real'] / out['seconds']:.0f} real tokens/s, {out['seconds']:.0f} s, "
                          f"loss {out['losses'][-1]:.4f}, peak RSS {out['peak_rss_gb']:.2f} GB", flush=True)
            rows += [(preset, params, m, *best[m]) for m in methods]
            if all(seconds.get(m) for m in PAIR):
                rounds_note[preset] = [a / b for a, b in zip(seconds["stanford"], seconds["pacos"])]

    table = ["| model | method | real tokens | padding computed | seconds | real tokens/s | vs stanford_alpaca "
             "| peak RSS | final loss | loss vs stanford_alpaca |", "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    base = {}
    for preset, params, method, n, out in rows:
        rate = out["real"] / out["seconds"]
        if method == "stanford":
            base[preset] = (rate, out["losses"][-1], n)
        ref_rate, ref_loss, ref_steps = base.get(preset, (float("nan"), float("nan"), None))
        loss_vs = f"{100 * (out['losses'][-1] / ref_loss - 1):+.2f}%" if n == ref_steps else "other steps"
        table.append(f"| {preset} ({params / 1e6:.0f}M), {n} steps | {METHODS[method][0]} | {out['real']:,} | "
                     f"{1 - out['real'] / out['computed']:.0%} | {out['seconds']:.0f} | {rate:,.0f} | "
                     f"{rate / ref_rate:.2f}x | {out['peak_rss_gb']:.2f} GB | {out['losses'][-1]:.4f} | {loss_vs} |")
    options = "".join(f" --{k.replace('_', '-')} {getattr(args, k)}" for k in
                      ("steps", "bf16_steps", "batch_size", "grad_accum", "lr", "max_len", "methods", "presets",
                       "rounds")
                      if getattr(args, k) != parser.get_default(k))
    markdown = (
        f"{SECTION}\n\n"
        f"Command: `python bench/train.py{options} --record` · machine: {machine()}, no GPU, torch {torch.__version__}, "
        f"transformers {transformers.__version__}, trl {trl.__version__} · commit {commit()} · 1-minute load "
        f"average at the start: {load:.1f}\n\n"
        f"Each method trains the same random-weight preset from the same weights on the 1,000 real Alpaca records "
        f"(Alpaca template, prompt labels -100, max length {args.max_len} tokens: our tokenizer is per character, "
        f"so this is about the recipe's 512 LLaMA tokens), batch {args.batch_size} x accumulation {args.grad_accum}, "
        f"lr {args.lr:g}, cosine, no warmup, seed 42, in a process of its own. Real tokens exclude padding; "
        f"\"padding computed\" is the share of the computed tokens that were padding; tokens/s is over the wall "
        f"time of `trainer.train()`. Target: pacos >= 2.5x the stanford_alpaca recipe's real tokens/s on CPU, "
        f"final loss within 2%. MFU on a GPU: not measured (no GPU was lent to this run).\n\n"
        + "\n".join(table) + "\n"
        + "".join(f"\n{preset}: pacos vs the recipe in each of the {len(r)} alternated rounds (the table keeps "
                  f"each one's fastest): {', '.join(f'{x:.2f}x' for x in r)}.\n" for preset, r in rounds_note.items()))
    publish(SECTION, markdown, args.record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
