"""`pacos eval answer`: a model's answers to evaluation questions, through the engine or an OpenAI-compatible
endpoint, appended to a JSONL file one question (all its turns) at a time, and resumed by question key.

A question's turn k+1 is asked after the model's own answer to turn k is in (MT-bench): on the engine, the
next turn is submitted as soon as the last one finishes, so questions at different turns share the batch;
on an endpoint, each question is a conversation of chat calls. Decisions are written in docs/eval_answer.md.
"""

from __future__ import annotations

import dataclasses
import datetime
import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import ClassVar

from pacos.errors import PacosError
from pacos.eval.questions import Question, answer_record, load_questions
from pacos.infer.params import SamplingParams
from pacos.options import check_fields, option
from pacos.remote.config import RemoteConfig

# Alpaca's models were trained on 512 tokens in all, and a 2048-token model asked MT-bench's two turns with
# FastChat's 1024 each runs out of context; --max-new-tokens 1024 gives FastChat's setting.
DEFAULT_MAX_NEW_TOKENS = 512
# FastChat fastchat/llm_judge/common.py `temperature_config`; gen_model_answer.py samples any other category at 0.7.
MT_BENCH_TEMPERATURES = {"writing": 0.7, "roleplay": 0.7, "extraction": 0.0, "math": 0.0, "coding": 0.0,
                         "reasoning": 0.0, "stem": 0.1, "humanities": 0.1, "arena-hard-200": 0.0}
MT_BENCH_OTHER_TEMPERATURE = 0.7
# What an endpoint is sent; the other sampling fields are the server's own.
ENDPOINT_SAMPLING = ("temperature", "top_p", "max_new_tokens")
WRITER = "pacos eval answer"


@dataclass
class AnswerConfig:
    """`pacos eval answer`: which questions, where the answers go, and how the run is named and shown."""

    questions: str = option(help="question file: MT-bench/Vicuna (`turns`), Self-Instruct (`instances`), AlpacaEval "
                                 "or instruction records (detected)", nonempty=True, path=True)
    out: str = option(help="answers JSONL, one line per question; rerun the same command to resume", nonempty=True,
                      path=True)
    name: str | None = option(None, "the model name recorded (default: the model's directory or file name, or "
                                    "--api-model)")
    mt_bench_temperatures: bool = option(False, "sample each category at MT-bench's temperature (FastChat's table: "
                                                "writing/roleplay 0.7, stem/humanities 0.1, math/coding/reasoning/"
                                                "extraction 0, others 0.7) instead of --temperature")
    batch_size: int = option(16, "sequences decoded together", ge=1)
    limit: int | None = option(None, "answer only the first N questions", ge=1, metavar="N")
    progress: bool = option(True, "no progress bar (none is drawn when stderr is not a terminal)")

    def __post_init__(self):
        check_fields(self)


@dataclass
class EndpointConfig(RemoteConfig):
    """A model behind an OpenAI-compatible server (chat API), evaluated in place of MODEL."""

    ROLE: ClassVar[str] = "endpoint"

    url: str | None = option(None, "evaluate the model of this OpenAI-compatible server (chat API, key from "
                                   "$OPENAI_API_KEY or --api-key) instead of MODEL", flag="--api-base")
    model: str | None = option(None, "the model's name at --api-base", flag="--api-model")


@dataclass
class AnswerResult:
    questions: int  # in the file (after --limit), repeats left out
    already: int  # answered in --out by an earlier run
    answered: int  # by this run
    repeats: list[str]  # FILE:LINE of questions asked twice in the file (left out)


def question_sampling(params: SamplingParams, question: Question, index: int, mt_bench: bool) -> SamplingParams:
    """The sampling of the question at `index` of the file: MT-bench's temperature for its category when asked,
    and its own seed (seed + index), so a resumed run samples each question as an uninterrupted one would."""
    from pacos.infer.files import record_sampling

    if mt_bench:
        params = replace(params, temperature=MT_BENCH_TEMPERATURES.get(question.category or "",
                                                                       MT_BENCH_OTHER_TEMPERATURE))
    return record_sampling(params, index)


def turn_record(question: Question, answers: list[str]):
    """What the model is asked for turn len(answers) + 1: a single-turn question as an instruction record
    (instruction and input apart, as the Alpaca template wants), a later turn as the conversation so far with
    the model's own answers."""
    from pacos.data.records import Conversation, Example, Message

    if len(question.turns) == 1:
        extra = {"system": question.system} if question.system else {}
        if question.instruction:
            return Example(question.instruction.strip(), question.input.strip(), extra=extra)
        return Example(question.turns[0], extra=extra)
    messages = [Message("system", question.system)] if question.system else []
    for turn, answer in zip(question.turns, answers):
        messages += [Message("user", turn), Message("assistant", answer)]
    return Conversation(messages + [Message("user", question.turns[len(answers)])])


def question_kind(questions: list[Question]) -> str:
    """The record kind the engine's template is chosen for: "conversation" when a question has several turns
    or a system prompt, else "instruction" (the Alpaca template)."""
    return "conversation" if any(len(q.turns) > 1 or q.system for q in questions) else "instruction"


def engine_answers(engine, todo: list[tuple[int, Question]], params_for: Callable[[int, Question], SamplingParams],
                   window: int | None = None) -> Iterator[tuple[int, Question, list]]:
    """(index, question, its Completions, one per turn) of each question of `todo` ((index, question) pairs) as its
    last turn finishes, in the order they finish. At most `window` questions are in flight; a finished turn's
    follow-up is submitted at once."""
    from pacos.infer.engine import InFlight, default_window
    from pacos.infer.files import check_fits

    window = window or default_window(engine)
    flight = InFlight(engine, template=engine.template)
    source = iter(todo)
    asked: dict[int, tuple[Question, SamplingParams, list]] = {}

    def ask(index: int) -> None:
        question, params, done = asked[index]
        ids = engine.encode(turn_record(question, [c.text for c in done]))
        where = question.where + (f" turn {len(done) + 1}" if len(question.turns) > 1 else "")
        flight.submit(index, check_fits(engine, ids, params, where), params)

    def admit() -> None:
        for index, question in itertools.islice(source, window - len(flight)):
            asked[index] = (question, params_for(index, question), [])
            ask(index)

    try:
        admit()
        while len(flight):
            index, done = flight.next_done()
            question, _, turns = asked[index]
            if done.finish_reason == "error":
                raise PacosError(f"{question.where}: {done.error}")
            turns.append(done)
            if len(turns) < len(question.turns):
                ask(index)
                continue
            del asked[index]
            admit()
            yield index, question, turns
    finally:
        flight.cancel()


class AnswersFile:
    """The --out file: the answers it already holds, checked against this run, and one line appended per
    question (flushed, so a kill leaves whole lines and perhaps one torn last line, dropped on resume)."""

    def __init__(self, path, questions_file: str, questions: list[Question]):
        self.path, self.questions_file = Path(path), questions_file
        self._by_key = {q.key: q for q in questions}
        self._file = None

    def answered(self, expected: Callable[[Question], dict]) -> set[str]:
        """Keys of the questions already answered; a record of another model, other settings or another question
        file is an error (the file is not an earlier run of this command)."""
        from pacos.infer.files import read_output_lines

        keys = set()
        for n, obj in enumerate(read_output_lines(self.path, WRITER), 1):
            where = f"{self.path}:{n}"
            question = self._by_key.get(obj.get("key"))
            if question is None:
                raise PacosError(f"{where}: answers a question that is not in {self.questions_file}; choose "
                                 "another --out")
            for name, value in expected(question).items():
                if obj.get(name) != value:
                    raise PacosError(f"{where}: {_differs(name, obj.get(name), value)}; these are not this run's "
                                     "answers: choose another --out (or --name)")
            answers = obj.get("answers")
            if not isinstance(answers, list) or len(answers) != len(question.turns):
                raise PacosError(f"{where}: `answers` must hold one answer per turn; delete the line or choose "
                                 "another --out")
            if question.key in keys:
                raise PacosError(f"{where}: a second answer to the question at {question.where}; choose another --out")
            keys.add(question.key)
        return keys

    def write(self, question: Question, answers: list[str], finish_reasons: list[str | None], meta: dict) -> None:
        import json

        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "a", encoding="utf-8", newline="\n")
        created = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        record = answer_record(question, answers, **meta, finish_reasons=finish_reasons, created_at=created)
        self._file.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


def _differs(name: str, found, wanted) -> str:
    if name == "sampling" and isinstance(found, dict) and isinstance(wanted, dict):
        keys = [k for k in wanted if found.get(k) != wanted[k]] + [k for k in found if k not in wanted]
        return "answered with " + ", ".join(f"{k} {found.get(k)!r} (now {wanted.get(k)!r})" for k in keys)
    return f"answered with {name} {found!r}, this run's is {wanted!r}"


def model_name(model_ref: str) -> str:
    """The default name of a model: its directory or file name, or the hub id as given."""
    path = Path(model_ref)
    return path.resolve().name if path.exists() else model_ref


def _where_is(model_ref: str) -> str:
    """A local model's absolute path (what the record is provenance for), else the hub id as given."""
    path = Path(model_ref)
    return str(path.resolve()) if path.exists() else model_ref


def answer_questions(model_ref: str | None, config: AnswerConfig, params: SamplingParams, *,
                     template: str | None = None, threads: int | None = None,
                     endpoint: EndpointConfig | None = None, engine=None) -> AnswerResult:
    """Answer every question of `config.questions` not yet in `config.out` with the model (`model_ref`, an
    already loaded `engine`, or `endpoint` when its url is set), appending one record per question."""
    params.check()
    remote = endpoint is not None and endpoint.url is not None
    model_ref = model_ref or (engine.model_ref if engine is not None else None)
    _check_model_choice(model_ref, remote, endpoint, template, threads, params)
    fmt, questions, repeats = load_questions(config.questions)
    if not questions:
        raise PacosError(f"{config.questions}: no questions")
    asked = questions[: config.limit] if config.limit else questions
    name = config.name or (endpoint.model if remote else model_name(model_ref))
    indexed = list(enumerate(questions))

    def sampling_of(index: int, question: Question) -> SamplingParams:
        return question_sampling(params, question, index, config.mt_bench_temperatures)

    def recorded(index: int, question: Question) -> dict:
        values = dataclasses.asdict(sampling_of(index, question))
        return {k: values[k] for k in ENDPOINT_SAMPLING} if remote else values

    index_of = {q.key: i for i, q in indexed}
    out = AnswersFile(config.out, str(config.questions), questions)
    done = out.answered(lambda q: {"model": name, "sampling": recorded(index_of[q.key], q)})  # before any loading
    todo = [(i, q) for i, q in indexed[: len(asked)] if q.key not in done]
    result = AnswerResult(len(asked), len(asked) - len(todo), 0, repeats)
    if not todo:
        return result
    own = engine is None and not remote
    if own:
        from pacos.infer.backends import load_engine

        engine = load_engine(model_ref, template=template, kind=question_kind(questions), max_batch=config.batch_size,
                             max_waiting=2 * config.batch_size, threads=threads)
    try:
        if remote:
            meta = {"model": name, "model_ref": endpoint.url, "engine": "api", "revision": None, "template": None}
        else:
            meta = {"model": name, "model_ref": _where_is(model_ref), "engine": engine.name,
                    "revision": engine.revision or None, "template": engine.template.name}
            out.answered(lambda q: {"template": meta["template"]})
        _answer(engine, endpoint if remote else None, todo, sampling_of,
                lambda i, q: {**meta, "sampling": recorded(i, q)}, out, result, config.progress)
    finally:
        out.close()
        if own:
            engine.close()
    return result


def _answer(engine, endpoint, todo, sampling_of, meta_of, out: AnswersFile, result: AnswerResult,
            progress: bool) -> None:
    """Answers from the engine (or the endpoint, when given) written as each question's last turn is in."""
    from pacos.infer.files import progress_bar

    with progress_bar(result.questions, result.already, progress and _stderr_is_terminal(), "answer") as bar:
        def write(index: int, question: Question, answers: list[str], finish_reasons: list) -> None:
            out.write(question, answers, finish_reasons, meta_of(index, question))
            result.answered += 1
            bar.update(1)

        if endpoint is not None:
            import asyncio

            from pacos.eval.answer_endpoint import endpoint_answers

            asyncio.run(endpoint_answers(endpoint, todo, sampling_of, write))
            return
        for index, question, turns in engine_answers(engine, todo, sampling_of):
            write(index, question, [c.text for c in turns], [c.finish_reason for c in turns])


def _check_model_choice(model_ref, remote: bool, endpoint, template, threads, params: SamplingParams) -> None:
    """MODEL or --api-base + --api-model, and no flag that the chosen one would ignore."""
    if not remote:
        if not model_ref:
            raise PacosError("give MODEL (a model directory, adapter, hub id or .gguf file) or --api-base URL "
                             "--api-model NAME")
        if endpoint is not None and endpoint.model:
            raise PacosError("--api-model names the model at --api-base; give --api-base too, or leave it out")
        return
    if model_ref:
        raise PacosError(f"give MODEL ({model_ref}) or --api-base, not both")
    if not endpoint.model:
        raise PacosError("--api-base needs --api-model NAME (the model's name at that server)")
    ignored = [flag for flag, given in (("--template", template is not None), ("--threads", threads is not None))
               if given]
    defaults = SamplingParams()
    ignored += ["--" + f.name.replace("_", "-") for f in dataclasses.fields(SamplingParams)
                if f.name not in ENDPOINT_SAMPLING and getattr(params, f.name) != getattr(defaults, f.name)]
    if ignored:
        raise PacosError(f"{', '.join(ignored)}: not sent to an endpoint (it prompts and samples with its own "
                         "settings beyond --temperature, --top-p and --max-new-tokens); leave it out")


def _stderr_is_terminal() -> bool:
    import sys

    return sys.stderr.isatty()
