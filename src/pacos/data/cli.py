"""`pacos data ...`: validate, convert, stats, preview, synth, dedup, score, filter — parsing only, work is done in the modules."""

from __future__ import annotations

import argparse
import sys

from pacos.data.formats import FORMATS, WRITABLE_FORMATS
from pacos.data.rouge_options import INDEXED_FROM, METHODS, TOKENIZERS
from pacos.prompting.templates import TEMPLATE_NAMES

# Checked where the template is resolved (an unknown name is a one-line "unknown template" error).
_TEMPLATE_HELP = f"{', '.join(TEMPLATE_NAMES)} (default: by record kind)"


def register(sub: argparse._SubParsersAction) -> None:
    data = sub.add_parser("data", help="inspect, validate, convert and make data files")
    data.set_defaults(_parser=data)
    cmds = data.add_subparsers(dest="data_command", metavar="SUBCOMMAND")

    p = cmds.add_parser("validate", help="report every bad record as FILE:LINE or FILE[index]; exit 1 if any")
    p.add_argument("file")
    p.add_argument("--format", choices=FORMATS, help="skip detection and read the file as this format")
    p.set_defaults(func=_validate)

    p = cmds.add_parser("convert", help=f"convert between {', '.join(WRITABLE_FORMATS)} (atomic write)")
    p.add_argument("input")
    p.add_argument("output")
    p.add_argument("--to", required=True, choices=WRITABLE_FORMATS)
    p.add_argument("--format", choices=FORMATS, help="read INPUT as this format instead of detecting it")
    p.set_defaults(func=_convert)

    p = cmds.add_parser("stats", help="record counts, input share, length percentiles (words, and tokens with --model)")
    p.add_argument("file")
    p.add_argument("--model", help="hub id or local path whose tokenizer counts tokens")
    p.add_argument("--template", help="template used to count tokens: " + _TEMPLATE_HELP)
    p.add_argument("--max-len", type=int, default=512, help="report how many records exceed this many tokens")
    p.add_argument("--json", action="store_true", help="print the statistics as JSON")
    p.set_defaults(func=_stats)

    p = cmds.add_parser("preview", help="show exactly what the model trains on, trained span marked")
    p.add_argument("file")
    p.add_argument("--model", required=True, help="hub id or local path (its tokenizer is used)")
    p.add_argument("--template", help=_TEMPLATE_HELP)
    p.add_argument("--limit", type=int, default=3, help="records to show (default 3)")
    p.add_argument("--max-len", type=int, default=512)
    p.add_argument("--train-on-inputs", action="store_true", help="take loss on the prompt too")
    p.add_argument("--json", action="store_true", help='one {"text", "input_ids", "labels"} object per record')
    p.set_defaults(func=_preview)

    p = cmds.add_parser("synth", help="write procedurally generated instruction records with checkable answers")
    p.add_argument("--n", type=int, required=True, help="number of records")
    p.add_argument("--out", required=True, help="output file (.jsonl, or .json for an Alpaca array)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tasks", help="comma-separated task names (default: all)")
    p.set_defaults(func=_synth)

    p = cmds.add_parser("dedup", help="keep a record iff its ROUGE-L F with every earlier kept record is <= threshold")
    p.add_argument("input")
    p.add_argument("output")
    p.add_argument("--threshold", type=float, default=0.7)
    p.add_argument("--against", action="append", default=[], help="also compare with the records of FILE (repeatable)")
    p.add_argument("--field", default="instruction", help="field compared (default: instruction)")
    p.add_argument("--tokenizer", choices=TOKENIZERS, default="auto",
                   help="rouge: rouge_score's [a-z0-9]+ tokens; unicode: words in any script, each CJK character a "
                        "token (default auto: unicode when most records are mostly non-ASCII)")
    p.add_argument("--method", choices=METHODS, default="auto",
                   help="all-pairs, or indexed (exact length/prefix pruning, same decisions); default auto: "
                        f"indexed from {INDEXED_FROM} records")
    p.add_argument("--no-progress", dest="progress", action="store_false", default=None,
                   help="no progress bar (default: a bar on a terminal)")
    p.set_defaults(func=_dedup)

    from pacos.data import quality_cli  # score and filter: flags generated from their configs

    quality_cli.register(cmds)


def _validate(args) -> int:
    from pacos.data.validate import validate_file

    problems = validate_file(args.file, fmt=args.format)
    for problem in problems:
        print(problem)
    if problems:
        print(f"{args.file}: {len(problems)} bad record(s)", file=sys.stderr)
        return 1
    print(f"{args.file}: ok")
    return 0


def _convert(args) -> int:
    from pacos.data.formats import load_records, save_records

    records = load_records(args.input, fmt=args.format)
    save_records(records, args.output, fmt=args.to)
    print(f"wrote {len(records)} records to {args.output} ({args.to})")
    return 0


def _stats(args) -> int:
    import json

    from pacos.data.formats import load_records
    from pacos.data.stats import compute_stats, format_stats

    records = load_records(args.file)
    tokenizer = None
    if args.model:
        from pacos.models.loading import load_tokenizer

        tokenizer = load_tokenizer(args.model)
    stats = compute_stats(records, tokenizer=tokenizer, template=args.template, max_len=args.max_len)
    print(json.dumps(stats, indent=2) if args.json else format_stats(stats))
    return 0


def _preview(args) -> int:
    from pacos.prompting.preview import preview_file

    for block in preview_file(
        args.file, args.model, template=args.template, limit=args.limit, max_len=args.max_len,
        train_on_inputs=args.train_on_inputs, as_json=args.json,
    ):
        print(block)
    return 0


def _synth(args) -> int:
    from pacos.data.formats import save_records
    from pacos.data.synth import synth_records

    tasks = args.tasks.split(",") if args.tasks else None
    records = synth_records(args.n, seed=args.seed, tasks=tasks)
    save_records(records, args.out, fmt="alpaca" if args.out.endswith(".json") else "jsonl")
    print(f"wrote {len(records)} records to {args.out}")
    return 0


def _dedup(args) -> int:
    from pacos.data.dedup import dedup_file

    result = dedup_file(args.input, args.output, threshold=args.threshold, against=args.against, field=args.field,
                        tokenizer=args.tokenizer, method=args.method, progress=args.progress)
    print(result)
    return 0
