"""The settings of a Self-Instruct run, with Alpaca's defaults written once; the CLI fills them."""

from __future__ import annotations

from dataclasses import dataclass, field

from pacos.self_instruct.client import TeacherConfig

PIPELINES = ("alpaca", "self-instruct")


@dataclass
class SelfInstructConfig:
    seed_tasks: str
    out: str
    num_instructions: int = 100
    pipeline: str = "alpaca"  # or "self-instruct": the original two-stage pipeline
    prompt_examples: int = 3  # seed tasks shown per prompt
    batch_size: int = 5  # prompts per batch (one completions request; one chat request each)
    threshold: float = 0.7  # ROUGE-L F above which an instruction is a near-duplicate
    seed: int = 0
    price_in: float = 0.0  # $ per 1M prompt tokens
    price_out: float = 0.0  # $ per 1M completion tokens
    max_cost: float | None = None  # $; stop issuing requests once reached
    max_bad_answers: int = 20  # answers in a row with nothing kept (in commit order) that end the run
    progress: bool | None = None  # None: a bar only on a terminal
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
