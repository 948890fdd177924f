"""`pacos demo`: the whole loop offline in minutes — build a model, make data, measure, fine-tune, measure again."""

from __future__ import annotations

import json
import shlex
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from pacos.data.synth import TASKS
from pacos.models.presets import PRESET_NAMES
from pacos.options import add_options, check_fields, from_args, option

DEMO_TASKS = ("uppercase", "reverse_word", "first_letters", "remove_vowels", "sort_letters", "last_letters",
              "max_number", "sort_numbers")


@dataclass
class DemoConfig:
    out: str = option("pacos-demo", "output directory", nonempty=True, path=True)
    preset: str = option("nano", "model preset to build", choices=PRESET_NAMES)
    # Tasks a two-layer model learns together in minutes on 2 cores (measured; see docs/demo.md). The whole
    # family is in `pacos data synth`; the arithmetic and ordering tasks need far more steps.
    tasks: tuple[str, ...] = option(DEMO_TASKS, "comma-separated synth tasks", choices=tuple(TASKS), nonempty=True)
    n_train: int = option(96000, "training records (one pass: 6000 steps of 16)", ge=1)
    n_test: int = option(240, "held-out test records", ge=1)
    epochs: float = option(1.0, "passes over the training records", gt=0)
    lr: float = option(1e-3, "learning rate", gt=0)  # 2e-3 and above never formed the copying circuit in our runs
    batch_size: int = option(16, "batch size", ge=1)
    max_len: int = option(128, "tokens per record", ge=1)
    warmup_ratio: float = option(0.01, "warmup: a fraction (<1) of the steps, or a step count", ge=0)
    seed: int = option(0, "seed of the model init, the data and training", ge=0, le=2**32 - 1)

    def __post_init__(self) -> None:
        check_fields(self)


QUICK = {"n_train": 800, "n_test": 40}  # for tests: the same flow, small enough for seconds


def run_demo(config: DemoConfig, log=print) -> dict:
    from pacos.data.formats import save_records
    from pacos.data.synth import synth_records
    from pacos.eval.accuracy import evaluate_tasks
    from pacos.eval.tasks import format_scores
    from pacos.models.presets import init_model
    from pacos.train.config import TrainConfig
    from pacos.train.loop import train

    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    base, model = out / "base", out / "model"
    n_params = init_model(config.preset, base, seed=config.seed)
    log(f"[1/5] built a {config.preset} LLaMA model ({n_params / 1e6:.1f}M parameters, random weights) in {base}")

    tasks = list(config.tasks)
    train_records = synth_records(config.n_train, seed=config.seed + 1, tasks=tasks)
    seen = {r.instruction + "\x00" + r.input for r in train_records}
    test_records = synth_records(config.n_test, seed=config.seed + 2, tasks=tasks, exclude=seen)
    save_records(train_records, out / "train.jsonl", fmt="jsonl")
    save_records(test_records, out / "test.jsonl", fmt="jsonl")
    log(f"[2/5] made {len(train_records)} training and {len(test_records)} held-out records "
        f"({out / 'train.jsonl'}, {out / 'test.jsonl'})")

    log("[3/5] exact-match accuracy before fine-tuning")
    before = evaluate_tasks(base, out / "test.jsonl", template="alpaca")
    log(f"      base accuracy: {before['accuracy']:.3f}")

    log("[4/5] fine-tuning (full weights, Alpaca template, loss on responses only)")
    result = train(TrainConfig(
        model=str(base), data=str(out / "train.jsonl"), out=str(model), epochs=config.epochs, lr=config.lr,
        batch_size=config.batch_size, grad_accum=1, max_len=config.max_len, warmup_ratio=config.warmup_ratio,
        seed=config.seed, save_every=0.5, log_every=10,
    ), log=log)

    log("[5/5] exact-match accuracy after fine-tuning")
    after = evaluate_tasks(model, out / "test.jsonl", out=out / "predictions.jsonl")
    log(format_scores(after))
    report = {
        "base_accuracy": before["accuracy"],
        "tuned_accuracy": after["accuracy"],
        "n_test": after["n"],
        "train_seconds": round(result.train_seconds, 1),
        "per_task": {k: v["accuracy"] for k, v in after["per_task"].items()},
        "train_steps": result.steps,
        "parameters": n_params,
        "config": asdict(config),
    }
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    _write_markdown(out, report)
    log(f"\ntuned accuracy {after['accuracy']:.3f} (base {before['accuracy']:.3f}) on {after['n']} held-out records;"
        f" report: {out / 'report.md'}")
    sample = test_records[0]  # a phrasing the model was trained on; the tiny model knows nothing else
    ask = f"pacos ask {model} {shlex.quote(sample.instruction)}"
    log(f"try it:  {ask}" + (f" --input {shlex.quote(sample.input)}" if sample.input else ""))
    return report


def _write_markdown(out: Path, report: dict) -> None:
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()[:12]]
    lines = [
        "# pacos demo report", "",
        f"- base accuracy: **{report['base_accuracy']:.3f}**",
        f"- tuned accuracy: **{report['tuned_accuracy']:.3f}** on {report['n_test']} held-out records",
        f"- training: {report['train_steps']} steps in {report['train_seconds']} s", "",
        "| task | accuracy |", "|---|---|",
        *[f"| {task} | {acc:.3f} |" for task, acc in sorted(report["per_task"].items())], "",
        "![loss curve](model/loss_curve.png)", "",
        "## Sample generations", "",
        "| instruction | input | expected | generated |", "|---|---|---|---|",
        *[f"| {_cell(r['instruction'])} | {_cell(r.get('input', ''))} | {_cell(r['output'])} | "
          f"{_cell(r.get('generated', ''))} |" for r in rows],
    ]
    (out / "report.md").write_text("\n".join(lines) + "\n")


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def register(sub) -> None:
    p = sub.add_parser("demo", help="the Alpaca loop offline: build a model, make data, fine-tune, measure")
    add_options(p, DemoConfig)
    p.add_argument("--quick", action="store_true", help="a small, fast run of the same flow (for tests)")
    p.set_defaults(func=_demo)


def _demo(args) -> int:
    config = from_args(DemoConfig, args)
    if args.quick:
        config = replace(config, **QUICK)
    start = time.perf_counter()
    run_demo(config)
    print(f"demo finished in {time.perf_counter() - start:.0f} s")
    return 0
