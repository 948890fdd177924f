"""The settings of a Self-Instruct run, with Alpaca's defaults written once; the CLI flags are generated from them."""

from __future__ import annotations

from dataclasses import dataclass

from pacos.data.rouge_options import TOKENIZERS
from pacos.data.rouge_tokenizers import tokenizer_for_language
from pacos.options import ConfigError, check_fields, option
from pacos.remote.config import TeacherConfig
from pacos.self_instruct.languages import get_language

PIPELINES = ("alpaca", "self-instruct")


@dataclass
class SelfInstructConfig:
    # Not required flags: `pacos self-instruct report FILE` shares the parser; __post_init__ asks for them.
    seed_tasks: str = option(help="Self-Instruct seed file, e.g. ../shared/data/seed_tasks.jsonl",
                             required=False, path=True)
    out: str = option(help="output JSONL; rerun to resume (raw log: OUT.raw.jsonl)", required=False, path=True)
    num_instructions: int = option(100, "kept records to reach", ge=1)
    language: str = option("en", "language of the tasks: en or zh (pacos prompts of their own), or a code the "
                           "English prompt asks for, e.g. fr, de, ja (a wrong code lists them)")
    pipeline: str = option("alpaca", "alpaca, or the original two-stage self-instruct", choices=PIPELINES)
    prompt_examples: int = option(3, "seed tasks per prompt", ge=1)
    batch_size: int = option(5, "prompts per batch (one completions request; one chat request each)", ge=1)
    threshold: float = option(0.7, "ROUGE-L F above which an instruction is a near-duplicate and dropped",
                              ge=0, le=1)
    tokenizer: str = option("auto", "ROUGE-L tokens of the novelty check: rouge (rouge_score's [a-z0-9]+, Alpaca's) "
                            "or unicode (words in any script, each CJK character a token); auto: rouge for "
                            "--language en, unicode for any other (default: auto)", choices=TOKENIZERS)
    seed: int = option(0, "seed of the prompt sampling")
    price_in: float = option(0.0, "$ per 1M prompt tokens", ge=0)
    price_out: float = option(0.0, "$ per 1M completion tokens", ge=0)
    max_cost: float | None = option(None, "$; stop cleanly once spent (needs the prices)", ge=0)
    max_bad_answers: int = option(20, "answers in a row with no usable task (in commit order) that end the run",
                                  ge=1)
    progress: bool | None = option(None, "no progress bar (default: a bar only on a terminal)")
    teacher: TeacherConfig = option(default_factory=TeacherConfig, help="the teacher's settings")  # noqa: RUF009

    def __post_init__(self) -> None:
        if not self.seed_tasks or not self.out:
            raise ConfigError("pacos self-instruct needs --seed-tasks FILE and --out FILE.jsonl")
        check_fields(self)
        self.language = get_language(self.language).code
        self.tokenizer = tokenizer_for_language(self.tokenizer, self.language)
        if self.pipeline == "self-instruct" and self.language != "en":
            raise ConfigError("--pipeline self-instruct has English prompts only; use --pipeline alpaca with "
                              f"--language {self.language}")
        if self.max_cost is not None and not (self.price_in or self.price_out):
            raise ConfigError("--max-cost needs --price-in and --price-out (dollars per 1M tokens)")
