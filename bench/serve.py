"""Serving throughput: aggregate output tokens/s of `pacos serve` for 1, 4 and 16 concurrent streaming clients.

    python bench/serve.py                 # prints the table
    python bench/serve.py --record        # also writes the "Serving throughput" section of docs/benchmarks.md

Builds the `small` preset offline, starts `pacos serve` on loopback (CPU), and runs each concurrency level:
every client sends `--requests` streaming chat requests one after another. Output tokens come from the
servers' own `usage`; latency is per request (time to the first token, and to the last).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from benchlib import commit, machine
from benchlib import record as benchlib_record

SECTION = "## Serving throughput"


async def one_request(http: httpx.AsyncClient, prompt: str, max_tokens: int, seed: int) -> tuple[int, float, float]:
    body = {"model": "bench", "messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens,
            "temperature": 0.8, "seed": seed, "stream": True, "ignore_eos": True,
            "stream_options": {"include_usage": True}}
    start, first, tokens = time.perf_counter(), None, 0
    async with http.stream("POST", "/v1/chat/completions", json=body) as r:
        r.raise_for_status()
        async for line in r.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if first is None and any(c["delta"].get("content") for c in chunk["choices"]):
                first = time.perf_counter()
            if chunk.get("usage"):
                tokens = chunk["usage"]["completion_tokens"]
    end = time.perf_counter()
    return tokens, (first or end) - start, end - start


async def run_level(url: str, clients: int, requests: int, max_tokens: int) -> dict:
    results = []

    async def client(c: int):
        for i in range(requests):
            results.append(await one_request(http, f"Tell story number {c * 100 + i} about a cat.", max_tokens,
                                             seed=c * 100 + i))

    async with httpx.AsyncClient(base_url=url, timeout=600, limits=httpx.Limits(max_connections=clients + 2)) as http:
        start = time.perf_counter()
        await asyncio.gather(*(client(c) for c in range(clients)))
        wall = time.perf_counter() - start
    tokens = sum(t for t, _, _ in results)
    latency = sorted(total for _, _, total in results)
    ttft = sorted(first for _, first, _ in results)
    return {"clients": clients, "requests": len(results), "tokens": tokens, "seconds": wall,
            "tokens_per_s": tokens / wall, "p50": _pct(latency, 50), "p95": _pct(latency, 95),
            "ttft_p50": _pct(ttft, 50), "ttft_p95": _pct(ttft, 95)}


def _pct(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


def start_server(model: Path, port: int, max_batch: int) -> subprocess.Popen:
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "pacos.cli", "serve", str(model), "--port", str(port),
                             "--served-name", "bench", "--no-feedback", "--max-batch", str(max_batch)], env=env)
    for _ in range(600):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("pacos serve did not start")


def table(rows: list[dict]) -> str:
    base = rows[0]["tokens_per_s"]
    header = ("| clients | requests | output tokens | seconds | tokens/s | vs 1 client | latency p50 / p95 (s) "
              "| first token p50 / p95 (s) |")
    lines = [header, "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['clients']} | {r['requests']} | {r['tokens']} | {r['seconds']:.1f} | "
                     f"{r['tokens_per_s']:.1f} | {r['tokens_per_s'] / base:.1f}x | {r['p50']:.2f} / {r['p95']:.2f} "
                     f"| {r['ttft_p50']:.2f} / {r['ttft_p95']:.2f} |")
    return "\n".join(lines)


def record(text: str, args, load: float) -> None:
    import torch

    section = (f"{SECTION}\n\nCommand: `python bench/serve.py --record` · machine: {machine()}, torch {torch.__version__} "
               f"· commit {commit()}\n\n`small` preset on CPU, `pacos serve` (transformers backend, continuous batching, "
               f"--max-batch {args.max_batch}); each client sends {args.requests} streaming chat requests one after "
               f"another, max_tokens {args.max_tokens} (ignore_eos, so every request generates them all), temperature 0.8. Tokens/s is aggregate output tokens over "
               f"wall time; latency is per request. 1-minute load average when the run began: {load:.1f} (the machine "
               f"is shared; other jobs make absolute figures vary, the batching ratio less so).\n\n{text}\n")
    benchlib_record(SECTION, section)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clients", default="1,4,16")
    p.add_argument("--requests", type=int, default=4, help="sequential requests per client")
    p.add_argument("--max-tokens", type=int, default=128)
    p.add_argument("--max-batch", type=int, default=16)
    p.add_argument("--port", type=int, default=8611)
    p.add_argument("--record", action="store_true", help="write the results to docs/benchmarks.md")
    args = p.parse_args()
    from pacos.models.presets import init_model

    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(tmp) / "small"
        init_model("small", model, seed=0)
        proc = start_server(model, args.port, args.max_batch)
        url = f"http://127.0.0.1:{args.port}"
        try:
            asyncio.run(run_level(url, 1, 1, 8))  # warm-up
            rows = []
            for n in (int(c) for c in args.clients.split(",")):
                rows.append(asyncio.run(run_level(url, n, args.requests, args.max_tokens)))
                print(f"{n} clients: {rows[-1]['tokens_per_s']:.1f} tokens/s", flush=True)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    text = table(rows)
    print(text)
    if args.record:
        record(text, args, load)


if __name__ == "__main__":
    main()
