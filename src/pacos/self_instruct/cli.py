"""`pacos self-instruct ...` (generate or resume) and `pacos self-instruct report`: parsing only."""

from __future__ import annotations

import argparse
import os

from pacos.errors import PacosError


def register(sub: argparse._SubParsersAction) -> None:
    from pacos.self_instruct.client import OPENAI_URL, TeacherConfig
    from pacos.self_instruct.config import PIPELINES, SelfInstructConfig

    run, teacher = SelfInstructConfig("", ""), TeacherConfig()
    p = sub.add_parser(
        "self-instruct", help="generate instruction data from seed tasks with a teacher model (resumable)",
        description="Generate Alpaca-style instruction data with any OpenAI-compatible teacher. Rerunning the "
                    "same command resumes. `pacos self-instruct report OUT.jsonl` summarises a run.",
    )
    p.set_defaults(func=_generate, _parser=p)
    t = p.add_argument_group("teacher")
    t.add_argument("--teacher-url", default=teacher.url, help=f"OpenAI-compatible base URL (default {OPENAI_URL})")
    t.add_argument("--teacher-model", default=teacher.model, help=f"model name (default {teacher.model})")
    t.add_argument("--api", choices=("completions", "chat"), default=teacher.api, help="endpoint (default completions)")
    t.add_argument("--api-key", help="API key (default: $OPENAI_API_KEY)")
    t.add_argument("--concurrency", type=int, default=teacher.concurrency, help="requests in flight")
    t.add_argument("--requests-per-minute", type=float, default=teacher.requests_per_minute, help="0: no limit")
    t.add_argument("--temperature", type=float, default=teacher.temperature)
    t.add_argument("--top-p", type=float, default=teacher.top_p)
    t.add_argument("--max-tokens", type=int, default=teacher.max_tokens, help="per answer")
    t.add_argument("--timeout", type=float, default=teacher.timeout,
                   help="seconds for one whole attempt, body included; then it is retried")
    t.add_argument("--max-retries", type=int, default=teacher.max_retries, help="retries of a failing request")
    t.add_argument("--max-response-bytes", type=int, default=teacher.max_response_bytes,
                   help="larger responses are refused unread and count as bad answers (default 4 MiB)")
    t.add_argument("--max-bad-answers", type=int, default=run.max_bad_answers,
                   help="answers in a row with no usable task that end the run (default 20)")
    g = p.add_argument_group("generation")
    g.add_argument("--seed-tasks", help="Self-Instruct seed file, e.g. ../shared/data/seed_tasks.jsonl")
    g.add_argument("--num-instructions", type=int, default=run.num_instructions, help="kept records to reach")
    g.add_argument("--out", help="output JSONL; rerun to resume (raw log: OUT.raw.jsonl)")
    g.add_argument("--pipeline", choices=PIPELINES, default=run.pipeline,
                   help="alpaca (default) or the original two-stage self-instruct")
    g.add_argument("--prompt-examples", type=int, default=run.prompt_examples, help="seed tasks per prompt")
    g.add_argument("--batch-size", type=int, default=run.batch_size, help="prompts per batch")
    g.add_argument("--threshold", type=float, default=run.threshold, help="ROUGE-L F above which to drop")
    g.add_argument("--seed", type=int, default=run.seed)
    g.add_argument("--price-in", type=float, default=0.0, help="$ per 1M prompt tokens")
    g.add_argument("--price-out", type=float, default=0.0, help="$ per 1M completion tokens")
    g.add_argument("--max-cost", type=float, help="$; stop cleanly once spent (needs the prices)")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")

    cmds = p.add_subparsers(dest="self_instruct_command", metavar="[report]")
    r = cmds.add_parser("report", help="plots and a markdown summary of a run")
    r.add_argument("file", help="the run's OUT.jsonl (its OUT.raw.jsonl is read too when present)")
    r.add_argument("--out", dest="report_dir", help="folder for report.md and PNGs (default: FILE's stem + _report)")
    r.set_defaults(func=_report)


def _generate(args) -> int:
    from pacos.self_instruct.client import OPENAI_URL, TeacherConfig
    from pacos.self_instruct.config import SelfInstructConfig
    from pacos.self_instruct.loop import generate

    if not args.seed_tasks or not args.out:
        raise PacosError("pacos self-instruct needs --seed-tasks FILE and --out FILE.jsonl")
    if args.max_cost is not None and not (args.price_in or args.price_out):
        raise PacosError("--max-cost needs --price-in and --price-out (dollars per 1M tokens)")
    for name in ("num_instructions", "concurrency", "batch_size", "prompt_examples", "max_tokens",
                 "max_response_bytes", "max_bad_answers"):
        if getattr(args, name) < 1:
            raise PacosError(f"--{name.replace('_', '-')} must be at least 1")
    if not args.timeout > 0 or args.timeout == float("inf"):
        raise PacosError("--timeout must be a positive number of seconds")
    api_key = args.api_key or os.environ.get("OPENAI_API_KEY")
    if not api_key and args.teacher_url.rstrip("/") == OPENAI_URL:
        raise PacosError("no API key for OpenAI: pass --api-key or set OPENAI_API_KEY (or point --teacher-url "
                         "at another server)")
    teacher = TeacherConfig(
        url=args.teacher_url, model=args.teacher_model, api=args.api, api_key=api_key,
        temperature=args.temperature, top_p=args.top_p, max_tokens=args.max_tokens, concurrency=args.concurrency,
        requests_per_minute=args.requests_per_minute, timeout=args.timeout, max_retries=args.max_retries,
        max_response_bytes=args.max_response_bytes,
    )
    config = SelfInstructConfig(
        seed_tasks=args.seed_tasks, out=args.out, num_instructions=args.num_instructions, pipeline=args.pipeline,
        prompt_examples=args.prompt_examples, batch_size=args.batch_size, threshold=args.threshold,
        seed=args.seed, price_in=args.price_in, price_out=args.price_out, max_cost=args.max_cost,
        max_bad_answers=args.max_bad_answers,
        progress=False if args.no_progress else None, teacher=teacher,
    )
    print(generate(config))
    return 0


def _report(args) -> int:
    from pacos.self_instruct.report import write_report

    print(write_report(args.file, args.report_dir))
    return 0
