"""Settings written once: a dataclass field carries its default, help, choices and bounds; the CLI is generated.

    @dataclass
    class Config:
        data: str = option(help="the data file")                          # required: --data FILE
        batch_size: int = option(4, "per-device batch size", ge=1)       # --batch-size N (default: 4)
        template: str | None = option(None, "prompt template", choices=TEMPLATE_NAMES)
        lora: bool = option(False, "train a LoRA adapter")                # --lora
        progress: bool = option(True, "no progress bar")                  # --no-progress (help says what it does)
        tasks: tuple[str, ...] = option(("a", "b"), "comma-separated tasks")  # --tasks a,b

        def __post_init__(self):
            check_fields(self)  # types, choices and bounds of every field; then cross-field checks

    add_options(parser, Config)        # one flag per field: `--field-name`, typed from the annotation
    config = from_args(Config, args)   # the dataclass from the parsed namespace (its checks run)

The checks run in `__post_init__`, so Python callers get them too: `Config(data="d", batch_size=0)` raises
ConfigError("--batch-size must be an integer >= 1 (got 0)"), the same line `pacos` prints. Values changed by
assignment after construction are not re-checked. Import-light: standard library only.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import math
import os
import types
import typing
from typing import Any

from pacos.errors import PacosError

_KEY = "pacos.options"
MISSING = dataclasses.MISSING


class ConfigError(PacosError):
    """A setting has a value it cannot take; the message names the setting by its CLI flag."""


def option(default: Any = MISSING, help: str = "", *, default_factory: Any = MISSING, choices=None,
           flag: str | None = None, metavar: str | None = None, short: str | None = None,
           ge: float | None = None, gt: float | None = None, le: float | None = None, lt: float | None = None,
           nonempty: bool = False, path: bool = False, required: bool = True, show_default: bool = True,
           split: bool = True):
    """A dataclass field with its CLI flag's settings in the metadata.

    No `default` (and no `default_factory`): a required field, and a required flag unless `required=False`
    (then the flag defaults to None and the dataclass's own check reports it missing). `flag` replaces the
    generated `--field-name` (for a default-True bool, the generated flag is `--no-field-name`); `short`
    adds an alias such as "-n". `choices` are checked by argparse and by `check_fields` (per element for a
    tuple); `ge`/`gt`/`le`/`lt` bound a number, `nonempty` refuses "" and (), `path` lets a `str` field
    also take an os.PathLike (Python callers passing a Path), `split=False` makes each use of a tuple flag
    one item, commas and all (paths). The default is appended to the
    help as "(default: X)" unless the help already mentions a default, or `show_default=False`.
    """
    meta = {"help": help, "choices": tuple(choices) if choices is not None else None, "flag": flag,
            "metavar": metavar, "short": short, "ge": ge, "gt": gt, "le": le, "lt": lt, "nonempty": nonempty,
            "path": path, "required": required, "show_default": show_default, "split": split}
    if default is not MISSING and default_factory is not MISSING:
        raise ValueError("option(): give default or default_factory, not both")
    if default_factory is not MISSING:
        return dataclasses.field(default_factory=default_factory, metadata={_KEY: meta})
    return dataclasses.field(default=default, metadata={_KEY: meta})


def _meta(f: dataclasses.Field) -> dict:
    return f.metadata.get(_KEY) or {}


@functools.cache
def _hints(cls) -> dict:
    return typing.get_type_hints(cls)


def _unwrap(tp) -> tuple[Any, bool]:
    """(the type without None, whether None is allowed): `int | None` -> (int, True)."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], len(args) < len(typing.get_args(tp))
        raise TypeError(f"options: unsupported union {tp!r}")
    return tp, False


def _element(tp):
    """The element type of `tuple[X, ...]`, else None."""
    if typing.get_origin(tp) is tuple:
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return args[0]
        raise TypeError(f"options: only tuple[X, ...] is supported, not {tp!r}")
    return None


def _default(f: dataclasses.Field):
    if f.default is not MISSING:
        return f.default
    if f.default_factory is not MISSING:
        return f.default_factory()
    return MISSING


def flag_of(cls_or_obj, name: str, prefix: str = "") -> str:
    """The CLI flag of field `name` (`--batch-size`; `--no-progress` for a default-True bool)."""
    cls = cls_or_obj if isinstance(cls_or_obj, type) else type(cls_or_obj)
    f = next(f for f in dataclasses.fields(cls) if f.name == name)
    return _flag(f, _unwrap(_hints(cls)[name])[0], prefix)


def _flag(f: dataclasses.Field, base, prefix: str) -> str:
    given = _meta(f).get("flag")
    if given:
        return f"--{prefix}{given[2:]}"
    stem = f.name.replace("_", "-")
    negated = base is bool and _default(f) not in (False, MISSING)  # default True or None: the flag turns it off
    return f"--no-{prefix}{stem}" if negated else f"--{prefix}{stem}"


def _shown(value) -> str:
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


class _ExtendList(argparse.Action):
    """A tuple flag: comma-separated items, and the flag may be repeated; the first use replaces the default,
    later uses add to it."""

    def __call__(self, parser, namespace, values, option_string=None):
        given = getattr(namespace, "_pacos_given", set())
        namespace._pacos_given = given | {self.dest}
        before = getattr(namespace, self.dest) if self.dest in given else ()
        setattr(namespace, self.dest, tuple(before) + tuple(values))


def _parse_list(element, choices, split: bool = True):
    def parse(text: str) -> tuple:
        items = tuple(element(t.strip()) for t in text.split(",") if t.strip()) if split else (element(text),)
        bad = [i for i in items if choices is not None and i not in choices]
        if bad:
            raise argparse.ArgumentTypeError(
                f"invalid choice: {', '.join(map(repr, bad))} (choose from {', '.join(map(str, choices))})")
        return items

    parse.__name__ = f"comma-separated {getattr(element, '__name__', 'value')} list"  # argparse's error names it
    return parse


def add_options(parser, cls, *, exclude=(), prefix: str = "", defaults_override: dict | None = None) -> None:
    """Add one flag per field of dataclass `cls` to `parser` (or an argument group).

    The flag is `--{prefix}{field-name}` (or the field's `flag`), its dest `{prefix}{field_name}` with dashes
    as underscores, so `from_args(cls, args, prefix=...)` finds it. Types come from the annotations: int,
    float, str and `X | None` (default None); bool -> `--x` (store_true), or `--no-x` when its default is
    True or None; `tuple[X, ...]` -> comma-separated values, the flag repeatable. A field whose type is a dataclass adds that
    dataclass's flags (same prefix). `exclude` names fields that get no flag; `defaults_override` changes
    a flag's default (its dataclass default stays). Every field must have help text.
    """
    overrides = defaults_override or {}
    hints = _hints(cls)
    dests = {a.dest for a in parser._actions}
    for f in dataclasses.fields(cls):
        if f.name in exclude or not f.init:
            continue
        base = _unwrap(hints[f.name])[0]
        if dataclasses.is_dataclass(base):
            add_options(parser, base, exclude=exclude, prefix=prefix, defaults_override=overrides)
            continue
        meta = _meta(f)
        if not meta.get("help"):
            raise ValueError(f"options: {cls.__name__}.{f.name} has no help text; declare it with option(...)")
        dest = prefix.replace("-", "_") + f.name
        if dest in dests:
            raise ValueError(f"options: {cls.__name__}.{f.name}: dest {dest!r} is taken; pass a prefix")
        flag = _flag(f, base, prefix)
        default = overrides.get(f.name, _default(f))
        kw: dict[str, Any] = {"dest": dest, "help": meta["help"]}
        if base is bool:
            if f.name in overrides:
                raise ValueError(f"options: {cls.__name__}.{f.name}: a bool flag's default cannot be overridden")
            if default is MISSING or default is False:
                kw.update(action="store_true", default=False)
            else:  # --no-x: True (or None, "decide later") unless given
                kw.update(action="store_const", const=False, default=default)
        else:
            element = _element(base)
            if element is not None:
                kw.update(type=_parse_list(element, meta.get("choices"), meta.get("split", True)), action=_ExtendList)
            else:
                kw["type"] = base
                if meta.get("choices") is not None:
                    kw["choices"] = meta["choices"]
            if meta.get("metavar") or "choices" not in kw:
                kw["metavar"] = meta.get("metavar") or flag[2:].replace("-", "_").upper()
            if default is MISSING:
                kw.update(required=meta.get("required", True), default=None)
            else:
                kw["default"] = default
                if meta.get("show_default", True) and default is not None and "default" not in kw["help"]:
                    kw["help"] += f" (default: {_shown(default)})"
        kw["help"] = kw["help"].replace("%", "%%")
        parser.add_argument(*([meta["short"]] if meta.get("short") else []), flag, **kw)
        dests.add(dest)


def from_args(cls, args: argparse.Namespace, *, prefix: str = "", **overrides):
    """`cls` built from parsed `args` (what `add_options(..., prefix=prefix)` added), then `overrides`.

    A field missing from `args` and not overridden keeps its dataclass default; a nested dataclass field is
    built the same way from the same namespace. Construction runs the dataclass's checks (ConfigError).
    """
    hints = _hints(cls)
    values = {}
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        dest = prefix.replace("-", "_") + f.name
        if f.name in overrides:
            values[f.name] = overrides.pop(f.name)
        elif hasattr(args, dest):
            values[f.name] = getattr(args, dest)
        elif dataclasses.is_dataclass(base := _unwrap(hints[f.name])[0]):
            values[f.name] = from_args(base, args, prefix=prefix)
    if overrides:
        raise TypeError(f"from_args: {cls.__name__} has no field(s) {', '.join(overrides)}")
    return cls(**values)


def check_fields(obj) -> None:
    """Check every field of dataclass `obj` against its annotation and option(): raise ConfigError naming the
    first bad one by its CLI flag, e.g. "--batch-size must be an integer >= 1 (got 0)"."""
    cls = type(obj)
    hints = _hints(cls)
    for f in dataclasses.fields(cls):
        value = getattr(obj, f.name)
        base, optional = _unwrap(hints[f.name])
        if value is None and optional:
            continue
        problem = _problem(value, base, _meta(f))
        if problem:
            name = f.name if dataclasses.is_dataclass(base) else _flag(f, base, "")  # nested settings: no flag
            raise ConfigError(f"{name} must be {problem} (got {value!r})")


def _problem(value, base, meta: dict) -> str | None:
    """What `value` should be, when it is not."""
    if dataclasses.is_dataclass(base):
        return None if isinstance(value, base) else f"a {base.__name__}"
    element = _element(base)
    if element is not None:
        if not isinstance(value, (tuple, list)):
            return f"a list or tuple, each item {_kind(element)}"
        if meta.get("nonempty") and not value:
            return "at least one value"
        for item in value:
            problem = _problem(item, element, {**meta, "nonempty": False})
            if problem:
                return f"a list or tuple, each item {problem}"
        return None
    if base is bool:
        return None if isinstance(value, bool) else "true or false"
    if base is str:
        if meta.get("path") and isinstance(value, os.PathLike):
            return None
        if not isinstance(value, str):
            return "a path" if meta.get("path") else "a string"
        if meta.get("nonempty") and not value:
            return "a non-empty path" if meta.get("path") else "a non-empty string"
    elif base in (int, float):
        if isinstance(value, bool) or not isinstance(value, int if base is int else (int, float)):
            return _kind(base, meta)
        if isinstance(value, float) and not math.isfinite(value):
            return _kind(base, meta, finite=True)
        if any(meta.get(key) is not None and not _COMPARE[key](value, meta[key]) for key, _ in _OPS):
            return _kind(base, meta)
    choices = meta.get("choices")
    if choices is not None and value not in choices:
        return "one of " + ", ".join(map(str, choices))
    return None


_OPS = (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<"))
_COMPARE = {"ge": lambda a, b: a >= b, "gt": lambda a, b: a > b, "le": lambda a, b: a <= b, "lt": lambda a, b: a < b}


def _kind(tp, meta: dict | None = None, finite: bool = False) -> str:
    name = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(tp, repr(tp))
    bounds = [f"{op} {_shown(meta[key])}" for key, op in _OPS if meta and meta.get(key) is not None]
    if tp is float and (finite or not bounds):
        name = "a finite number"
    return name + (" " + " and ".join(bounds) if bounds else "")
