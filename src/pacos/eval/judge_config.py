"""The settings of `pacos eval judge`: the run, and the judge model (a remote role, remote.config.JudgeConfig);
flags generated from them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pacos.options import ConfigError, check_fields, option
from pacos.remote.config import JudgeConfig
from pacos.remote.spend import Prices

MODES = ("pairwise", "single", "reference")
TOP_LOGPROBS = 5  # alternatives asked for per token: the three verdict letters fit with room to spare


@dataclass
class JudgeRunConfig:
    answers: tuple[str, ...] = option(help="answers file(s): `pacos eval answer` output, AlpacaEval or "
                                           "Self-Instruct predictions (repeat the flag or separate by commas)",
                                      nonempty=True)
    mode: str = option(help="pairwise: which of two answers is better (both orders); single: a 1-10 rating; "
                            "reference: a 1-10 rating against a reference answer", choices=MODES)
    out: str = option(help="judgements, one JSON object per judged item (written atomically)", path=True)
    judge: JudgeConfig = option(help="the judge's settings")
    baseline: str | None = option(None, "pairwise: answers every --answers model is compared with "
                                        "(default: all pairs of the --answers models)")
    references: str | None = option(None, "reference mode: a question file with `reference`, or a reference "
                                          "model's answers (default: the questions' own `reference`)")
    categories: tuple[str, ...] = option((), "judge only questions of these categories, comma-separated (default: all)")
    cache: str | None = option(None, "SQLite cache of every judgement (default: OUT's name + .cache.sqlite)")
    progress: bool | None = option(None, "no progress bar (default: a bar only on a terminal)")
    prices: Prices = option(default_factory=Prices, help="prices and the cost limit")  # noqa: RUF009

    def __post_init__(self) -> None:
        check_fields(self)
        if self.mode != "pairwise" and self.baseline is not None:
            raise ConfigError("--baseline is for --mode pairwise; single and reference rate each answer alone")
        if self.references is not None and self.mode != "reference":
            raise ConfigError("--references is for --mode reference")

    @property
    def cache_path(self) -> Path:
        out = Path(self.out)
        return Path(self.cache) if self.cache else out.with_name(out.stem + ".cache.sqlite")
