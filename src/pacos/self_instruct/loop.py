"""The generation loop: batches of prompts in flight concurrently, screened and committed strictly in order.

Requests run concurrently, but each batch's answers are parsed, filtered, novelty-checked and written in batch
order, and batch b's prompts depend only on (seed, b): the same seed and the same teacher answers give the
same output, however the requests interleave, and a resumed run continues exactly where the last left off.
Answers from which nothing was kept are counted in that same order, and too many in a row end the run
(bad_answers.py); each answer's text in the raw log is capped, so a teacher sending garbage cannot grow it
without bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections import Counter
from dataclasses import dataclass

from pacos.data.dedup import RougeDeduper
from pacos.data.rouge_tokenizers import sparse_rouge_warning
from pacos.errors import DataError
from pacos.self_instruct.accounting import ProgressBar, Totals
from pacos.self_instruct.bad_answers import BadAnswerStreak, Problem, answer_problem
from pacos.remote.client import Teacher
from pacos.self_instruct.config import SelfInstructConfig
from pacos.self_instruct.filters import rejection_reason
from pacos.self_instruct.languages import get_language
from pacos.self_instruct.parse import Candidate, parse_answer
from pacos.self_instruct.prompt import build_prompt, load_seed_tasks, sample_examples
from pacos.self_instruct.store import RunStore, raw_entry, record
from pacos.self_instruct.two_stage import two_stage_batch


class Turns:
    """Lets batches pass one point one at a time, in batch order."""

    def __init__(self, first: int):
        self.next = first
        self._changed = asyncio.Condition()

    @contextlib.asynccontextmanager
    async def turn(self, batch: int):
        async with self._changed:
            await self._changed.wait_for(lambda: self.next == batch)
        try:
            yield
        finally:
            async with self._changed:
                self.next = batch + 1
                self._changed.notify_all()

    async def passed(self, batch: int) -> None:
        """Wait until `batch` has had its turn."""
        async with self._changed:
            await self._changed.wait_for(lambda: self.next > batch)


@dataclass
class RunSummary:
    out: str
    log: str
    target: int
    totals: Totals
    cost: float
    stopped: str  # "target" or "max-cost"
    resumed_batches: int = 0
    torn_lines: int = 0
    orphans: int = 0
    seconds: float = 0.0
    language: str = "en"
    prompt: str = ""

    def __str__(self) -> str:
        lines = [] if self.language == "en" else [f"language {self.language} (prompt {self.prompt})"]
        if self.resumed_batches:
            lines.append(f"resumed after {self.resumed_batches} batches"
                         + (f" (dropped {self.torn_lines} torn line(s))" if self.torn_lines else "")
                         + (f" (dropped {self.orphans} uncommitted record(s))" if self.orphans else ""))
        why = "target reached" if self.stopped == "target" else f"stopped at --max-cost (${self.cost:.4f} spent)"
        lines.append(f"kept {self.totals.kept}/{self.target} instructions in {self.out} ({why}, "
                     f"{self.seconds:.1f} s); raw log {self.log}")
        lines.append(self.totals.describe())
        if self.cost:
            lines.append(f"cost ${self.cost:.4f}")
        return "\n".join(lines)


class Generation:
    """One run's shared state: seeds, novelty pool, totals, files, and the teacher."""

    def __init__(self, config: SelfInstructConfig, teacher: Teacher | None = None):
        self.config = config
        self.language = get_language(config.language)
        self.seeds = load_seed_tasks(config.seed_tasks)
        self.store = RunStore(config.out)
        self.resumed = self.store.resume()
        self._check_language()
        pool = [s.instruction for s in self.seeds] + [r["instruction"] for r in self.resumed.records]
        pool += [text for entry in self.resumed.log for text in entry.get("pool_extra", [])]
        self.deduper = RougeDeduper(config.threshold, pool, tokenizer=config.tokenizer)
        warning = sparse_rouge_warning(pool, "seed and kept instructions") if config.tokenizer == "rouge" else None
        if warning:
            print(warning, file=sys.stderr)
        self.machine_instructions = [(r["batch"], r["instruction"]) for r in self.resumed.records]
        self.totals = Totals()
        for entry in self.resumed.log:
            self.totals.add_entry(entry)
        self.teacher = teacher
        self.bad_answers = BadAnswerStreak(config.max_bad_answers)  # counted afresh by each run
        self.stopped: str | None = None
        self.progress: ProgressBar | None = None

    def _check_language(self) -> None:
        """A run resumes in the language it started in: one file, one prompt."""
        started = next((e.get("language", "en") for e in self.resumed.log), self.language.code)
        if started != self.language.code:
            self.store.close()
            raise DataError(f"{self.config.out} was generated with --language {started}: rerun with --language "
                            f"{started} to resume it, or write --language {self.language.code} to another --out")

    @property
    def cost(self) -> float:
        return self.totals.cost(self.config.price_in, self.config.price_out)

    def check_stop(self) -> None:
        if self.totals.kept >= self.config.num_instructions:
            self.stopped = "target"
        elif self.config.max_cost is not None and self.cost >= self.config.max_cost:
            self.stopped = "max-cost"

    async def run(self) -> RunSummary:
        started = time.monotonic()
        cfg = self.config
        self.check_stop()
        own_teacher = self.teacher is None
        try:
            if self.stopped is None:
                self.progress = ProgressBar(cfg.num_instructions, self.totals, cfg.price_in, cfg.price_out,
                                            cfg.progress)
                self.teacher = self.teacher or Teacher(cfg.teacher, seed=cfg.seed)
                await self._run_batches()
        finally:
            if self.progress:
                self.progress.close()
            if own_teacher and self.teacher:
                await self.teacher.close()
            self.store.close()
        return RunSummary(cfg.out, str(self.store.log_path), cfg.num_instructions, self.totals, self.cost,
                          self.stopped or "target", len(self.resumed.log), self.resumed.torn_lines,
                          self.resumed.orphans, time.monotonic() - started, self.language.code,
                          self.language.prompt)

    async def _run_batches(self) -> None:
        run_batch = two_stage_batch if self.config.pipeline == "self-instruct" else alpaca_batch
        next_batch = self.resumed.next_batch
        self.turns = {name: Turns(next_batch) for name in ("screen", "commit")}
        jobs: set[asyncio.Task] = set()
        try:
            while self.stopped is None:
                # Twice the concurrency: batches waiting for their turn must not starve the request slots.
                while len(jobs) < 2 * self.config.teacher.concurrency:
                    jobs.add(asyncio.create_task(run_batch(self, next_batch)))
                    next_batch += 1
                done, jobs = await asyncio.wait(jobs, return_when=asyncio.FIRST_COMPLETED)
                errors = [job.exception() for job in done if not job.cancelled() and job.exception()]
                if errors:
                    raise errors[0]  # a TeacherError ends the run here
        finally:
            for job in jobs:
                job.cancel()
            await asyncio.gather(*jobs, return_exceptions=True)

    def prompts(self, batch: int) -> tuple[list[str], int]:
        """The batch's prompts and the task number each answer starts at."""
        k = self.config.prompt_examples
        examples = [sample_examples(self.seeds, k, self.config.seed, batch, slot)
                    for slot in range(self.config.batch_size)]
        return [build_prompt(e, self.language) for e in examples], min(k, len(self.seeds)) + 1

    def screen(self, candidates: list[Candidate], discards: Counter) -> list:
        """Alpaca's filters, then the novelty check: per candidate, in order, its novelty decision if it is
        kept, else its discard reason (a str, also counted in `discards`)."""
        outcomes: list = [rejection_reason(c, self.language) for c in candidates]
        discards.update(reason for reason in outcomes if reason)
        passed = [i for i, reason in enumerate(outcomes) if not reason]
        for i, decision in zip(passed, self.deduper.add_batch([candidates[i].instruction for i in passed])):
            outcomes[i] = decision if decision.kept else "similar"
            if not decision.kept:
                discards["similar"] += 1
        return outcomes

    def commit(self, batch: int, records: list[dict], entry: dict, problems: list[Problem | None]) -> None:
        """Write a batch (cut at the target), count it and its bad answers, and decide whether to stop."""
        records = records[: max(0, self.config.num_instructions - self.totals.kept)]
        entry.update(batch=batch, kept=len(records), time=round(time.time(), 3))
        self.store.commit(records, entry)
        self.totals.add_entry(entry)
        self.machine_instructions += [(batch, r["instruction"]) for r in records]
        self.progress.update(self.totals)
        self.check_stop()
        self.bad_answers.add(problems)
        error = self.bad_answers.error() if self.stopped is None else None
        if error:
            self.stopped = "bad-answers"  # batches answered already must not commit after this one
            raise error


async def alpaca_batch(gen: Generation, batch: int) -> None:
    """Alpaca's step: prompts of sampled seed tasks -> up to 20 numbered tasks each -> filters -> novelty."""
    prompts, first_number = gen.prompts(batch)
    reply = await gen.teacher.complete(prompts, gen.language.stop_sequences)
    async with gen.turns["screen"].turn(batch):
        if gen.stopped:
            return
        discards, candidates, owners, cuts = Counter(), [], [], []
        for i, answer in enumerate(reply.answers):
            if answer.error:
                discards["unparseable_response"] += 1
                cuts.append(0)
                continue
            parsed = parse_answer(answer.text, first_number, answer.finish_reason)
            discards["malformed"] += parsed.malformed
            discards["truncated"] += parsed.truncated
            candidates += parsed.candidates
            owners += [i] * len(parsed.candidates)
            cuts.append(parsed.truncated)
        outcomes = gen.screen(candidates, discards)
        records = [record(c, o, batch) for c, o in zip(candidates, outcomes) if not isinstance(o, str)]
        problems = [answer_problem(a.error, a.text, cuts[i], [o for o, w in zip(outcomes, owners) if w == i])
                    for i, a in enumerate(reply.answers)]
        gen.commit(batch, records, raw_entry("alpaca", prompts, reply, +discards, language=gen.language.code,
                                             prompt=gen.language.prompt), problems)


async def run_generation(config: SelfInstructConfig, teacher: Teacher | None = None) -> RunSummary:
    return await Generation(config, teacher).run()


def generate(config: SelfInstructConfig) -> RunSummary:
    """Run (or resume) a Self-Instruct generation to `config.num_instructions` kept records."""
    return asyncio.run(run_generation(config))
