"""`pacos eval ...`: evaluation commands."""

from __future__ import annotations


def register(sub) -> None:
    ev = sub.add_parser("eval", help="evaluate models")
    ev.set_defaults(_parser=ev)
    cmds = ev.add_subparsers(dest="eval_command", metavar="SUBCOMMAND")
    p = cmds.add_parser("tasks", help="exact-match accuracy on verifiable task records (e.g. from `data synth`)")
    p.add_argument("model", metavar="MODEL")
    p.add_argument("--data", required=True, help="records with `output` (the expected answer) and `task`")
    p.add_argument("--out", help="also write the records with `generated` here")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-new-tokens", type=int, default=32)
    p.add_argument("--template", choices=("alpaca", "vicuna", "chatml", "model"))
    p.add_argument("--json", action="store_true", help="print the scores as JSON")
    p.set_defaults(func=_tasks)


def _tasks(args) -> int:
    import json

    from pacos.eval.tasks import format_scores
    from pacos.eval.accuracy import evaluate_tasks

    scores = evaluate_tasks(args.model, args.data, out=args.out, batch_size=args.batch_size,
                            max_new_tokens=args.max_new_tokens, template=args.template)
    print(json.dumps(scores, indent=2) if args.json else format_scores(scores))
    return 0
