"""`pacos serve` (OpenAI-compatible API + web chat page) and `pacos feedback export|stats`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from pacos.errors import PacosError
from pacos.infer.backends import DEFAULT_ENGINE, ENGINES
from pacos.prompting.templates import TEMPLATE_NAMES


def register(sub) -> None:
    p = sub.add_parser("serve", help="serve a model: OpenAI-compatible API, web chat page at /, votes to SQLite")
    p.add_argument("model", metavar="MODEL", help="hub id, model directory or LoRA adapter directory")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--api-key", help="require 'Authorization: Bearer KEY' on /v1/* and /feedback")
    p.add_argument("--served-name", help="the model name clients ask for (default: the model directory's name)")
    p.add_argument("--backend", choices=ENGINES, default=DEFAULT_ENGINE)
    p.add_argument("--template", choices=TEMPLATE_NAMES,
                   help="chat template (default: the one the model was trained with, else the model's own)")
    p.add_argument("--max-batch", type=int, default=16, help="sequences decoded together in each step")
    p.add_argument("--max-queue", type=int, default=64, help="waiting sequences before answering 503")
    p.add_argument("--max-choices-per-request", type=int, metavar="N",
                   help="most choices (n x prompts) one request may ask for, so no client takes every slot "
                        "(default: --max-batch)")
    p.add_argument("--allow-origin", action="append", default=[], metavar="ORIGIN",
                   help="a web origin (e.g. https://app.example) whose pages may also call this server; repeatable "
                        "(by default only the server's own page may)")
    p.add_argument("--feedback-db", help="SQLite file for votes (default: feedback.sqlite3 in the user data dir)")
    p.add_argument("--no-feedback", action="store_true", help="don't store votes from the web page")
    p.set_defaults(func=_serve)

    p = sub.add_parser("feedback", help="votes collected by `pacos serve`: export as training data, stats")
    fsub = p.add_subparsers(dest="feedback_command", metavar="COMMAND")
    p.set_defaults(_parser=p)
    e = fsub.add_parser("export", help="upvoted answers as SFT records, or DPO preference pairs (TRL format)")
    e.add_argument("db", metavar="DB")
    e.add_argument("--format", required=True, choices=("dpo", "sft"))
    e.add_argument("--out", required=True, help="JSONL file to write")
    e.add_argument("--sft-style", choices=("messages", "alpaca"), default="messages",
                   help="sft records as OpenAI messages (default) or Alpaca instruction records (single-turn only)")
    e.set_defaults(func=_export)
    s = fsub.add_parser("stats", help="counts of responses, votes, exportable records and pairs")
    s.add_argument("db", metavar="DB")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=_stats)


def served_name_for(model_ref: str) -> str:
    path = Path(model_ref)
    return path.resolve().name if path.exists() else model_ref


def _serve(args) -> int:
    if not 0 <= args.port <= 65535:
        raise PacosError(f"--port {args.port}: must be 0-65535")
    if args.max_batch < 1 or args.max_queue < 0:
        raise PacosError("--max-batch must be >= 1 and --max-queue >= 0")
    max_choices = args.max_batch if args.max_choices_per_request is None else args.max_choices_per_request
    if max_choices < 1:
        raise PacosError("--max-choices-per-request must be >= 1")
    for origin in args.allow_origin:
        if not origin.startswith(("http://", "https://")) or origin.count("/") != 2:
            raise PacosError(f"--allow-origin {origin}: give an origin, scheme://host[:port] (no path), "
                             "e.g. https://app.example")
    try:
        import uvicorn

        from pacos.serve.app import create_app
    except ImportError as e:
        raise PacosError(f"pacos serve needs the serve extras ({e.name} is missing): pip install 'pacos[serve]'")
    from pacos.infer.backends import load_engine
    from pacos.serve.feedback import FeedbackStore, default_feedback_path

    name = args.served_name or served_name_for(args.model)
    # The database first: a bad --feedback-db fails in a moment, not after the model has loaded.
    feedback = None if args.no_feedback else FeedbackStore(args.feedback_db or default_feedback_path())
    engine = load_engine(args.model, args.backend, template=args.template, max_batch=args.max_batch,
                         max_waiting=args.max_queue)
    app = create_app(engine, name, api_key=args.api_key, feedback=feedback, max_choices=max_choices,
                     allow_origins=tuple(args.allow_origin))
    print(f"pacos serve: model '{name}' ({engine.name}, template {engine.template.name}) on "
          f"http://{args.host}:{args.port}  (web chat at /, OpenAI API at /v1)", file=sys.stderr)
    if feedback:
        print(f"pacos serve: votes go to {feedback.path}", file=sys.stderr)
    try:
        uvicorn.run(app, host=args.host, port=args.port, log_level="warning", timeout_graceful_shutdown=5)
    finally:
        engine.close()
    return 0


def _export(args) -> int:
    from pacos.serve.feedback import export_feedback

    n = export_feedback(args.db, args.format, args.out, args.sft_style)
    what = "preference pairs" if args.format == "dpo" else "SFT records"
    print(f"wrote {n} {what} to {args.out}")
    return 0


def _stats(args) -> int:
    from pacos.serve.feedback import FeedbackStore, feedback_stats

    store = FeedbackStore(args.db, create=False)
    stats = feedback_stats(store.responses(), store.vote_count())
    if args.json:
        print(json.dumps(stats, indent=2))
        return 0
    for key, value in stats.items():
        if key == "models":
            value = ", ".join(f"{m} ({n})" for m, n in value.items()) or "-"
        print(f"{key:<14} {value}")
    return 0
