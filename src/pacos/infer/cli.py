"""`pacos infer` and `pacos ask`: sampling flags map onto SamplingParams."""

from __future__ import annotations

from pacos.infer.generate import SamplingParams

_D = SamplingParams()


def add_sampling_args(p, max_new_tokens: int = _D.max_new_tokens) -> None:
    """The sampling flags every generating command shares."""
    p.add_argument("--max-new-tokens", type=int, default=max_new_tokens)
    p.add_argument("--temperature", type=float, default=_D.temperature, help="0 = greedy (deterministic)")
    p.add_argument("--top-p", type=float, default=_D.top_p)
    p.add_argument("--top-k", type=int, default=_D.top_k, help="0 = off")
    p.add_argument("--repetition-penalty", type=float, default=_D.repetition_penalty)
    p.add_argument("--seed", type=int, help="sampling seed")
    p.add_argument("--template", choices=("alpaca", "vicuna", "chatml", "model"),
                   help="default: the template the model was trained with, else by record kind")


def sampling_params(args) -> SamplingParams:
    return SamplingParams(max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_p=args.top_p,
                          top_k=args.top_k, repetition_penalty=args.repetition_penalty, seed=args.seed)


def register(sub) -> None:
    p = sub.add_parser("infer", help="answer every record of a file (batched); writes records + `generated`")
    p.add_argument("model", metavar="MODEL", help="hub id, model directory or LoRA adapter directory")
    p.add_argument("--data", required=True)
    p.add_argument("--out", required=True, help=".jsonl (or .json for an Alpaca array)")
    p.add_argument("--batch-size", type=int, default=16)
    add_sampling_args(p)
    p.set_defaults(func=_infer)

    p = sub.add_parser("ask", help="answer one instruction")
    p.add_argument("model", metavar="MODEL")
    p.add_argument("instruction")
    p.add_argument("--input", default="", help="the optional input/context of the instruction")
    add_sampling_args(p)
    p.set_defaults(func=_ask)


def _infer(args) -> int:
    from pacos.infer.generate import infer_file

    n = infer_file(args.model, args.data, args.out, sampling_params(args), template=args.template,
                   batch_size=args.batch_size)
    print(f"wrote {n} records with `generated` to {args.out}")
    return 0


def _ask(args) -> int:
    from pacos.data.records import Example
    from pacos.infer.generate import Generator

    record = Example(args.instruction, args.input)
    gen = Generator.load(args.model, args.template, [record])
    print(gen.generate([record], sampling_params(args), batch_size=1)[0])
    return 0
