"""Offline inference throughput: pacos's engine against transformers' static batches and its continuous batching.

    python bench/infer.py                 # prints the table
    python bench/infer.py --record        # also writes the "Offline inference" section of docs/benchmarks.md

One run, one model, the same prompts and answer lengths for every method:
- model: the `small` preset (25.7M parameters, random weights), built offline, fp32 on CPU;
- prompts: the first `--records` (512) of the 1,000 real Alpaca records in ../shared/data, in the Alpaca
  template, as `pacos infer` builds them;
- answer lengths: a random model never learnt to stop, so each record's answer stops after as many tokens as
  its real Alpaca answer has words (1 to 256, median 77): the spread of real answers, as an EOS would end them;
- greedy decoding, batch size `--batch-size` (16) for every method.

Methods:
- `pacos engine`: `complete_many` over the transformers engine, as `pacos infer` runs it (a finished record
  frees its slot at once; per-record `max_new_tokens` ends each answer at its length);
- `transformers generate, static batches`: the recipe before pacos's engine (and stanford_alpaca's/alpaca-lora's
  inference scripts): prompts sorted by length, batches of the same size, left padding, each batch generating
  until its longest answer is done (`min_new_tokens` = `max_new_tokens` = the longest), then each answer cut to
  its length;
- `transformers continuous batching`: `model.init_continuous_batching()` with default settings, one
  `add_request(..., max_new_tokens=length)` per record.
Output tokens counted are the answers' tokens (the same total for every method); records/s and tokens/s over
wall time, prompt encoding included for none (the prompts are encoded once, before timing).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from benchlib import REPO, commit, machine, publish

import pacos  # noqa: F401  (before torch: OpenMP threads sleep between passes, as in the `pacos` command)

SECTION = "## Offline inference (`pacos infer`)"
ALPACA = REPO.parent / "shared" / "data" / "alpaca_en_1k.json"


def workload(tokenizer, n: int, cap: int) -> tuple[list[list[int]], list[int]]:
    from pacos.data.records import Example
    from pacos.prompting.encode import encode_prompt
    from pacos.prompting.templates import get_template

    if not ALPACA.is_file():
        raise SystemExit(f"{ALPACA} is missing: this benchmark needs the real Alpaca records in ../shared/data")
    rows = json.loads(ALPACA.read_text())[:n]
    template = get_template("alpaca")
    prompts = [encode_prompt(Example(r["instruction"], r["input"]), tokenizer, template) for r in rows]
    lengths = [min(cap, max(1, len(r["output"].split()))) for r in rows]
    return prompts, lengths


def run_pacos(model, tokenizer, prompts, lengths, batch: int) -> tuple[float, list[list[int]] | None]:
    from pacos.infer.engine import complete_many
    from pacos.infer.hf_engine import TransformersEngine
    from pacos.infer.params import SamplingParams

    texts = [""] * len(prompts)
    with TransformersEngine(model, tokenizer, max_batch=batch, max_waiting=2 * batch) as engine:  # as `pacos infer`
        started = time.perf_counter()
        for i, done in complete_many(engine, prompts, SamplingParams(), ignore_eos=True,
                                     sampling_for=lambda i: SamplingParams(max_new_tokens=lengths[i])):
            assert done.completion_tokens == lengths[i], (i, done)
            texts[i] = done.text
        return time.perf_counter() - started, texts


def run_static(model, tokenizer, prompts, lengths, batch: int) -> tuple[float, list[str]]:
    import torch

    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    texts = [""] * len(prompts)
    tokenizer.padding_side = "left"
    started = time.perf_counter()
    for start in range(0, len(order), batch):
        idx = order[start:start + batch]
        longest = max(lengths[i] for i in idx)
        enc = tokenizer.pad({"input_ids": [prompts[i] for i in idx]}, return_tensors="pt", padding=True)
        with torch.inference_mode():
            out = model.generate(**enc, max_new_tokens=longest, min_new_tokens=longest, do_sample=False,
                                 pad_token_id=tokenizer.pad_token_id)
        for row, i in zip(out[:, enc["input_ids"].shape[1]:], idx):
            texts[i] = tokenizer.decode(row[: lengths[i]], skip_special_tokens=True)
    return time.perf_counter() - started, texts


def run_hf_continuous(model, tokenizer, prompts, lengths, budget: float) -> tuple[float, list[str], int, int]:
    """(seconds, texts, output tokens of the finished records, finished records); stops waiting after `budget` s."""
    from transformers import GenerationConfig

    config = GenerationConfig(do_sample=False, max_new_tokens=max(lengths), eos_token_id=tokenizer.eos_token_id,
                              pad_token_id=tokenizer.pad_token_id)
    manager = model.init_continuous_batching(generation_config=config)
    manager.start()
    texts, tokens = [""] * len(prompts), 0
    try:
        started = time.perf_counter()
        ids = {manager.add_request(p, request_id=f"r{i}", max_new_tokens=n): i
               for i, (p, n) in enumerate(zip(prompts, lengths))}
        left = len(ids)
        while left and time.perf_counter() - started < budget:
            result = manager.get_result(timeout=5)
            if result is not None and result.is_finished():
                texts[ids[result.request_id]] = tokenizer.decode(result.generated_tokens, skip_special_tokens=True)
                tokens += len(result.generated_tokens)
                left -= 1
        seconds = time.perf_counter() - started
    finally:
        manager.stop(block=False, hard_stop=True)
    return seconds, texts, tokens, len(ids) - left


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=256, help="the longest answer")
    parser.add_argument("--skip-hf-continuous", action="store_true")
    parser.add_argument("--hf-continuous-budget", type=float, default=600,
                        help="seconds to wait for transformers' continuous batching; then its rate so far is reported")
    parser.add_argument("--only-pacos", action="store_true", help="time the engine alone (while working on it)")
    parser.add_argument("--record", action="store_true", help="write the results to docs/benchmarks.md")
    args = parser.parse_args()

    import torch
    import transformers

    from pacos.models.loading import load_model
    from pacos.models.presets import init_model
    from pacos.prompting.special_tokens import ensure_pad_token

    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        init_model("small", Path(tmp) / "small", seed=0)
        model, tokenizer = load_model(Path(tmp) / "small")
    model.eval()
    ensure_pad_token(tokenizer)
    prompts, lengths = workload(tokenizer, args.records, args.max_new_tokens)
    tokens = sum(lengths)
    print(f"{len(prompts)} prompts ({statistics.mean(map(len, prompts)):.0f} tokens on average), answers of "
          f"{min(lengths)}-{max(lengths)} tokens (median {statistics.median(lengths):.0f}), {tokens} in all", flush=True)
    run_pacos(model, tokenizer, prompts[:4], [4] * 4, 4)  # warm-up

    rows = []  # (method, seconds, records done, output tokens, share of texts equal to pacos's)
    seconds, ours = run_pacos(model, tokenizer, prompts, lengths, args.batch_size)
    rows.append(("pacos engine (continuous batching, `pacos infer`)", seconds, len(prompts), tokens, 1.0))
    print(f"pacos: {seconds:.1f} s", flush=True)
    if args.only_pacos:
        return 0
    seconds, static = run_static(model, tokenizer, prompts, lengths, args.batch_size)
    rows.append(("transformers `generate`, static batches sorted by prompt length", seconds, len(prompts), tokens,
                 _same(ours, static)))
    print(f"static: {seconds:.1f} s", flush=True)
    if not args.skip_hf_continuous:
        seconds, cb, cb_tokens, done = run_hf_continuous(model, tokenizer, prompts, lengths,
                                                         args.hf_continuous_budget)
        name = "transformers continuous batching (`init_continuous_batching`, defaults)"
        if done < len(prompts):
            name += f": {done} of {len(prompts)} records in the {args.hf_continuous_budget:.0f} s budget"
        rows.append((name, seconds, done, cb_tokens, _same(ours, cb)))
        print(f"transformers continuous batching: {seconds:.1f} s, {done} records", flush=True)

    base = rows[1][3] / rows[1][1]
    table = ["| method | seconds | records/s | output tokens/s | vs static batches | same text as pacos |",
             "|---|---:|---:|---:|---:|---:|"]
    for name, secs, done, toks, same in rows:
        table.append(f"| {name} | {secs:.1f} | {done / secs:.2f} | {toks / secs:.0f} | "
                     f"{toks / secs / base:.2f}x | {same:.0%} |")
    if not args.skip_hf_continuous:
        table.append(f"\nThe two transformers methods give the same text for {_same(static, cb):.0%} of the records.")
    options = "".join(f" --{k.replace('_', '-')} {v}" for k, v in
                      (("records", args.records), ("batch_size", args.batch_size),
                       ("max_new_tokens", args.max_new_tokens)) if v != parser.get_default(k))
    markdown = (
        f"{SECTION}\n\n"
        f"Command: `python bench/infer.py{options} --record` · machine: {machine()}, torch {torch.__version__}, "
        f"transformers {transformers.__version__} · commit {commit()} · 1-minute load average at the start: {load:.1f}"
        f"\n\n`small` preset (random weights, fp32, CPU), {len(prompts)} real Alpaca prompts in the Alpaca template, "
        f"greedy, batch size {args.batch_size}; each answer ends after as many tokens as its real Alpaca answer has "
        f"words ({min(lengths)}-{max(lengths)}, median {statistics.median(lengths):.0f}, {tokens} tokens in all), "
        f"as an EOS would end it. Target: the engine >= 2x static batches. \"Same text\": the share of records whose "
        f"answer is identical to pacos's (greedy on a random model has near-ties that padding can tip).\n\n"
        + "\n".join(table) + "\n")
    publish(SECTION, markdown, args.record)
    return 0


def _same(a: list[str], b: list[str]) -> float:
    return sum(x == y for x, y in zip(a, b)) / len(a)


if __name__ == "__main__":
    sys.exit(main())
