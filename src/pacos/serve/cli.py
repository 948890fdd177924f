"""`pacos serve` (OpenAI-compatible API, web chat page, blind compare page) and `pacos feedback export|stats`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from pacos.errors import PacosError
from pacos.infer.config import MODEL_HELP
from pacos.options import add_options, from_args
from pacos.serve.config import ServeConfig


def register(sub) -> None:
    p = sub.add_parser("serve", help="serve models: OpenAI-compatible API, web chat page at /, blind side-by-side "
                                     "votes at /compare (2+ models), votes to SQLite")
    p.add_argument("model", metavar="MODEL", nargs="+",
                   help=f"{MODEL_HELP}; several for one server (each loaded once, on its own engine), each as "
                        "NAME=MODEL to choose the name clients ask for")
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


def served_models(refs: list[str], served_name: str | None = None) -> dict[str, str]:
    """{served name: model reference} from `pacos serve`'s MODEL arguments: NAME=MODEL names one, otherwise
    the name is `served_name_for`'s (or --served-name's, for a single model)."""
    if served_name is not None and len(refs) > 1:
        raise PacosError("--served-name names a single model; with several, name each as NAME=MODEL")
    models: dict[str, str] = {}
    for ref in refs:
        name, sep, path = ref.partition("=")
        if not sep or not name or "/" in name or Path(ref).exists():  # a path that holds "=" is still a path
            name, path = served_name or served_name_for(ref), ref
        if not path:
            raise PacosError(f"{ref}: give NAME=MODEL, with the model after the '='")
        if name in models:
            raise PacosError(f"two models would be served as '{name}' ({models[name]} and {path}): name them "
                             "apart as NAME=MODEL")
        models[name] = path
    return models


def _serve(args) -> int:
    config = from_args(ServeConfig, args)
    try:
        import uvicorn

        from pacos.serve.app import create_app
    except ImportError as e:
        raise PacosError(f"pacos serve needs the serve extras ({e.name} is missing): pip install 'pacos[serve]'")
    from pacos.infer.backends import load_engine
    from pacos.serve.feedback import FeedbackStore, default_feedback_path

    models = served_models(args.model, config.served_name)
    # The database first: a bad --feedback-db fails in a moment, not after the models have loaded.
    feedback = FeedbackStore(config.feedback_db or default_feedback_path()) if config.feedback else None
    engines = {}
    try:
        for name, ref in models.items():  # each model loaded once, on an engine of its own
            engines[name] = load_engine(ref, config.backend, template=config.template, max_batch=config.max_batch,
                                        max_waiting=config.max_queue, threads=config.engine.threads)
        app = create_app(engines, api_key=config.api_key, feedback=feedback, max_choices=config.max_choices,
                         allow_origins=config.allow_origin)
        for name, engine in engines.items():
            print(f"pacos serve: model '{name}' ({engine.name}, template {engine.template.name})", file=sys.stderr)
        pages = "web chat at /" + (", blind side-by-side votes at /compare" if len(engines) > 1 else "")
        print(f"pacos serve: on http://{config.host}:{config.port}  ({pages}, OpenAI API at /v1)", file=sys.stderr)
        if feedback:
            print(f"pacos serve: votes go to {feedback.path}", file=sys.stderr)
        uvicorn.run(app, host=config.host, port=config.port, log_level="warning", timeout_graceful_shutdown=5)
    finally:
        for engine in engines.values():
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
