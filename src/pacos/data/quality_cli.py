"""`pacos data score` and `pacos data filter`: flags generated from their configs; the work is in quality_score
and quality_filter."""

from __future__ import annotations

from pacos.data.quality_filter import FilterConfig
from pacos.data.quality_score import ScoreConfig
from pacos.options import add_options, from_args
from pacos.remote.config import JudgeConfig
from pacos.remote.spend import Prices


def register(cmds) -> None:
    p = cmds.add_parser(
        "score", help="an LLM judge rates each record's response 0-5 (AlpaGasus), every judgement cached",
        description="Rate the accuracy and helpfulness of each record's response to its instruction and input "
                    "with any OpenAI-compatible judge; the score, the judge's reason, the judge model and the "
                    "prompt version go into the record's `quality` field. Rerunning the same command sends no "
                    "request for what is cached. See docs/data_quality.md.")
    p.add_argument("data", metavar="FILE", help="the records to score (any format `pacos data validate` reads)")
    add_options(p.add_argument_group("run"), ScoreConfig, exclude=("data", "judge", "prices"))
    add_options(p.add_argument_group("judge"), JudgeConfig, exclude=("logprobs",))
    add_options(p.add_argument_group("cost"), Prices)
    p.set_defaults(func=_score)

    p = cmds.add_parser("filter", help="keep the records scored >= --min-score; counts and a histogram PNG",
                        description="Keep the records of a `pacos data score` output whose score is at least "
                                    "--min-score, in the input's format; print the counts (kept, dropped, "
                                    "unscored) and the scores per bin, and draw the histogram.")
    p.add_argument("data", metavar="FILE", help="scored records (`pacos data score` output)")
    add_options(p, FilterConfig, exclude=("data",))
    p.set_defaults(func=_filter)


def _score(args) -> int:
    from pacos.data.quality_score import score
    from pacos.errors import PacosError
    from pacos.remote.config import OPENAI_URL

    config = from_args(ScoreConfig, args)
    if not config.judge.key() and config.judge.url.rstrip("/") == OPENAI_URL:
        raise PacosError("no API key for OpenAI: pass --api-key or set OPENAI_API_KEY (or point --judge-url at "
                         "another server)")
    print(score(config).describe())
    return 0


def _filter(args) -> int:
    from pacos.data.quality_filter import filter_file

    print(filter_file(from_args(FilterConfig, args)).describe())
    return 0
