"""Training on a GPU: `pacos train`'s model FLOPs utilisation (MFU) on a ~1B LLaMA, and a `--qlora` run.

    python bench/train_gpu.py              # on a CUDA machine: prints the table
    python bench/train_gpu.py --record     # also writes its section of docs/benchmarks.md

The issue's target: MFU >= 40% for a ~1B LLaMA config at length 512 with bf16, SDPA/flash attention and
packing (published: tuned FSDP 7B reaches 46% on H100). The model is TinyLlama-1.1B's shape (hidden 2048,
22 layers, 32 heads, 4 KV heads, MLP 5632, vocabulary 32,000) with random weights, built offline by
`pacos.models.presets` as the tests' models are, with pacos's tokenizer (the data uses its few hundred ids;
the 32,000-row lm_head costs what a real vocabulary costs). The records are random text trained by `pacos train` itself in a subprocess of its own, each
record cut to `--max-len` tokens, so every packed row holds `--batch-size` whole records of that length.

MFU = model FLOPs per second / the GPU's dense bf16 peak. Model FLOPs (bench/train_steps.py's count): 6 x the
linear weights per token plus causal attention, 6 L^2 d a layer a record, forward and backward, no
recomputation counted. Tokens/s is the median of the train log's per-step rates after `--warmup` steps.

`--qlora` adds a `pacos train --qlora` run (4-bit NF4 base, LoRA on all linear layers, paged AdamW), reported
by tokens/s and peak memory (its MFU would count the frozen base's backward that LoRA does not run).
Needs: CUDA, and pacos's training stack (datasets, peft; bitsandbytes for --qlora).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import string
import subprocess
import sys
import tempfile
from pathlib import Path

from benchlib import REPO, commit, publish
from train_steps import model_flops

from pacos.models.presets import Preset, init_model

SECTION = "## Training on a GPU (`bench/train_gpu.py`)"
TINYLLAMA = Preset(2048, 22, 32, 5632, 2048, num_key_value_heads=4, vocab_size=32000)
# Dense bf16 tensor-core peaks (NVIDIA's data sheets); the first name found in the device's name is used.
PEAK_BF16_TFLOPS = {"H200": 989, "H100 PCIe": 756, "H100": 989, "A100": 312, "L40S": 362, "L4": 121, "4090": 165}


def peak_tflops(device_name: str, override: float | None) -> float:
    if override:
        return override
    for key, tflops in PEAK_BF16_TFLOPS.items():
        if key in device_name:
            return tflops
    raise SystemExit(f"no dense bf16 peak known for {device_name!r}: pass --peak-tflops")


def write_records(path: Path, count: int, max_len: int) -> None:
    """Instruction records longer than `max_len` characters (the tokenizer's one token each): all cut to it."""
    rng = random.Random(0)
    letters = string.ascii_lowercase + " "
    with path.open("w") as f:
        for _ in range(count):
            f.write(json.dumps({"instruction": "".join(rng.choices(letters, k=64)),
                                "output": "".join(rng.choices(letters, k=2 * max_len))}) + "\n")


def run_train(model_dir: Path, data: Path, out: Path, args, *extra: str) -> dict:
    """One `pacos train` subprocess; its per-step tokens/s after the warm-up and its peak GPU memory."""
    probe = out.with_suffix(".peak")
    code = ("import sys, torch; from pacos.cli import main; rc = main(sys.argv[1:]); "
            f"open({str(probe)!r}, 'w').write(str(torch.cuda.max_memory_allocated())); sys.exit(rc)")
    command = [sys.executable, "-c", code, "train", "--model", str(model_dir), "--data", str(data),
               "--out", str(out), "--bf16", "on", "--max-steps", str(args.steps), "--batch-size",
               str(args.batch_size), "--grad-accum", "1", "--max-len", str(args.max_len), "--warmup-ratio", "0",
               "--save-every", str(10**6), "--no-progress", *extra]
    subprocess.run(command, cwd=REPO, check=True)
    rows = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    rates = [row["tokens_per_s"] for row in rows if "tokens_per_s" in row][args.warmup:]
    if not rates:
        raise SystemExit(f"{out}: no step after the {args.warmup} warm-up steps: raise --steps")
    return dict(tokens_per_s=statistics.median(rates), steps=len(rates), peak_gb=int(probe.read_text()) / 2**30)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5, help="first steps left out of the rate")
    parser.add_argument("--batch-size", type=int, default=16, help="records of --max-len tokens a step")
    parser.add_argument("--max-len", type=int, default=512)
    parser.add_argument("--peak-tflops", type=float, help="the GPU's dense bf16 peak (default: from its name)")
    parser.add_argument("--qlora", action="store_true", help="also run pacos train --qlora")
    parser.add_argument("--record", action="store_true", help="write the results to docs/benchmarks.md")
    args = parser.parse_args()

    import torch
    import transformers
    from transformers import AutoConfig

    if not torch.cuda.is_available():
        raise SystemExit("bench/train_gpu.py measures a GPU: no CUDA device here")
    name = torch.cuda.get_device_name()
    peak = peak_tflops(name, args.peak_tflops) * 1e12
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        params = init_model(TINYLLAMA, tmp / "model")
        flops_per_token = model_flops(AutoConfig.from_pretrained(tmp / "model"), [args.max_len]) / args.max_len
        write_records(tmp / "records.jsonl", args.steps * args.batch_size, args.max_len)
        runs = [("pacos train --bf16 on (full fine-tuning, packing)", ())]
        if args.qlora:
            runs.append(("pacos train --qlora --lora-target all-linear", ("--qlora", "--lora-target", "all-linear")))
        for k, (label, extra) in enumerate(runs):
            out = run_train(tmp / "model", tmp / "records.jsonl", tmp / f"run{k}", args, *extra)
            mfu = out["tokens_per_s"] * flops_per_token / peak if not extra else None
            rows.append((label, out, mfu))
            print(f"{label}: {out['tokens_per_s']:,.0f} tokens/s, peak {out['peak_gb']:.1f} GB"
                  + (f", MFU {mfu:.1%}" if mfu is not None else ""), flush=True)

    options = "".join(f" --{k.replace('_', '-')} {getattr(args, k)}" for k in
                      ("steps", "warmup", "batch_size", "max_len", "peak_tflops")
                      if getattr(args, k) != parser.get_default(k)) + (" --qlora" if args.qlora else "")
    markdown = (
        f"{SECTION}\n\n"
        f"Command: `python bench/train_gpu.py{options} --record` · GPU: {name} (dense bf16 peak "
        f"{peak / 1e12:.0f} TFLOP/s) · torch {torch.__version__}, transformers {transformers.__version__} · "
        f"commit {commit()}\n\n"
        f"TinyLlama-1.1B's shape ({params / 1e9:.2f}B parameters, random weights), {args.batch_size} records of "
        f"{args.max_len} tokens a step, {args.steps} steps, tokens/s the median after {args.warmup}; "
        f"{flops_per_token / 1e9:.2f} GFLOP a token (forward and backward). Target: MFU >= 40%.\n\n"
        "| run | tokens/s | peak GPU memory | MFU |\n|---|---:|---:|---:|\n"
        + "".join(f"| {label} | {out['tokens_per_s']:,.0f} | {out['peak_gb']:.1f} GB | "
                  f"{'—' if mfu is None else f'{mfu:.1%}'} |\n" for label, out, mfu in rows))
    publish(SECTION, markdown, args.record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
