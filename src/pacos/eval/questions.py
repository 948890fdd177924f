"""Evaluation questions and answers files: the formats of the field, detected, read into one shape.

Question files (`load_questions`), detected per file from the first record's fields:
- `mt-bench`: Vicuna / MT-bench (`question_id`, `category`, `turns`, optional `reference` answers per turn);
- `self-instruct`: Self-Instruct's user-oriented set (`id`, `motivation_app`, `instruction`, `instances`):
  one question per instance, its `output` the human reference;
- `self-instruct-predictions`: Self-Instruct's model predictions (`instruction`, `input`, `response`,
  `target`): `response` is that model's answer, `target` the reference;
- `alpaca-eval`: AlpacaEval (`instruction`, optional `output` + `generator`, `dataset`): `output` is the
  `generator`'s answer (the baseline);
- `instruction`: plain instruction records (`instruction`, optional `input`, `output`): `output` is the reference.

Every question has a `key`, a hash of its text (turns, system prompt), which is what answers, baselines and
judgements are matched by: the same question in two files (the 252 user-oriented instructions and
text-davinci-003's predictions for them, which carry no id) has the same key whatever its id or order.

Answers files (`load_answers`) are what `pacos eval answer` writes (JSONL, one record per question and model:
`key`, `question_id`, `category`, `turns`, `answers` one per turn, `model`, ...), or any question file above
that carries answers (`alpaca-eval` with `output`, `self-instruct-predictions`), so a published baseline is
used as it was released.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

from pacos.data.raw_files import Problem, read_raw
from pacos.errors import DataError

QUESTION_FORMATS = ("mt-bench", "self-instruct", "self-instruct-predictions", "alpaca-eval", "instruction")
ANSWERS_FORMAT = "pacos-answers"
ANSWERS_FORMAT_FIELDS = {"key", "turns", "answers", "model"}


@dataclass(frozen=True)
class Question:
    """One evaluation question: the user turns (turn 2 is asked after the model's own answer to turn 1)."""

    key: str  # hash of the text: what answers and judgements are matched by
    question_id: str  # the file's id (or the key when the file has none)
    turns: tuple[str, ...]
    category: str | None = None
    instruction: str = ""  # single-turn instruction records keep instruction and input apart (Alpaca template)
    input: str = ""
    system: str | None = None
    reference: tuple[str, ...] | None = None  # reference answers, one per turn (or one for the last turn)
    where: str = ""  # FILE:LINE of the record, for messages


@dataclass
class AnswerSet:
    """One model's answers to one question."""

    question: Question
    answers: list[str]  # one per turn
    model: str
    meta: dict = field(default_factory=dict)  # template, sampling, model_ref, revision... as recorded


def question_key(turns, system: str | None = None) -> str:
    """Leading and trailing whitespace does not count (published files differ in it: Self-Instruct's
    predictions end 18 of the 252 instructions with a newline its question file does not have)."""
    canonical = json.dumps([(system or "").strip(), [t.strip() for t in turns]], ensure_ascii=False,
                           separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def instruction_question(instruction: str, input_: str = "", *, question_id=None, category=None, reference=None,
                         where: str = "") -> Question:
    text = f"{instruction.strip()}\n\n{input_.strip()}" if input_.strip() else instruction.strip()
    key = question_key([text])
    return Question(key, str(question_id) if question_id is not None else key, (text,), category, instruction,
                    input_, None, (reference,) if reference else None, where)


def detect_question_format(obj: dict) -> str:
    if ANSWERS_FORMAT_FIELDS <= obj.keys():
        return ANSWERS_FORMAT
    if "turns" in obj:
        return "mt-bench"
    if "instances" in obj and "instruction" in obj:
        return "self-instruct"
    if "response" in obj and "instruction" in obj:
        return "self-instruct-predictions"
    if "instruction" in obj and ("generator" in obj or "dataset" in obj):
        return "alpaca-eval"
    if "instruction" in obj:
        return "instruction"
    raise ValueError("not a question record: expected `turns` (MT-bench/Vicuna), `instruction` + `instances` "
                     "(Self-Instruct), or `instruction` (AlpacaEval, Alpaca)")



def _text(obj: dict, name: str, where: str, required: bool = True) -> str:
    value = obj.get(name, "")
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value.strip()):
        raise DataError(f"{where}: `{name}` must be a non-empty string" if required else
                        f"{where}: `{name}` must be a string")
    return value


def _strings(obj: dict, name: str, where: str) -> tuple[str, ...]:
    value = obj.get(name)
    if not isinstance(value, list) or not value or not all(isinstance(t, str) and t.strip() for t in value):
        raise DataError(f"{where}: `{name}` must be a non-empty list of non-empty strings")
    return tuple(value)


def _references(obj: dict, where: str) -> tuple[str, ...] | None:
    """MT-bench's reference answers: a string per turn, some empty (question 103 has none for its turn 2)."""
    value = obj.get("reference")
    if value in (None, []):
        return None
    if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
        raise DataError(f"{where}: `reference` must be a list of strings, one per turn")
    return tuple(value) if any(t.strip() for t in value) else None


def _category(obj: dict, *names: str) -> str | None:
    for name in names:
        if isinstance(obj.get(name), str) and obj[name]:
            return obj[name]
    return None


def _records(path) -> tuple[str, list[tuple[str, dict]]]:
    """(format, [(where, object)]) of a file; every record must be an object of the first one's format."""
    raw = read_raw(path)
    out, fmt = [], None
    for entry in raw.entries:
        if entry.error:
            raise DataError(str(Problem(entry.where, entry.error)))
        if not isinstance(entry.obj, dict):
            raise DataError(f"{entry.where}: expected a JSON object, got {type(entry.obj).__name__}")
        try:
            kind = detect_question_format(entry.obj)
        except ValueError as e:
            raise DataError(f"{entry.where}: {e}") from None
        if fmt is None:
            fmt = kind
        elif kind != fmt and not (fmt == "instruction" and kind == "alpaca-eval"):
            raise DataError(f"{entry.where}: a {kind} record in a {fmt} file (detected from its first record); "
                            "keep one format per file")
        out.append((entry.where, entry.obj))
    return fmt, out


def _questions_of(fmt: str, where: str, obj: dict) -> list[tuple[Question, str | None, str | None]]:
    """The questions one record holds, each with the answer it carries and that answer's model, if any."""
    if fmt in ("mt-bench", ANSWERS_FORMAT):
        turns = _strings(obj, "turns", where)
        system = obj.get("system") if isinstance(obj.get("system"), str) and obj.get("system") else None
        reference = _references(obj, where)
        qid = obj.get("question_id")
        key = question_key(turns, system)
        if fmt == ANSWERS_FORMAT and obj.get("key") != key:
            raise DataError(f"{where}: `key` does not match the question's text (edited by hand?); "
                            "answer the questions again with `pacos eval answer`")
        instruction = obj.get("instruction") if isinstance(obj.get("instruction"), str) else ""
        input_ = obj.get("input") if isinstance(obj.get("input"), str) else ""
        q = Question(key, str(qid) if qid is not None else key, turns, _category(obj, "category"),
                     instruction or (turns[0] if len(turns) == 1 else ""), input_, system, reference, where)
        return [(q, None, None)]
    if fmt == "self-instruct":
        instruction = _text(obj, "instruction", where)
        instances = obj.get("instances")
        if not isinstance(instances, list) or not instances or not all(isinstance(i, dict) for i in instances):
            raise DataError(f"{where}: `instances` must be a non-empty list of {{input, output}} objects")
        qid = obj.get("id")
        out = []
        for n, inst in enumerate(instances):
            input_ = _text(inst, "input", f"{where} instance {n}", required=False)
            output = _text(inst, "output", f"{where} instance {n}", required=False)
            ident = None if qid is None else (str(qid) if len(instances) == 1 else f"{qid}#{n}")
            out.append((instruction_question(instruction, input_, question_id=ident,
                                             category=_category(obj, "motivation_app", "category"),
                                             reference=output or None, where=where), None, None))
        return out
    instruction = _text(obj, "instruction", where)
    input_ = _text(obj, "input", where, required=False)
    if fmt == "self-instruct-predictions":
        answer = _text(obj, "response", where, required=False).strip()
        q = instruction_question(instruction, input_, question_id=obj.get("id"),
                                 category=_category(obj, "motivation_app", "category"),
                                 reference=_text(obj, "target", where, required=False) or None, where=where)
        return [(q, answer, None)]
    output = _text(obj, "output", where, required=False)
    if fmt == "alpaca-eval":
        q = instruction_question(instruction, input_, question_id=obj.get("id"),
                                 category=_category(obj, "dataset", "category"), where=where)
        generator = obj.get("generator") if isinstance(obj.get("generator"), str) else None
        return [(q, output or None, generator)]
    q = instruction_question(instruction, input_, question_id=obj.get("id"), category=_category(obj, "category"),
                             reference=output or None, where=where)
    return [(q, None, None)]


def load_questions(path) -> tuple[str, list[Question], list[str]]:
    """(detected format, questions, repeats) of a question file: a question asked again (same text) is left
    out, its place listed in `repeats` (for a warning), since answers and verdicts are matched by the text."""
    fmt, records = _records(path)
    questions, seen, repeats = [], set(), []
    for where, obj in records:
        for q, _, _ in _questions_of(fmt, where, obj):
            if q.key in seen:
                repeats.append(where)
                continue
            seen.add(q.key)
            questions.append(q)
    return fmt, questions, repeats


def load_answers(path, model: str | None = None) -> tuple[str, list[AnswerSet]]:
    """(format, answers) of an answers file: `pacos eval answer` output, or a question file with answers in it
    (AlpacaEval `output`, Self-Instruct `response`). `model` names the answers when the file does not (default:
    AlpacaEval's `generator`, else the file's name)."""
    from pathlib import Path

    fmt, records = _records(path)
    if fmt not in (ANSWERS_FORMAT, "alpaca-eval", "self-instruct-predictions", "instruction"):
        raise DataError(f"{path}: a {fmt} file holds questions, not answers; answer them with "
                        f"`pacos eval answer MODEL --questions {path} --out answers.jsonl`")
    out, seen = [], {}
    for where, obj in records:
        for q, answer, generator in _questions_of(fmt, where, obj):
            if fmt == ANSWERS_FORMAT:
                answers = list(_strings_or_empty(obj, "answers", where, len(q.turns)))
                name = model or obj.get("model")
                meta = {k: v for k, v in obj.items() if k not in ("key", "turns", "answers", "question_id",
                                                                   "category", "reference", "system")}
            else:
                if fmt == "instruction":
                    answer = q.reference[0] if q.reference else None
                    q = Question(q.key, q.question_id, q.turns, q.category, q.instruction, q.input, q.system, None,
                                 q.where)
                if answer is None:
                    raise DataError(f"{where}: no answer in this record (`output`/`response` is empty)")
                answers, name, meta = [answer], model or generator or Path(path).stem, {}
            if not isinstance(name, str) or not name:
                raise DataError(f"{where}: `model` must be a non-empty string")
            if (q.key, name) in seen:
                raise DataError(f"{where}: a second answer of {name} to the question at {seen[q.key, name]}")
            seen[q.key, name] = where
            out.append(AnswerSet(q, answers, name, meta))
    return fmt, out


def _strings_or_empty(obj: dict, name: str, where: str, turns: int) -> list[str]:
    """Answers may be empty strings (a model can say nothing), but there is one per turn."""
    value = obj.get(name)
    if not isinstance(value, list) or not all(isinstance(t, str) for t in value) or len(value) != turns:
        raise DataError(f"{where}: `{name}` must be a list of {turns} string(s), one per turn")
    return value


def answer_record(question: Question, answers: list[str], model: str, **meta) -> dict:
    """The JSON record `pacos eval answer` writes for one question (read back by `load_answers`)."""
    record = {"key": question.key, "question_id": question.question_id, "category": question.category,
              "turns": list(question.turns), "answers": list(answers), "model": model}
    if question.system:
        record["system"] = question.system
    if question.instruction:
        record["instruction"], record["input"] = question.instruction, question.input
    if question.reference:
        record["reference"] = list(question.reference)
    return {**record, **meta}
