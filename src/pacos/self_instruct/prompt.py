"""Alpaca-style generation prompts: a language's requirements text, then numbered seed tasks in its labels."""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from pacos.data.dedup import read_objects
from pacos.errors import DataError
from pacos.self_instruct.languages import ENGLISH, Language

# The English prompt's (the default); another language's are on its Language.
REQUIREMENTS = ENGLISH.requirements
STOP_SEQUENCES = ENGLISH.stop_sequences


@dataclass
class SeedTask:
    """A Self-Instruct seed task: its instruction and first instance."""

    instruction: str
    input: str = ""
    output: str = ""
    is_classification: bool = False


def load_seed_tasks(path) -> list[SeedTask]:
    """Seed tasks from a Self-Instruct file (`instruction` + `instances[{input, output}]` per line)."""
    tasks = []
    for obj, where in read_objects(path):
        instruction, instances = obj.get("instruction"), obj.get("instances")
        if not isinstance(instruction, str) or not instruction.strip():
            raise DataError(f"{where}: seed task has no 'instruction' text")
        if not isinstance(instances, list) or not instances or not isinstance(instances[0], dict):
            raise DataError(f"{where}: seed task has no 'instances' list of {{input, output}} objects")
        first = instances[0]
        tasks.append(SeedTask(instruction, str(first.get("input") or ""), str(first.get("output") or ""),
                              bool(obj.get("is_classification", False))))
    return tasks


def format_task(number: int, task: SeedTask, language: Language = ENGLISH) -> str:
    """One numbered example in the language's labels, its no-input marker standing for an empty input."""
    instruction = re.sub(r"\s+", " ", task.instruction).strip().rstrip(":：")
    instruction_label, input_label, output_label = (f"{number}. {label}{language.colon}" for label in language.labels)
    return (
        f"{instruction_label}{instruction}\n"
        f"{input_label.rstrip()}\n{task.input or language.no_input}\n"
        f"{output_label.rstrip()}\n{task.output}\n"
    )


def build_prompt(examples: list[SeedTask], language: Language = ENGLISH) -> str:
    """Requirements, the examples as tasks 1..k, then the opening of task k+1 for the teacher to continue."""
    body = "".join(f"###\n{format_task(i, task, language)}" for i, task in enumerate(examples, 1))
    opening = f"{len(examples) + 1}. {language.labels[0]}{language.colon}".rstrip()
    return f"{language.requirements}{body}###\n{opening}"


def sample_examples(seeds: list[SeedTask], k: int, seed: int, batch: int, slot: int) -> list[SeedTask]:
    """The k seed tasks shown in prompt `slot` of `batch`: fixed by (seed, batch, slot), so reruns repeat it."""
    return random.Random(f"{seed}:{batch}:{slot}").sample(seeds, min(k, len(seeds)))
