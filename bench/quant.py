"""What GGUF quantization costs and what llama.cpp gains: quality, size and speed per type, in one run.

    python bench/quant.py                # prints the tables
    python bench/quant.py --record       # also writes the "GGUF quantization" section of docs/benchmarks.md

One run, one model:
- model: the `small` preset (25.7M parameters) fine-tuned by `pacos train` on 800 of the 1,000 real Alpaca
  records in ../shared/data (Alpaca template, full weights, `--train-steps` steps; kept in `--work` and reused);
- files: `pacos export` to f32, f16, q8_0, q6_k, q4_k_m and q4_0 (each one verified by the export itself);
- quality: `pacos perplexity FILE --data heldout.json --responses --reference f32.gguf --json` on the 200
  held-out records (only the answers' tokens, as training scores them): perplexity, its change against f32,
  the KL divergence from f32 and top-1 agreement with it (as llama.cpp's perplexity tool reports them);
- speed, batch 1, greedy, `--threads` threads (default: physical cores): prompt tokens/s (a 256-token prompt
  prefilled) and decode tokens/s (128 tokens, EOS ignored) through pacos's engine (`load_engine` on the file,
  with events to a callback on the engine's thread, as `pacos infer|serve` take them, and read with
  `Stream.events()` from another thread, as `pacos ask|chat` do; in a process of its own), through raw llama-cpp-python on the same file (`Llama.eval` and
  `Llama.generate`, in a process of its own that never imports pacos; with the context pacos's engine makes for
  one sequence, 2048 cells, and with a minimal one, prompt + answer), and transformers `generate` in fp32 on the HF model directory (the baseline); pacos's engine is
  timed by whole generations (a 1-token one for the prompt, then (N - 1) / (T(N) - T(1)) for decode, N = `--new-tokens`, best of
  three, as raw llama-cpp-python is), since a token that decodes to no text (EOS, and what follows it with EOS ignored) sends no event;
  `--rounds` rounds (default 5) alternate pacos and raw, each a fresh process, and each keeps its best over the
  rounds (the median and range of the per-round pacos/raw ratio are shown too): this VM's speed moves by up to
  2x within a minute, for both alike;
- serving: `pacos serve f32.gguf`/`q4_k_m.gguf` with 1 and 4 concurrent streaming clients (bench/serve.py's
  load generator; 12 requests of `--new-tokens` for the one client, 3 for each of the four, the same tokens):
  aggregate output tokens/s, the two loads alternated `--rounds` times on one server, the best of each.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchlib import REPO, commit, machine, record

OMP_POLICY_GIVEN = "OMP_WAIT_POLICY" in os.environ
import pacos  # noqa: F401  (before torch: OpenMP threads sleep between passes, as in the `pacos` command)

SECTION = "## GGUF quantization (`pacos export`, llama.cpp backend)"
ALPACA = REPO.parent / "shared" / "data" / "alpaca_en_1k.json"
TYPES = ("f32", "f16", "q8_0", "q6_k", "q4_k_m", "q4_0")
TARGETS = {"q8_0": 0.5, "q4_k_m": 5.0, "q4_0": 10.0}  # perplexity change vs f32 allowed, percent


def pacos_cli(*args, capture: bool = True) -> str:
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-m", "pacos.cli", *map(str, args)], env=env, text=True,
                          capture_output=capture, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"pacos {' '.join(map(str, args))} failed:\n{proc.stderr}")
    return proc.stdout


def prepare(work: Path, steps: int) -> tuple[Path, Path]:
    """The trained model and the held-out records (built once, reused)."""
    if not ALPACA.is_file():
        raise SystemExit(f"{ALPACA} is missing: this benchmark needs the real Alpaca records in ../shared/data")
    work.mkdir(parents=True, exist_ok=True)
    rows = json.loads(ALPACA.read_text())
    train, heldout = work / "train.json", work / "heldout.json"
    train.write_text(json.dumps(rows[:800]))
    heldout.write_text(json.dumps(rows[800:]))
    model = work / f"small-alpaca-{steps}"
    if not (model / "pacos_train.json").is_file():
        base = work / "small"
        if not base.is_dir():
            pacos_cli("model", "init", "--preset", "small", "--out", base)
        print(f"training small on 800 Alpaca records for {steps} steps", flush=True)
        pacos_cli("train", "--model", base, "--data", train, "--out", model, "--max-steps", steps, "--lr", "1e-3",
                  "--batch-size", "8", "--grad-accum", "1", "--max-len", "256", "--warmup-ratio", "0.05",
                  "--save-every", str(steps), "--no-progress", capture=False)
    return model, heldout


def export_all(model: Path, work: Path) -> dict[str, Path]:
    files = {}
    for quant in TYPES:
        out = work / f"{model.name}-{quant}.gguf"
        if not out.is_file():
            pacos_cli("export", model, "--out", out, "--quant", quant)
        files[quant] = out
    return files


def quality(files: dict[str, Path], heldout: Path, cache: Path) -> dict[str, dict]:
    """`pacos perplexity` per file; results are kept in `cache` by file name, size and mtime, so a rerun on the
    same files (e.g. after a failure in a later stage) reuses them."""
    known = json.loads(cache.read_text()) if cache.is_file() else {}
    out = {}
    for quant, path in files.items():
        key = f"{path.name}:{path.stat().st_size}:{path.stat().st_mtime_ns}"
        if key in known:
            out[quant] = known[key]
            continue
        args = ["perplexity", path, "--data", heldout, "--responses", "--json"]
        if quant != "f32":
            args += ["--reference", files["f32"]]
        out[quant] = known[key] = json.loads(pacos_cli(*args))
        cache.write_text(json.dumps(known))
        print(f"{quant}: perplexity {out[quant]['perplexity']:.4f}", flush=True)
    return out


def speed_prompt(tokenizer, n: int) -> list[int]:
    text = " ".join(json.loads(ALPACA.read_text())[i]["output"] for i in range(40))
    return tokenizer(text)["input_ids"][:n]


def pacos_speed(path: Path, prompt: list[int], new: int, threads: int) -> tuple[float, float, float]:
    """(prompt tokens/s, decode tokens/s with events to a callback, decode tokens/s read with `events()`)
    through pacos's engine on a GGUF file, batch 1: `decode_speed` (whole generations, (new - 1) /
    (T(new) - T(1)), the best of three each), with events as `pacos infer|serve` take them and as `ask|chat`
    read them."""
    from pacos.infer.llamacpp_engine import decode_speed

    sink, events = (decode_speed(path, ids=prompt, new_tokens=new, threads=threads, repeats=3, via_events=v)
                    for v in (False, True))
    return sink["prompt_tokens_per_s"], sink["tokens_per_s"], events["tokens_per_s"]


def pacos_speed_alone(path: Path, prompt: list[int], new: int, threads: int) -> tuple[float, float, float]:
    """`pacos_speed` in a process of its own (as raw llama-cpp-python is measured): nothing else this benchmark
    loaded (the HF model, torch's threads from its run) shares the cores with llama.cpp's thread pool."""
    code = ("import json, sys; sys.path.insert(0, sys.argv[1]); import quant; "
            "print(json.dumps(quant.pacos_speed(quant.Path(sys.argv[2]), json.loads(sys.stdin.read()), "
            "int(sys.argv[3]), int(sys.argv[4]))))")
    proc = subprocess.run([sys.executable, "-c", code, str(REPO / "bench"), str(path), str(new), str(threads)],
                          input=json.dumps(prompt), capture_output=True, text=True, check=True)
    return tuple(json.loads(proc.stdout.strip().splitlines()[-1]))


RAW = """
import json, sys, time
import llama_cpp
path, new, threads, n_ctx = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
prompt = json.loads(sys.stdin.read())
llm = llama_cpp.Llama(model_path=path, n_ctx=n_ctx or len(prompt) + new + 8, n_threads=threads, n_threads_batch=threads,
                      n_batch=512, verbose=False)
llm.eval(prompt[:16])  # warm-up
llm.reset()
prefills, decodes = [], []
for _ in range(3):  # best of three, as pacos's engine is timed
    start = time.perf_counter()
    llm.eval(prompt)
    prefills.append(time.perf_counter() - start)
    llm.reset()
    tokens, first = 0, None
    for _ in llm.generate(prompt, top_k=1, top_p=1.0, temp=0.0, repeat_penalty=1.0, reset=True):
        tokens += 1
        if first is None:
            first = time.perf_counter()
        if tokens == new:
            break
    decodes.append((tokens - 1) / (time.perf_counter() - first))
    llm.reset()
print(json.dumps([len(prompt) / min(prefills), max(decodes)]))
"""


def raw_speed(path: Path, prompt: list[int], new: int, threads: int, n_ctx: int = 0) -> tuple[float, float]:
    """(prompt tokens/s, decode tokens/s) with llama-cpp-python alone on the same file: in a process of its own
    that never imports pacos (so with llama-cpp-python's own defaults, e.g. OpenMP's wait policy). `n_ctx`: the
    context's cells (0: just the prompt and the answer)."""
    env = dict(os.environ)
    if env.get("OMP_WAIT_POLICY") == "PASSIVE" and not OMP_POLICY_GIVEN:
        del env["OMP_WAIT_POLICY"]  # set by `import pacos` above, not by the user
    proc = subprocess.run([sys.executable, "-c", RAW, str(path), str(new), str(threads), str(n_ctx)], input=json.dumps(prompt),
                          capture_output=True, text=True, env=env, check=True)
    prompt_rate, decode_rate = json.loads(proc.stdout)
    return prompt_rate, decode_rate


def hf_speed(model_dir: Path, prompt: list[int], new: int) -> tuple[float, float]:
    """(prompt tokens/s, decode tokens/s) with transformers `generate`, fp32, batch 1."""
    import torch

    from pacos.models.loading import load_model

    model, _ = load_model(model_dir, dtype=torch.float32)
    ids = torch.tensor([prompt])
    with torch.inference_mode():
        model(input_ids=ids[:, :16])  # warm-up
        start = time.perf_counter()
        model(input_ids=ids)
        prefill = time.perf_counter() - start
        start = time.perf_counter()
        model.generate(ids, max_new_tokens=new, min_new_tokens=new, do_sample=False, pad_token_id=0)
        total = time.perf_counter() - start
    return len(prompt) / prefill, (new - 1) / max(1e-9, total - prefill)


def serve_speed(path: Path, port: int, max_tokens: int, requests: int, rounds: int = 1) -> tuple[float, float]:
    """Aggregate output tokens/s of `pacos serve FILE.gguf` with 1 and with 4 concurrent clients: one server,
    the two loads alternated `rounds` times, the best of each. Both loads ask for the same tokens (one client
    sends 4 x `requests` requests, each of four clients `requests`), so neither is a shorter, luckier sample."""
    sys.path.insert(0, str(REPO / "bench"))
    from serve import run_level, start_server

    proc = start_server(path, port, 4)
    url = f"http://127.0.0.1:{port}"
    ones, fours = [], []
    try:
        asyncio.run(run_level(url, 1, 1, 8))  # warm-up
        for _ in range(rounds):
            ones.append(asyncio.run(run_level(url, 1, 4 * requests, max_tokens))["tokens_per_s"])
            fours.append(asyncio.run(run_level(url, 4, requests, max_tokens))["tokens_per_s"])
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    return max(ones), max(fours)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", default=str(REPO / "bench" / ".work" / "quant"), help="models and files (reused)")
    p.add_argument("--train-steps", type=int, default=400)
    p.add_argument("--prompt-tokens", type=int, default=256)
    p.add_argument("--new-tokens", type=int, default=128)
    p.add_argument("--threads", type=int, default=None, help="default: physical cores")
    p.add_argument("--rounds", type=int, default=5, help="alternated speed rounds (best of each kept)")
    p.add_argument("--port", type=int, default=8631)
    p.add_argument("--record", action="store_true", help="write the results to docs/benchmarks.md")
    args = p.parse_args()
    from pacos.models.gguf_file import load_gguf_tokenizer, physical_cores

    threads = args.threads or physical_cores()
    load = os.getloadavg()[0]
    work = Path(args.work)
    model, heldout = prepare(work, args.train_steps)
    files = export_all(model, work)
    ppl = quality(files, heldout, work / "perplexity.json")
    prompt = speed_prompt(load_gguf_tokenizer(files["f32"]), args.prompt_tokens)
    hf_prompt, hf_decode = hf_speed(model, prompt, args.new_tokens)
    print(f"transformers fp32: prompt {hf_prompt:.0f} tok/s, decode {hf_decode:.1f} tok/s", flush=True)
    rows = []
    for quant, path in files.items():
        # `--rounds` alternations (see the docstring); raw at the context pacos's engine makes for one sequence
        # (2048 cells), and at a minimal one.
        runs = [(pacos_speed_alone(path, prompt, args.new_tokens, threads),
                 raw_speed(path, prompt, args.new_tokens, threads, n_ctx=2048),
                 raw_speed(path, prompt, args.new_tokens, threads)) for _ in range(args.rounds)]
        ours = [max(r[0][i] for r in runs) for i in range(3)]
        raw = [max(r[1][i] for r in runs) for i in range(2)]
        ratios = sorted(r[0][1] / r[1][1] for r in runs)  # pacos / raw decode, per round
        rows.append({"quant": quant, "mib": path.stat().st_size / 2**20, **ppl[quant], "pacos_prompt": ours[0],
                     "pacos_decode": ours[1], "pacos_events": ours[2], "raw_prompt": raw[0], "raw_decode": raw[1],
                     "raw_small_decode": max(r[2][1] for r in runs), "round_ratio": statistics.median(ratios),
                     "round_ratios": (ratios[0], ratios[-1])})
        print(f"{quant}: pacos decode {ours[1]:.1f} tok/s ({ours[2]:.1f} via events()), raw llama-cpp-python "
              f"{raw[1]:.1f}; per round pacos/raw {', '.join(f'{r:.2f}' for r in ratios)}", flush=True)
    serving = {quant: serve_speed(files[quant], args.port, args.new_tokens, 3, args.rounds) for quant in ("f32", "q4_k_m")}
    text = tables(rows, hf_prompt, hf_decode, serving)
    print(text)
    if args.record:
        import llama_cpp
        import torch

        record(SECTION, f"{SECTION}\n\nCommand: `python bench/quant.py --record` · machine: {machine()}, torch "
                        f"{torch.__version__}, llama-cpp-python {llama_cpp.__version__}, {threads} threads · commit "
                        f"{commit()} · 1-minute load average at the start: {load:.1f}\n\n"
                        f"{__doc__.split('One run, one model:', 1)[1].strip()}\n\n{text}\n")
    return 0


def tables(rows, hf_prompt, hf_decode, serving) -> str:
    base = next(r for r in rows if r["quant"] == "f32")
    lines = [("| type | size (MiB) | perplexity | vs f32 | target | KL vs f32 | top-1 vs f32 | prompt tok/s pacos / "
             "raw | decode tok/s pacos / raw | pacos vs raw | pacos vs raw, per round: median (range) | pacos vs transformers fp32 | decode via `events()` "
              "(ask, chat) | raw with a minimal context (prompt + answer) |"),
             "|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        delta = 100 * (r["perplexity"] / base["perplexity"] - 1)
        target = f"<= {TARGETS[r['quant']]}%: {'met' if delta <= TARGETS[r['quant']] else 'MISSED'}" \
            if r["quant"] in TARGETS else ""
        kl = f"{r['kl_divergence']:.5f}" if r.get("kl_divergence") is not None else "-"
        top1 = f"{r['top1_agreement']:.4f}" if r.get("top1_agreement") is not None else "-"
        lines.append(f"| {r['quant']} | {r['mib']:.1f} | {r['perplexity']:.4f} | {delta:+.2f}% | {target} | {kl} | "
                     f"{top1} | {r['pacos_prompt']:.0f} / {r['raw_prompt']:.0f} | {r['pacos_decode']:.1f} / "
                     f"{r['raw_decode']:.1f} | {r['pacos_decode'] / r['raw_decode']:.2f}x | {r['round_ratio']:.2f}x "
                     f"({r['round_ratios'][0]:.2f}-{r['round_ratios'][1]:.2f}) | "
                     f"{r['pacos_decode'] / hf_decode:.1f}x | {r['pacos_events']:.1f} ({r['pacos_events'] / r['raw_decode']:.2f}x raw) | "
                     f"{r['raw_small_decode']:.1f} (pacos {r['pacos_decode'] / r['raw_small_decode']:.2f}x) |")
    lines += ["", (f"transformers `generate`, fp32, on the HF model directory: prompt {hf_prompt:.0f} tokens/s, decode "
                  f"{hf_decode:.1f} tokens/s (batch 1, greedy)."), "",
              "| `pacos serve FILE.gguf` | 1 client tokens/s | 4 clients tokens/s | 4 vs 1 |", "|---|---:|---:|---:|"]
    for quant, (one, four) in serving.items():
        lines.append(f"| {quant} | {one:.1f} | {four:.1f} | {four / one:.2f}x |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
