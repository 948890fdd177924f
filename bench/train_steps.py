"""Training step by step: the stanford_alpaca recipe's step and pacos's step on the same batches, alternated.

    python bench/train_steps.py                 # prints the table
    python bench/train_steps.py --record        # also writes its section of docs/benchmarks.md

`bench/train.py` times whole runs of a few steps, one process each: on a shared 2-core VM the runs' speed
moves by tens of percent between minutes, and a few steps are a small sample of the data's lengths. This
benchmark answers the two questions that leaves open, in one process:

1. What pacos's speed-up is over a representative sample of batches: `--batches` batches of the epoch's
   random order (seed `--seed`), each trained by both (the recipe: pad to the longest record, attention mask
   of the padding; pacos: packed, attention record by record), alternating who goes first, so the VM's drift
   falls on both. A step is forward, backward, AdamW step and zero_grad, each with its own model and
   optimizer from the same weights.
2. Whether pacos's step can be much faster on this CPU: its model FLOPs per second against the machine's
   own fp32 matmul rate (torch/MKL, a matmul of the model's shapes), measured in the same run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from benchlib import commit, machine, publish
from train import encoded_records

SECTION = "## Training step by step (`bench/train_steps.py`)"


def recipe_model(model_dir: Path):
    """stanford_alpaca's model and collator: [PAD] added (mean-initialised), pad to the longest, mask = not pad."""
    import torch
    import transformers

    model = transformers.AutoModelForCausalLM.from_pretrained(model_dir)
    tokenizer = transformers.AutoTokenizer.from_pretrained(model_dir, padding_side="right")
    added = tokenizer.add_special_tokens({"pad_token": "[PAD]"})
    model.resize_token_embeddings(len(tokenizer), mean_resizing=False)  # the mean, next line
    for weights in (model.get_input_embeddings().weight.data, model.get_output_embeddings().weight.data):
        weights[-added:] = weights[:-added].mean(dim=0, keepdim=True)
    pad = tokenizer.pad_token_id

    def collate(rows):
        ids = torch.nn.utils.rnn.pad_sequence([torch.tensor(r["input_ids"]) for r in rows], batch_first=True,
                                              padding_value=pad)
        labels = torch.nn.utils.rnn.pad_sequence([torch.tensor(r["labels"]) for r in rows], batch_first=True,
                                                 padding_value=-100)
        return dict(input_ids=ids, labels=labels, attention_mask=ids.ne(pad))

    return model, tokenizer, collate


def pacos_model(model_dir: Path):
    """pacos train's model and collator (its loading, its pad token, packing as `--packing auto` chooses)."""
    import torch

    from pacos.models.loading import load_model
    from pacos.prompting.special_tokens import ensure_pad_token
    from pacos.train.packing import choose_packing, packed_collator

    model, tokenizer = load_model(model_dir, trainable=True, dtype=torch.float32)  # full fine-tuning's weights
    ensure_pad_token(tokenizer, model, add=True)
    packed, _ = choose_packing(model, "auto", log=lambda *_: None)
    if not packed:
        raise SystemExit("pacos did not pack this model: nothing to compare")
    return model, tokenizer, packed_collator()


def step_seconds(model, optimizer, batch) -> float:
    started = time.perf_counter()
    model(**batch, use_cache=False).loss.backward()
    optimizer.step()
    optimizer.zero_grad()
    return time.perf_counter() - started


def matmul_rate(tokens: int, hidden: int, intermediate: int) -> float:
    """The machine's fp32 matmul rate (FLOP/s) on the model's MLP shape, best of 5."""
    import torch

    a, b = torch.randn(tokens, hidden), torch.randn(hidden, intermediate)
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(5))
    return 2 * tokens * hidden * intermediate / best


def _timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def model_flops(config, lengths) -> float:
    """Forward + backward FLOPs of a packed batch: 6 x (linear weights) per token, plus causal attention
    (QK^T and PV over each record's lower triangle: 2 L^2 d a layer forward, x3 with the backward)."""
    h, layers = config.hidden_size, config.num_hidden_layers
    kv = h * config.num_key_value_heads // config.num_attention_heads
    linear = layers * (2 * h * h + 2 * h * kv + 3 * h * config.intermediate_size) + h * config.vocab_size
    return sum(6 * linear * n + 6 * layers * n * n * h for n in lengths)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="small")
    parser.add_argument("--batches", type=int, default=30, help="batches of the epoch's random order, each "
                        "trained by both")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--max-len", type=int, default=2048)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--record", action="store_true", help="write the results to docs/benchmarks.md")
    args = parser.parse_args()

    import pacos  # noqa: F401  (the `pacos` command's OpenMP settings, for both: bench/train.py does the same)
    import torch
    import transformers

    from pacos.models.presets import init_model

    options = "".join(f" --{k.replace('_', '-')} {getattr(args, k)}" for k in
                      ("preset", "batches", "batch_size", "max_len", "lr", "seed")
                      if getattr(args, k) != parser.get_default(k))
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = Path(tmp) / args.preset
        params = init_model(args.preset, model_dir, seed=0)
        recipe, recipe_tok, recipe_collate = recipe_model(model_dir)
        ours, ours_tok, ours_collate = pacos_model(model_dir)
    rows = encoded_records(ours_tok, args.max_len)
    assert rows == encoded_records(recipe_tok, args.max_len)  # both train on the same tokens
    order = torch.randperm(len(rows), generator=torch.Generator().manual_seed(args.seed)).tolist()
    batches = [[rows[i] for i in order[k:k + args.batch_size]]
               for k in range(0, args.batches * args.batch_size, args.batch_size)]
    if len(batches[-1]) < args.batch_size:
        raise SystemExit(f"--batches {args.batches} x --batch-size {args.batch_size} is more than the "
                         f"{len(rows)} records")
    runs = [(recipe, torch.optim.AdamW(recipe.parameters(), lr=args.lr), recipe_collate),
            (ours, torch.optim.AdamW(ours.parameters(), lr=args.lr), ours_collate)]
    for model, optimizer, collate in runs:  # a first step each, untimed: allocations and threads warm up
        model.train()
        step_seconds(model, optimizer, collate(batches[0]))

    per_batch = []  # (real tokens, computed by the recipe, recipe seconds, pacos seconds)
    for k, batch in enumerate(batches):
        lengths = [len(r["input_ids"]) for r in batch]
        seconds = [0.0, 0.0]
        for who in ((0, 1) if k % 2 == 0 else (1, 0)):
            model, optimizer, collate = runs[who]
            seconds[who] = step_seconds(model, optimizer, collate(batch))
        per_batch.append((sum(lengths), len(lengths) * max(lengths), *seconds, lengths))
        print(f"batch {k + 1}/{len(batches)}: lengths {lengths}, recipe {seconds[0]:.2f} s, pacos {seconds[1]:.2f} s, "
              f"{seconds[0] / seconds[1]:.2f}x", flush=True)

    real = sum(b[0] for b in per_batch)
    computed = sum(b[1] for b in per_batch)
    recipe_s, ours_s = sum(b[2] for b in per_batch), sum(b[3] for b in per_batch)
    ratios = sorted(b[2] / b[3] for b in per_batch)
    flops = sum(model_flops(ours.config, b[4]) for b in per_batch)
    mean_tokens = real // len(per_batch)
    rate = matmul_rate(mean_tokens, ours.config.hidden_size, ours.config.intermediate_size)
    markdown = (
        f"{SECTION}\n\n"
        f"Command: `python bench/train_steps.py{options} --record` · machine: {machine()}, no GPU, torch {torch.__version__}, transformers "
        f"{transformers.__version__} · commit {commit()} · 1-minute load average at the start: {load:.1f}\n\n"
        f"`{args.preset}` ({params / 1e6:.0f}M), the first {len(per_batch)} batches of {args.batch_size} of an "
        f"epoch's random order (seed {args.seed}) of the 1,000 Alpaca records (max length {args.max_len}), each "
        f"trained by the stanford_alpaca recipe's step and by pacos's, alternated in one process (forward, "
        f"backward, AdamW step; own model and optimizer each, same initial weights).\n\n"
        f"| | stanford_alpaca recipe | pacos |\n|---|---:|---:|\n"
        f"| real tokens | {real:,} | {real:,} |\n"
        f"| computed tokens (padding included) | {computed:,} ({1 - real / computed:.0%} padding) | {real:,} |\n"
        f"| seconds, all batches | {recipe_s:.1f} | {ours_s:.1f} |\n"
        f"| real tokens/s | {real / recipe_s:,.0f} | {real / ours_s:,.0f} ({recipe_s / ours_s:.2f}x) |\n\n"
        f"Per batch, pacos against the recipe: median {statistics.median(ratios):.2f}x, from {ratios[0]:.2f}x to "
        f"{ratios[-1]:.2f}x. pacos's step runs the model's forward and backward FLOPs at "
        f"{flops / ours_s / 1e9:.0f} GFLOP/s (linear layers and causal attention, optimizer time included in the "
        f"seconds); this machine's fp32 matmul of the model's MLP shape ({mean_tokens:,} x "
        f"{ours.config.hidden_size} x {ours.config.intermediate_size}) runs at {rate / 1e9:.0f} GFLOP/s.\n")
    publish(SECTION, markdown, args.record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
