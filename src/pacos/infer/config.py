"""The settings of the generating commands, written once: each field carries its flag's default, help and checks."""

from __future__ import annotations

from dataclasses import dataclass

from pacos.options import check_fields, option
from pacos.prompting.templates import TEMPLATE_NAMES

MODEL_HELP = "hub id, model directory, LoRA adapter directory or .gguf file (run by llama.cpp)"


@dataclass
class PromptOptions:
    """How prompts are built (every generating command)."""

    template: str | None = option(None, "prompt template; default: the one the model was trained with, else by "
                                        "record kind (alpaca for instructions, the model's own for chats)",
                                  choices=TEMPLATE_NAMES)

    def __post_init__(self):
        check_fields(self)


@dataclass
class EngineOptions:
    """How the engine computes (every generating command)."""

    threads: int | None = option(None, "CPU threads to decode with (default: one per physical core for a .gguf "
                                       "file, torch's own otherwise)", ge=1, metavar="N")

    def __post_init__(self):
        check_fields(self)


@dataclass
class InferConfig:
    """`pacos infer`: a file answered through the engine, streamed and resumable."""

    data: str = option(help="records to answer (any format pacos reads; answers not needed)", nonempty=True,
                       path=True)
    out: str = option(help=".jsonl (or .json for an Alpaca array); rerun the same command to resume", nonempty=True,
                      path=True)
    batch_size: int = option(16, "sequences decoded together", ge=1)

    def __post_init__(self):
        check_fields(self)


@dataclass
class EvalTasksConfig:
    """`pacos eval tasks`: greedy answers scored by exact match."""

    data: str = option(help="records with `output` (the expected answer) and `task`", nonempty=True, path=True)
    out: str | None = option(None, "also write the records with `generated` here", path=True)
    batch_size: int = option(32, "sequences decoded together", ge=1)
    max_new_tokens: int = option(32, "most tokens per answer", ge=1)
    json: bool = option(False, "print the scores as JSON")

    def __post_init__(self):
        check_fields(self)
