"""`pacos infer` and `pacos ask`: flags generated from the config dataclasses; both answer through the engine."""

from __future__ import annotations

from pacos.infer.config import MODEL_HELP, EngineOptions, InferConfig, PromptOptions
from pacos.infer.params import SamplingParams
from pacos.options import add_options, from_args


def add_sampling_args(p, max_new_tokens: int | None = None) -> None:
    """The sampling, template and engine flags every generating command shares (SamplingParams, PromptOptions,
    EngineOptions)."""
    add_options(p, SamplingParams, defaults_override={"max_new_tokens": max_new_tokens} if max_new_tokens else None)
    add_options(p, PromptOptions)
    add_options(p, EngineOptions)


def sampling_params(args) -> SamplingParams:
    params = from_args(SamplingParams, args)
    params.check()  # before any model is loaded
    return params


def register(sub) -> None:
    p = sub.add_parser("infer", help="answer every record of a file (streamed, resumable); writes records + `generated`")
    p.add_argument("model", metavar="MODEL", help=MODEL_HELP)
    add_options(p, InferConfig)
    add_sampling_args(p)
    p.set_defaults(func=_infer)

    p = sub.add_parser("ask", help="answer one instruction")
    p.add_argument("model", metavar="MODEL", help=MODEL_HELP)
    p.add_argument("instruction")
    p.add_argument("--input", default="", help="the optional input/context of the instruction")
    add_sampling_args(p)
    p.set_defaults(func=_ask)


def _infer(args) -> int:
    from pacos.infer.backends import load_engine
    from pacos.infer.files import infer_file, read_inputs
    from pacos.prompting.templates import record_kind

    config, params, prompt = from_args(InferConfig, args), sampling_params(args), from_args(PromptOptions, args)
    records = read_inputs(config.data)  # a bad file fails before the model loads
    with load_engine(args.model, template=prompt.template, kind=record_kind(records), max_batch=config.batch_size,
                     max_waiting=2 * config.batch_size, threads=from_args(EngineOptions, args).threads) as engine:  # a batch waiting: a freed slot refills at once
        result = infer_file(engine, config.data, config.out, params, records=records)
    resumed = f" ({result.already} were already there)" if result.already else ""
    print(f"wrote {result.total} records with `generated` to {config.out}{resumed}")
    return 0


def _ask(args) -> int:
    from pacos.data.records import Example
    from pacos.infer.backends import load_engine
    from pacos.infer.files import answer_records

    params, prompt = sampling_params(args), from_args(PromptOptions, args)
    with load_engine(args.model, template=prompt.template, kind="instruction", max_batch=1,
                     threads=from_args(EngineOptions, args).threads) as engine:
        print(answer_records(engine, [Example(args.instruction, args.input)], params)[0])
    return 0
