"""`pacos infer` and `pacos ask`: sampling flags map onto SamplingParams; both answer through the engine."""

from __future__ import annotations

from pacos.infer.params import SamplingParams
from pacos.prompting.templates import TEMPLATE_NAMES

_D = SamplingParams()


def add_sampling_args(p, max_new_tokens: int = _D.max_new_tokens) -> None:
    """The sampling flags every generating command shares."""
    p.add_argument("--max-new-tokens", type=int, default=max_new_tokens)
    p.add_argument("--temperature", type=float, default=_D.temperature, help="0 = greedy (deterministic)")
    p.add_argument("--top-p", type=float, default=_D.top_p)
    p.add_argument("--top-k", type=int, default=_D.top_k, help="0 = off")
    p.add_argument("--min-p", type=float, default=_D.min_p, help="0 = off")
    p.add_argument("--repetition-penalty", type=float, default=_D.repetition_penalty)
    p.add_argument("--presence-penalty", type=float, default=_D.presence_penalty)
    p.add_argument("--frequency-penalty", type=float, default=_D.frequency_penalty)
    p.add_argument("--seed", type=int, help="sampling seed")
    p.add_argument("--template", choices=TEMPLATE_NAMES,
                   help="default: the template the model was trained with, else by record kind")


def sampling_params(args) -> SamplingParams:
    params = SamplingParams(max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_p=args.top_p,
                            top_k=args.top_k, min_p=args.min_p, repetition_penalty=args.repetition_penalty,
                            presence_penalty=args.presence_penalty, frequency_penalty=args.frequency_penalty,
                            seed=args.seed)
    params.check()  # before any model is loaded
    return params


def register(sub) -> None:
    p = sub.add_parser("infer", help="answer every record of a file (streamed, resumable); writes records + `generated`")
    p.add_argument("model", metavar="MODEL", help="hub id, model directory or LoRA adapter directory")
    p.add_argument("--data", required=True)
    p.add_argument("--out", required=True,
                   help=".jsonl (or .json for an Alpaca array); rerun the same command to resume")
    p.add_argument("--batch-size", type=int, default=16, help="sequences decoded together")
    add_sampling_args(p)
    p.set_defaults(func=_infer)

    p = sub.add_parser("ask", help="answer one instruction")
    p.add_argument("model", metavar="MODEL")
    p.add_argument("instruction")
    p.add_argument("--input", default="", help="the optional input/context of the instruction")
    add_sampling_args(p)
    p.set_defaults(func=_ask)


def _infer(args) -> int:
    from pacos.errors import PacosError
    from pacos.infer.backends import load_engine
    from pacos.infer.files import infer_file, read_inputs
    from pacos.prompting.templates import record_kind

    if args.batch_size < 1:
        raise PacosError("--batch-size must be >= 1")
    params = sampling_params(args)
    records = read_inputs(args.data)  # a bad file fails before the model loads
    with load_engine(args.model, template=args.template, kind=record_kind(records), max_batch=args.batch_size,
                     max_waiting=args.batch_size) as engine:
        result = infer_file(engine, args.data, args.out, params, records=records)
    resumed = f" ({result.already} were already there)" if result.already else ""
    print(f"wrote {result.total} records with `generated` to {args.out}{resumed}")
    return 0


def _ask(args) -> int:
    from pacos.data.records import Example
    from pacos.infer.backends import load_engine
    from pacos.infer.files import answer_records

    params = sampling_params(args)
    with load_engine(args.model, template=args.template, kind="instruction", max_batch=1) as engine:
        print(answer_records(engine, [Example(args.instruction, args.input)], params)[0])
    return 0
