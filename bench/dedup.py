"""Benchmark: the whole `pacos data dedup` process vs Alpaca's reference ROUGE-L loop, on real instructions.

The stream is the real instructions of ../shared/data (Alpaca 1k, Self-Instruct seeds, user-oriented tasks)
plus near-duplicates made by word swaps, drops and insertions, shuffled. The reference is rouge_score's
`_score_lcs` of each candidate against every kept record in one process (what Alpaca does, minus its process
pool). Outputs must be identical. Run from the repo root:

    python bench/dedup.py            # 3,000+ instructions; the reference takes a few minutes
    python bench/dedup.py --n 800    # quicker
    python bench/dedup.py --record   # also rewrite the section in docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchlib import REPO, commit, machine, record

DATA = REPO.parent / "shared" / "data"
SECTION = "## Self-Instruct ROUGE-L dedup"


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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=3000, help="instructions in the stream (default 3000)")
    parser.add_argument("--threshold", type=float, default=0.7)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3, help="pacos runs; the median is reported")
    parser.add_argument("--record", action="store_true", help="write the result to docs/benchmarks.md")
    args = parser.parse_args()

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
    print(markdown)
    if args.record:
        record(SECTION, markdown)
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
