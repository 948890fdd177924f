"""Alpaca-style generation prompts: our requirements text, numbered seed tasks, and where the answer must stop."""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from pacos.data.dedup import read_objects
from pacos.errors import DataError

# The teacher lists tasks up to number 20; the prompt's examples take the first numbers, so stopping when
# it starts task 20 bounds the answer (Alpaca stops on "20." the same way).
LAST_TASK = 20
STOP_SEQUENCES = [f"\n{LAST_TASK}.", f"{LAST_TASK}. Instruction:"]
NO_INPUT = "<noinput>"

REQUIREMENTS = f"""\
Write a list of {LAST_TASK} varied task instructions. They will be given to a language model, and the \
model's completions will be judged.

Requirements:
1. Do not repeat a verb across instructions: vary the wording as much as possible.
2. Vary the language too: mix questions with imperative instructions.
3. Vary the task types: open-ended generation, classification, editing, rewriting, brainstorming, \
open and closed question answering, reasoning, coding, math and more.
4. Each instruction must be something a text-only language model can do: nothing that needs to see, \
hear or produce images, audio or video, or to act in the world (no reminders, no purchases).
5. Write the instructions in English.
6. Keep each instruction to one or two sentences, imperative or a question.
7. Give an input for an instruction when it needs one: a concrete, realistic example of at most 100 \
words (not a placeholder). Many instructions need no input: write "{NO_INPUT}" for them.
8. The output must be a good answer to the instruction with its input, under 100 words.

List of {LAST_TASK} tasks:
"""


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


def format_task(number: int, task: SeedTask) -> str:
    """One numbered example, `<noinput>` standing for an empty input."""
    instruction = re.sub(r"\s+", " ", task.instruction).strip().rstrip(":")
    return (
        f"{number}. Instruction: {instruction}\n"
        f"{number}. Input:\n{task.input or NO_INPUT}\n"
        f"{number}. Output:\n{task.output}\n"
    )


def build_prompt(examples: list[SeedTask]) -> str:
    """Requirements, the examples as tasks 1..k, then the opening of task k+1 for the teacher to continue."""
    body = "".join(f"###\n{format_task(i, task)}" for i, task in enumerate(examples, 1))
    return f"{REQUIREMENTS}{body}###\n{len(examples) + 1}. Instruction:"


def sample_examples(seeds: list[SeedTask], k: int, seed: int, batch: int, slot: int) -> list[SeedTask]:
    """The k seed tasks shown in prompt `slot` of `batch`: fixed by (seed, batch, slot), so reruns repeat it."""
    return random.Random(f"{seed}:{batch}:{slot}").sample(seeds, min(k, len(seeds)))
