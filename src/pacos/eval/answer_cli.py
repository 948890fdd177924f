"""`pacos eval answer`: flags generated from AnswerConfig, the sampling/template/engine options and EndpointConfig."""

from __future__ import annotations

from pacos.eval.answer import DEFAULT_MAX_NEW_TOKENS, AnswerConfig, EndpointConfig
from pacos.infer.cli import add_sampling_args, sampling_params
from pacos.infer.config import MODEL_HELP, EngineOptions, PromptOptions
from pacos.options import add_options, from_args


def register(cmds) -> None:
    p = cmds.add_parser("answer", help="a model's answers to evaluation questions (MT-bench, Vicuna, Self-Instruct, "
                                       "AlpacaEval, instructions), resumable; through the engine or an endpoint")
    p.add_argument("model_ref", metavar="MODEL", nargs="?", help=MODEL_HELP + "; left out with --api-base")
    add_options(p, AnswerConfig)
    add_sampling_args(p, max_new_tokens=DEFAULT_MAX_NEW_TOKENS)
    add_options(p, EndpointConfig)
    p.set_defaults(func=_answer)


def _answer(args) -> int:
    import sys

    from pacos.eval.answer import answer_questions

    config, params = from_args(AnswerConfig, args), sampling_params(args)
    result = answer_questions(args.model_ref, config, params, template=from_args(PromptOptions, args).template,
                              threads=from_args(EngineOptions, args).threads,
                              endpoint=from_args(EndpointConfig, args))
    if result.repeats:
        print(f"{config.questions}: {len(result.repeats)} repeated question(s) left out (first at "
              f"{result.repeats[0]})", file=sys.stderr)
    resumed = f" ({result.already} were already there)" if result.already else ""
    print(f"wrote the answers to {result.questions} questions to {config.out}{resumed}")
    return 0
