"""The original Self-Instruct pipeline (`--pipeline self-instruct`): bootstrap instructions, classify, instances.

Stage 1 shows 6 seed and 2 machine instructions and asks for more; new ones pass the same filters and novelty
check as Alpaca's. Stage 2 asks whether each is a classification task, then generates an instance
input-first, or output-first (class label, then input) for classification so labels stay balanced.
"""

from __future__ import annotations

import asyncio
import random
import re
from collections import Counter

from pacos.self_instruct.bad_answers import answer_problem
from pacos.remote.reply import Reply
from pacos.self_instruct.parse import Candidate
from pacos.self_instruct.languages import NO_INPUT
from pacos.self_instruct.prompt import SeedTask
from pacos.self_instruct.store import RAW_TEXT_CAP, raw_entry, record

SEED_EXAMPLES, MACHINE_EXAMPLES = 6, 2
# Machine examples for batch b come from batches before b - LAG, which are committed by then whatever the
# concurrency, so the prompts (and the output) do not depend on timing.
LAG = 16
CLASSIFY_EXAMPLES, INSTANCE_EXAMPLES = 8, 3

BOOTSTRAP_HEADER = "Come up with a series of tasks:\n\n"
CLASSIFY_HEADER = ("Can the following task be regarded as a classification task with a finite set of output "
                   "labels? Answer Yes or No.\n\n")
INPUT_FIRST_HEADER = ("Come up with an example for each of the following tasks. If a task needs no input, write "
                      f"{NO_INPUT} as its input.\n\n")
OUTPUT_FIRST_HEADER = ("Given a classification task, pick one of its class labels and write an input that belongs "
                       f"to that label. If the task needs no input, write {NO_INPUT} as its input.\n\n")


def bootstrap_prompt(instructions: list[str]) -> str:
    lines = (" ".join(text.split()) for text in instructions)
    body = "".join(f"Task {i}: {line}\n" for i, line in enumerate(lines, 1))
    return f"{BOOTSTRAP_HEADER}{body}Task {len(instructions) + 1}:"


def parse_bootstrap(text: str, finish_reason: str | None) -> tuple[list[str], int]:
    """New instructions from a `Task N:` list, and 1 if the last one was cut by the token limit."""
    parts = [p.strip() for p in re.split(r"(?:^|\n)\s*Task \d+:", text)]
    parts = [re.sub(r"\s+", " ", p) for p in parts if p]
    if finish_reason == "length" and parts:
        return parts[:-1], 1
    return parts, 0


def classify_prompt(examples: list[SeedTask], instruction: str) -> str:
    shots = "".join(f"Task: {t.instruction}\nIs it classification? {'Yes' if t.is_classification else 'No'}\n\n"
                    for t in examples)
    return f"{CLASSIFY_HEADER}{shots}Task: {instruction}\nIs it classification?"


def instance_prompt(examples: list[SeedTask], instruction: str, classification: bool) -> str:
    if classification:
        shots = "".join(f"Task: {t.instruction}\nClass label: {t.output}\nInput: {t.input or NO_INPUT}\n\n"
                        for t in examples)
        return f"{OUTPUT_FIRST_HEADER}{shots}Task: {instruction}\nClass label:"
    shots = "".join(f"Task: {t.instruction}\nInput: {t.input or NO_INPUT}\nOutput: {t.output}\n\n" for t in examples)
    return f"{INPUT_FIRST_HEADER}{shots}Task: {instruction}\nInput:"


def parse_instance(text: str, classification: bool) -> tuple[str, str] | None:
    """(input, output) from an answer continuing `Class label:` or `Input:`; None if it has not both."""
    text = re.split(r"\n\s*Task:", text)[0]
    first = "Input:" if classification else "Output:"
    head, sep, tail = text.partition(f"\n{first}")
    if not sep:
        return None
    tail = re.split(r"\n\s*(?:Class label|Input|Output):", tail)[0]
    a, b = head.strip(), tail.strip()
    input_, output = (b, a) if classification else (a, b)
    input_ = "" if input_.lower() == NO_INPUT else input_
    return (input_, output) if output else None


def _sample(items: list, k: int, rng: random.Random) -> list:
    return rng.sample(items, min(k, len(items)))


async def two_stage_batch(gen, batch: int) -> None:
    """One batch of the two-stage pipeline, committed in order like Alpaca's."""
    cfg = gen.config
    if batch - LAG - 1 >= gen.resumed.next_batch:
        await gen.turns["commit"].passed(batch - LAG - 1)
    machine = [text for b, text in gen.machine_instructions if b < batch - LAG]
    prompts = []
    for slot in range(cfg.batch_size):
        rng = random.Random(f"{cfg.seed}:{batch}:{slot}")
        shown = [t.instruction for t in _sample(gen.seeds, SEED_EXAMPLES, rng)] + _sample(machine, MACHINE_EXAMPLES, rng)
        rng.shuffle(shown)
        prompts.append(bootstrap_prompt(shown))
    reply = await gen.teacher.complete(prompts, ["\n\n", f"Task {SEED_EXAMPLES + MACHINE_EXAMPLES + 8}:"])
    discards, candidates, owners, cuts = Counter(), [], [], []
    async with gen.turns["screen"].turn(batch):
        if gen.stopped:
            return
        for i, answer in enumerate(reply.answers):
            found, cut = [], 0
            if answer.error:
                discards["unparseable_response"] += 1
            else:
                found, cut = parse_bootstrap(answer.text, answer.finish_reason)
                discards["truncated"] += cut
            candidates += [Candidate(text, "", "-") for text in found]  # the output is judged after stage 2
            owners += [i] * len(found)
            cuts.append(cut)
        outcomes = gen.screen(candidates, discards)
    novel = [(i, candidates[i], o) for i, o in enumerate(outcomes) if not isinstance(o, str)]
    rng = random.Random(f"{cfg.seed}:{batch}:instances")
    stage2 = await asyncio.gather(*(_instance(gen, c.instruction, rng.random()) for _, c, _ in novel))
    records, pool_extra, steps, kept = [], [], [], Counter()
    for (i, candidate, decision), (step, classification, instance, usage) in zip(novel, stage2):
        steps.append(step)
        reply.prompt_tokens += usage.prompt_tokens
        reply.completion_tokens += usage.completion_tokens
        reply.requests += usage.requests
        if instance is None or not instance[1].strip():
            discards["no_instance"] += 1
            pool_extra.append(candidate.instruction)
            continue
        records.append(record(Candidate(candidate.instruction, *instance), decision, batch,
                              is_classification=classification))
        kept[owners[i]] += 1
    # A stage-1 answer counts as usable only if one of its instructions became a record: a teacher that
    # writes new instructions but never an instance gives nothing either.
    problems = [answer_problem(a.error, a.text, cuts[i], [o for o, w in zip(outcomes, owners) if w == i], kept[i])
                for i, a in enumerate(reply.answers)]
    async with gen.turns["commit"].turn(batch):
        if gen.stopped:
            return
        gen.commit(batch, records, raw_entry("self-instruct", prompts, reply, +discards, stage2=steps,
                                             pool_extra=pool_extra), problems)


async def _instance(gen, instruction: str, draw: float):
    """Classify one instruction, then generate its instance; returns (log step, is_classification, instance, usage)."""
    rng = random.Random(f"{gen.config.seed}:{instruction}:{draw}")
    usage = Reply()
    ask = classify_prompt(_sample(gen.seeds, CLASSIFY_EXAMPLES, rng), instruction)
    answer = await gen.teacher.complete([ask], ["\n"])
    verdict = answer.answers[0].text.strip()[:100].lower()
    classification = verdict.startswith("yes")
    pool = [s for s in gen.seeds if s.is_classification == classification] or gen.seeds
    make = instance_prompt(_sample(pool, INSTANCE_EXAMPLES, rng), instruction, classification)
    generated = await gen.teacher.complete([make], ["\nTask:"])
    text = generated.answers[0].text
    instance = None if generated.answers[0].error else parse_instance(text, classification)
    for reply in (answer, generated):
        usage.prompt_tokens += reply.prompt_tokens
        usage.completion_tokens += reply.completion_tokens
        usage.requests += reply.requests
    step = {"instruction": instruction, "classify": verdict, "prompt": make, "answer": text[:RAW_TEXT_CAP]}
    return step, classification, instance, usage
