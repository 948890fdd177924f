"""What `pacos eval report --tasks/--perplexity` adds: exact-match accuracy and perplexity results, checked.

The inputs are the JSON that `pacos eval tasks MODEL --data FILE --json` and `pacos perplexity MODEL --data FILE
--json` print (saved with `> FILE`); each one is given as `[NAME=]FILE`, NAME being how the report calls the
model (default: the perplexity result's own `model`, or the tasks file's stem). Accuracy gets a 95% Wilson
score interval (scipy's `binomtest`), the binomial interval that stays inside 0..1 at small n and at 0% or
100%, where a bootstrap over records would collapse to a point.
"""

from __future__ import annotations

import math
from pathlib import Path

from pacos.errors import DataError

TASKS_HINT = "expected the output of `pacos eval tasks MODEL --data FILE --json`"
PERPLEXITY_HINT = "expected the output of `pacos perplexity MODEL --data FILE --json`"
MAX_BYTES = 50 * 2**20  # a results file is a few KB; this bounds what a wrong path makes us read


def split_spec(spec: str) -> tuple[str | None, str]:
    """`NAME=FILE` into (NAME, FILE); a plain FILE (or one whose `=` is inside a directory name) has no name."""
    name, sep, path = spec.partition("=")
    if sep and name and "/" not in name and path:
        return name, path
    return None, spec


def _load(path: str, flag: str, hint: str) -> dict:
    from pacos.data import strict_json

    p = Path(path)
    try:
        if p.stat().st_size > MAX_BYTES:
            raise DataError(f"{path}: {p.stat().st_size} bytes is too big for {flag} ({hint})")
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"{flag} {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{flag} {path}: cannot read it ({getattr(e, 'strerror', None) or e})") from None
    try:
        obj = strict_json.loads(text)
    except strict_json.JSONInputError as e:
        raise DataError(f"{path}:{e.lineno or 1}: not JSON: {e.reason} ({hint})") from None
    if not isinstance(obj, dict):
        raise DataError(f"{path}: a JSON object is needed, not {type(obj).__name__} ({hint})")
    return obj


def _field(obj: dict, name: str, path: str, hint: str, kind=(int, float), *, low=None, high=None,
           required: bool = True):
    value = obj.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, kind) or isinstance(value, bool):
        raise DataError(f"{path}: `{name}` is missing or not {'a number' if kind != str else 'text'} ({hint})")
    if kind != str and (not math.isfinite(value) or (low is not None and value < low)
                        or (high is not None and value > high)):
        bounds = f" in {low}..{high}" if high is not None else f" >= {low}"
        raise DataError(f"{path}: `{name}` must be a number{bounds} (got {value!r})")
    return value


def _accuracy(correct: int, n: int, path: str, where: str) -> dict:
    from scipy.stats import binomtest

    if correct > n:
        raise DataError(f"{path}: {where}`correct` ({correct}) is more than `n` ({n})")
    if n == 0:
        return {"n": 0, "correct": 0, "accuracy": {"value": 0.0, "low": 0.0, "high": 1.0, "n": 0}}
    ci = binomtest(correct, n).proportion_ci(confidence_level=0.95, method="wilson")
    return {"n": n, "correct": correct,
            "accuracy": {"value": correct / n, "low": float(ci.low), "high": float(ci.high), "n": n}}


def read_tasks(specs) -> list[dict]:
    """Each `[NAME=]FILE` of `pacos eval tasks --json` output as {model, file, n, correct, accuracy, per_task}."""
    out = []
    for spec in specs:
        name, path = split_spec(spec)
        obj = _load(path, "--tasks", TASKS_HINT)
        n = _field(obj, "n", path, TASKS_HINT, int, low=0)
        correct = _field(obj, "correct", path, TASKS_HINT, int, low=0)
        per_task = obj.get("per_task", {})
        if not isinstance(per_task, dict):
            raise DataError(f"{path}: `per_task` must be an object of task: {{n, correct}} ({TASKS_HINT})")
        tasks = []
        for task, counts in sorted(per_task.items()):
            if not isinstance(counts, dict):
                raise DataError(f"{path}: per_task `{task}` must be an object with `n` and `correct`")
            tasks.append({"task": task, **_accuracy(_field(counts, "correct", path, TASKS_HINT, int, low=0),
                                                    _field(counts, "n", path, TASKS_HINT, int, low=0), path,
                                                    f"per_task `{task}`: ")})
        if tasks and sum(t["n"] for t in tasks) != n:
            raise DataError(f"{path}: the per_task counts add up to {sum(t['n'] for t in tasks)} records, not "
                            f"`n` = {n}")
        out.append({"model": name or Path(path).stem, "file": path, **_accuracy(correct, n, path, ""),
                    "per_task": tasks})
    _unique(out, "--tasks")
    return out


def read_perplexities(specs) -> list[dict]:
    """Each `[NAME=]FILE` of `pacos perplexity --json` output, its figures checked."""
    out = []
    for spec in specs:
        name, path = split_spec(spec)
        obj = _load(path, "--perplexity", PERPLEXITY_HINT)
        row = {"model": name or _field(obj, "model", path, PERPLEXITY_HINT, str), "file": path,
               "data": _field(obj, "data", path, PERPLEXITY_HINT, str),
               "tokens": _field(obj, "tokens", path, PERPLEXITY_HINT, int, low=1),
               "perplexity": _field(obj, "perplexity", path, PERPLEXITY_HINT, low=1),
               "ctx": _field(obj, "ctx", path, PERPLEXITY_HINT, int, low=1, required=False),
               "reference": _field(obj, "reference", path, PERPLEXITY_HINT, str, required=False)}
        if row["reference"] is not None:
            row.update(kl_divergence=_field(obj, "kl_divergence", path, PERPLEXITY_HINT, low=0),
                       top1_agreement=_field(obj, "top1_agreement", path, PERPLEXITY_HINT, low=0, high=1),
                       reference_perplexity=_field(obj, "reference_perplexity", path, PERPLEXITY_HINT, low=1))
        out.append(row)
    _unique(out, "--perplexity")
    return out


def _unique(rows: list[dict], flag: str) -> None:
    seen: dict[str, str] = {}
    for r in rows:
        if r["model"] in seen:
            raise DataError(f"{flag}: {seen[r['model']]} and {r['file']} are both named {r['model']!r}; name them "
                            f"with NAME=FILE")
        seen[r["model"]] = r["file"]


def extras_caveats(tasks: list[dict], perplexities: list[dict]) -> list[str]:
    """What a reader must know to compare these rows with each other."""
    caveats = []
    datas = {p["data"] for p in perplexities}
    if len(datas) > 1:
        caveats.append(f"the perplexities were measured on different data ({', '.join(sorted(datas))}); only rows "
                       "with the same data compare")
    sizes = {t["n"] for t in tasks}
    if len(sizes) > 1:
        caveats.append(f"the task accuracies count different numbers of records ({', '.join(map(str, sorted(sizes)))})"
                       "; check they come from the same --data file")
    return caveats
