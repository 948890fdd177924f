"""`pacos eval judge`: flags generated from JudgeRunConfig, JudgeConfig and Prices; the work is in judge_run."""

from __future__ import annotations

from pacos.eval.judge_config import JudgeRunConfig
from pacos.options import add_options, from_args
from pacos.remote.config import JudgeConfig
from pacos.remote.spend import Prices


def register(cmds) -> None:
    p = cmds.add_parser(
        "judge", help="an LLM judge compares answers pairwise (both orders) or rates them, every verdict cached",
        description="Judge answers with any OpenAI-compatible model: --mode pairwise against --baseline (or all "
                    "pairs), --mode single or reference (1-10). Rerunning the same command sends no request for "
                    "what is cached. See docs/eval_judge.md.")
    add_options(p.add_argument_group("run"), JudgeRunConfig, exclude=("judge", "prices"))
    add_options(p.add_argument_group("judge"), JudgeConfig)
    add_options(p.add_argument_group("cost"), Prices)
    p.set_defaults(func=_judge)


def _judge(args) -> int:
    from pacos.errors import PacosError
    from pacos.eval.judge_run import judge
    from pacos.remote.config import OPENAI_URL

    config = from_args(JudgeRunConfig, args)
    if not config.judge.key() and config.judge.url.rstrip("/") == OPENAI_URL:
        raise PacosError("no API key for OpenAI: pass --api-key or set OPENAI_API_KEY (or point --judge-url at "
                         "another server)")
    print(judge(config).describe())
    return 0
