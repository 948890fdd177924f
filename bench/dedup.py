"""Benchmark: the whole `pacos data dedup` process vs Alpaca's reference ROUGE-L loop, on real instructions.

The stream is the real instructions of ../shared/data (Alpaca 1k, Self-Instruct seeds, user-oriented tasks)
plus near-duplicates made by word swaps, drops and insertions, shuffled. The reference is rouge_score's
`_score_lcs` of each candidate against every kept record in one process (what Alpaca does, minus its process
pool). Outputs must be identical. Run from the repo root:

    python bench/dedup.py            # 3,000+ instructions; the reference takes a few minutes
    python bench/dedup.py --n 800    # quicker
    python bench/dedup.py --record   # also rewrite the section in docs/benchmarks.md

The scale run times `pacos data dedup` (indexed, and all-pairs up to --all-pairs-up-to) on streams of real
instructions, their near-duplicates and recombinations of real words, one process per run (peak RSS):

    python bench/dedup.py --scale 50000,200000,1000000 --record
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchlib import REPO, commit, machine, publish, record

DATA = REPO.parent / "shared" / "data"
SECTION = "## Self-Instruct ROUGE-L dedup"
SCALE_SECTION = "## ROUGE-L dedup at scale"


def real_instructions() -> list[str]:
    texts = [r["instruction"] for r in json.loads((DATA / "alpaca_en_1k.json").read_text())]
    for name in ("seed_tasks.jsonl", "user_oriented_instructions.jsonl"):
        texts += [json.loads(line)["instruction"] for line in (DATA / name).read_text().splitlines() if line.strip()]
    return texts


def near_duplicate(text: str, rng: random.Random, vocabulary: list[str]) -> str:
    """One to three word-level edits: the kind of paraphrase a teacher model repeats."""
    words = text.split()
    for _ in range(rng.randint(1, 3)):
        op = rng.randrange(3)
        if op == 0 and len(words) > 2:
            del words[rng.randrange(len(words))]
        elif op == 1:
            words.insert(rng.randrange(len(words) + 1), rng.choice(vocabulary))
        elif len(words) > 1:
            i = rng.randrange(len(words) - 1)
            words[i], words[i + 1] = words[i + 1], words[i]
    return " ".join(words)


def make_stream(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    real = real_instructions()
    vocabulary = sorted({w for t in real for w in t.split()})
    real = rng.sample(real, min(len(real), n // 2))  # about half real, half near-duplicates of them
    stream = list(real)
    while len(stream) < n:
        stream.append(near_duplicate(rng.choice(real), rng, vocabulary))
    rng.shuffle(stream)
    return stream[:n]


def recombination(rng: random.Random, real: list[list[str]], words: list[str]) -> str:
    """The start of one real instruction and the end of another, with a third of the words replaced by real
    words drawn at their frequency: reads like an instruction, and mostly distinct."""
    a, b = rng.choice(real), rng.choice(real)
    out = a[: rng.randint(1, max(1, len(a) - 1))] + b[rng.randint(0, len(b) - 1):]
    return " ".join(rng.choice(words) if rng.random() < 0.33 else w for w in out)


def make_scale_stream(n: int, seed: int) -> list[str]:
    """n instructions: 5% real ones, 25% word-edit near-duplicates of earlier records, 70% recombinations."""
    rng = random.Random(seed)
    real_texts = real_instructions()
    real = [t.split() for t in real_texts]
    words = [w for t in real for w in t]  # with repeats: drawn at their real frequency
    vocabulary = sorted(set(words))
    stream: list[str] = []
    for _ in range(n):
        r = rng.random()
        if r < 0.05 or not stream:
            stream.append(rng.choice(real_texts))
        elif r < 0.30:
            stream.append(near_duplicate(rng.choice(stream), rng, vocabulary))
        else:
            stream.append(recombination(rng, real, words))
    return stream


def reference_dedup(texts: list[str], threshold: float) -> list[str]:
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    kept, kept_tokens = [], []
    for text in texts:
        tokens = scorer._tokenizer.tokenize(text)
        if not any(rouge_scorer._score_lcs(tokens, other).fmeasure > threshold for other in kept_tokens):
            kept.append(text)
            kept_tokens.append(tokens)
    return kept


def run_pacos(src: Path, dst: Path, threshold: float) -> float:
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "pacos.cli", "data", "dedup", str(src), str(dst), "--threshold", str(threshold)],
        check=True, stdout=subprocess.DEVNULL,
    )
    return time.perf_counter() - started


def timed_dedup(src: Path, dst: Path, threshold: float, method: str) -> tuple[float, float, str]:
    """(seconds, peak RSS in MiB, pacos's summary line) of one `pacos data dedup` process."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "pacos.cli", "data", "dedup", str(src), str(dst), "--threshold", str(threshold),
         "--method", method, "--no-progress"], stdout=subprocess.PIPE, text=True,
    )
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"pacos data dedup --method {method} failed with exit {proc.returncode}")
    return time.perf_counter() - started, usage.ru_maxrss / 1024, out.strip()


def scale_run(args) -> int:
    sizes = [int(n) for n in args.scale.split(",")]
    rows, all_identical = [], True
    header = ("| records | method | kept | seconds | records/s | peak RSS (MiB) | load avg (1 min, at start) | "
              "same kept records as all-pairs |\n|---:|---|---:|---:|---:|---:|---:|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            src = Path(tmp) / f"stream_{n}.jsonl"
            with src.open("w") as f:
                for text in make_scale_stream(n, args.seed):
                    f.write(json.dumps({"instruction": text, "input": "", "output": ""}) + "\n")
            outputs = {}
            for method in ["indexed"] + (["all-pairs"] if n <= args.all_pairs_up_to else []):
                load = os.getloadavg()[0]
                dst = Path(tmp) / f"kept_{n}_{method}.jsonl"
                seconds, rss, summary = timed_dedup(src, dst, args.threshold, method)
                outputs[method] = dst.read_bytes()
                kept = outputs[method].count(b"\n")
                print(f"{n} {method}: {seconds:.1f} s, {rss:.0f} MiB, load {load:.1f}: {summary}", flush=True)
                rows.append([n, method, kept, seconds, rss, load])
            same = "—"
            if "all-pairs" in outputs:
                identical = outputs["all-pairs"] == outputs["indexed"]
                all_identical &= identical
                same = "**yes**" if identical else "**NO**"
            for row in rows:
                if row[0] == n and len(row) == 6:
                    row.append(same)
            src.unlink()
            if args.record:
                record(SCALE_SECTION, scale_markdown(args, rows, header))
    print(scale_markdown(args, rows, header))
    return 0 if all_identical else 1


def scale_markdown(args, rows, header) -> str:
    table = "\n".join(
        f"| {n:,} | {method} | {kept:,} | {seconds:.1f} | {n / seconds:,.0f} | {rss:,.0f} | {load:.1f} | {same} |"
        for n, method, kept, seconds, rss, load, same in rows
    )
    command = f"python bench/dedup.py --scale {args.scale} --record"
    return (
        f"{SCALE_SECTION}\n\n"
        f"Command: `{command}` · machine: {machine()} · commit {commit()}\n\n"
        f"Stream (`make_scale_stream`, seed {args.seed}): 5% real instructions (Alpaca 1k, Self-Instruct seeds, "
        f"user-oriented), 25% word-edit near-duplicates of earlier records, 70% recombinations (the start of one "
        f"real instruction, the end of another, a third of the words replaced by real words at their frequency); "
        f"threshold {args.threshold:g}, rouge tokens. Each row is one `pacos data dedup` process (reading, "
        f"deduplicating, writing); peak RSS of that process. All-pairs runs up to {args.all_pairs_up_to:,} "
        f"records.\n\n{header}\n{table}\n"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=3000, help="instructions in the stream (default 3000)")
    parser.add_argument("--threshold", type=float, default=0.7)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3, help="pacos runs; the median is reported")
    parser.add_argument("--record", action="store_true", help="write the result to docs/benchmarks.md")
    parser.add_argument("--scale", help="comma-separated stream sizes: the scale run instead (e.g. 50000,200000)")
    parser.add_argument("--all-pairs-up-to", type=int, default=50_000,
                        help="in the scale run, also run --method all-pairs up to this size and compare (default 50000)")
    args = parser.parse_args()
    if args.scale:
        return scale_run(args)

    stream = make_stream(args.n, args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "stream.jsonl", Path(tmp) / "kept.jsonl"
        src.write_text("".join(json.dumps({"instruction": t, "input": "", "output": ""}) + "\n" for t in stream))
        pacos_times = sorted(run_pacos(src, dst, args.threshold) for _ in range(args.repeats))
        pacos_kept = [json.loads(line)["instruction"] for line in dst.read_text().splitlines()]
    started = time.perf_counter()
    ref_kept = reference_dedup(stream, args.threshold)
    ref_seconds = time.perf_counter() - started

    identical = pacos_kept == ref_kept
    pacos_seconds = pacos_times[len(pacos_times) // 2]
    speedup = ref_seconds / pacos_seconds
    command = "python bench/dedup.py" + (f" --n {args.n}" if args.n != 3000 else "") + " --record"
    table = "\n".join([
        "| implementation | instructions | kept | seconds | speed-up |",
        "|---|---:|---:|---:|---:|",
        f"| reference: rouge_score `_score_lcs` loop, 1 process | {len(stream)} | {len(ref_kept)} | {ref_seconds:.1f} | 1x |",
        f"| `pacos data dedup` (whole process, median of {args.repeats}) | {len(stream)} | {len(pacos_kept)} | "
        f"{pacos_seconds:.2f} | {speedup:.0f}x |",
    ])
    markdown = (
        f"{SECTION}\n\n"
        f"Command: `{command}` · machine: {machine()} · commit {commit()}\n\n"
        f"Stream: real instructions (Alpaca 1k, Self-Instruct seeds, user-oriented) plus word-edit "
        f"near-duplicates, threshold {args.threshold:g}. Identical kept records: **{'yes' if identical else 'NO'}**.\n\n"
        f"{table}\n"
    )
    publish(SECTION, markdown, args.record)
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
