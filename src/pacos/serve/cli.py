"""`pacos serve` (OpenAI-compatible API + web chat page) and `pacos feedback export|stats`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from pacos.errors import PacosError
from pacos.infer.config import MODEL_HELP
from pacos.options import add_options, from_args
from pacos.serve.config import ServeConfig


def register(sub) -> None:
    p = sub.add_parser("serve", help="serve a model: OpenAI-compatible API, web chat page at /, votes to SQLite")
    p.add_argument("model", metavar="MODEL", help=MODEL_HELP)
    add_options(p, ServeConfig)
    p.set_defaults(func=_serve)

    p = sub.add_parser("feedback", help="votes collected by `pacos serve`: export as training data, stats")
    fsub = p.add_subparsers(dest="feedback_command", metavar="COMMAND")
    p.set_defaults(_parser=p)
    e = fsub.add_parser("export", help="upvoted answers as SFT records, or DPO preference pairs (TRL format) from "
                                       "votes and decisive side-by-side comparisons")
    e.add_argument("db", metavar="DB")
    e.add_argument("--format", required=True, choices=("dpo", "sft"))
    e.add_argument("--out", required=True, help="JSONL file to write")
    e.add_argument("--sft-style", choices=("messages", "alpaca"), default="messages",
                   help="sft records as OpenAI messages (default) or Alpaca instruction records (single-turn only)")
    e.set_defaults(func=_export)
    s = fsub.add_parser("stats", help="counts of responses, votes, comparisons, exportable records and pairs")
    s.add_argument("db", metavar="DB")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=_stats)


def served_name_for(model_ref: str) -> str:
    path = Path(model_ref)
    return path.resolve().name if path.exists() else model_ref


def _serve(args) -> int:
    config = from_args(ServeConfig, args)
    try:
        import uvicorn

        from pacos.serve.app import create_app
    except ImportError as e:
        raise PacosError(f"pacos serve needs the serve extras ({e.name} is missing): pip install 'pacos[serve]'")
    from pacos.infer.backends import load_engine
    from pacos.serve.feedback import FeedbackStore, default_feedback_path

    name = config.served_name or served_name_for(args.model)
    # The database first: a bad --feedback-db fails in a moment, not after the model has loaded.
    feedback = FeedbackStore(config.feedback_db or default_feedback_path()) if config.feedback else None
    engine = load_engine(args.model, config.backend, template=config.template, max_batch=config.max_batch,
                         max_waiting=config.max_queue, threads=config.engine.threads)
    app = create_app(engine, name, api_key=config.api_key, feedback=feedback, max_choices=config.max_choices,
                     allow_origins=config.allow_origin)
    print(f"pacos serve: model '{name}' ({engine.name}, template {engine.template.name}) on "
          f"http://{config.host}:{config.port}  (web chat at /, OpenAI API at /v1)", file=sys.stderr)
    if feedback:
        print(f"pacos serve: votes go to {feedback.path}", file=sys.stderr)
    try:
        uvicorn.run(app, host=config.host, port=config.port, log_level="warning", timeout_graceful_shutdown=5)
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
    stats = feedback_stats(store.responses(), store.vote_count(), store.comparisons())
    if args.json:
        print(json.dumps(stats, indent=2))
        return 0
    for key, value in stats.items():
        if isinstance(value, dict):  # models, comparison votes: each with its count
            value = ", ".join(f"{m} ({n})" for m, n in value.items()) or "-"
        print(f"{key:<16} {value}")
    return 0
