"""`pacos perplexity MODEL --data FILE`: flags generated from PerplexityConfig; the work is in pacos.eval.perplexity."""

from __future__ import annotations

from pacos.eval.perplexity import PerplexityConfig
from pacos.options import add_options, from_args

MODEL_HELP = "hub id, model directory, LoRA adapter directory or .gguf file"


def register(sub) -> None:
    p = sub.add_parser("perplexity", help="perplexity on a text or data file, and KL/top-1 against a reference model")
    p.add_argument("model", metavar="MODEL", help=MODEL_HELP)
    add_options(p, PerplexityConfig)
    p.set_defaults(func=_perplexity)


def _perplexity(args) -> int:
    import json

    from pacos.eval.perplexity import format_result, measure_perplexity

    config = from_args(PerplexityConfig, args)
    result = measure_perplexity(args.model, config)
    print(json.dumps(result, indent=2) if config.json else format_result(result))
    return 0
