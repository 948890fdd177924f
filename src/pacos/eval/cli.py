"""`pacos eval ...`: evaluation commands (flags generated from their config dataclasses)."""

from __future__ import annotations

import importlib

from pacos.infer.config import MODEL_HELP, EngineOptions, EvalTasksConfig, PromptOptions
from pacos.options import add_options, from_args


def register(sub) -> None:
    ev = sub.add_parser("eval", help="evaluate models")
    ev.set_defaults(_parser=ev)
    cmds = ev.add_subparsers(dest="eval_command", metavar="SUBCOMMAND")
    p = cmds.add_parser("tasks", help="exact-match accuracy on verifiable task records (e.g. from `data synth`)")
    p.add_argument("model", metavar="MODEL", help=MODEL_HELP)
    add_options(p, EvalTasksConfig)
    add_options(p, PromptOptions)
    add_options(p, EngineOptions)
    p.set_defaults(func=_tasks)
    for name in EVAL_COMMAND_MODULES:  # each defines `register(cmds)` for its own subcommand
        importlib.import_module(name).register(cmds)


# `pacos eval answer|judge|report`, one module each (import-light: no torch at import time).
EVAL_COMMAND_MODULES: tuple[str, ...] = ("pacos.eval.answer_cli", "pacos.eval.judge_cli", "pacos.eval.report_cli")


def _tasks(args) -> int:
    import json

    from pacos.eval.accuracy import evaluate_tasks
    from pacos.eval.tasks import format_scores

    config, prompt = from_args(EvalTasksConfig, args), from_args(PromptOptions, args)
    scores = evaluate_tasks(args.model, config.data, out=config.out, batch_size=config.batch_size,
                            max_new_tokens=config.max_new_tokens, template=prompt.template,
                            threads=from_args(EngineOptions, args).threads)
    print(json.dumps(scores, indent=2) if config.json else format_scores(scores))
    return 0
