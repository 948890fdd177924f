"""pacos.options: flags generated from dataclass fields, their defaults and types, and checks that reach
Python callers; and every stage's config has a flag (with help) per field in the real `pacos` parser."""

from __future__ import annotations

import argparse
import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

import pytest

from pacos.cli import build_parser, main
from pacos.data.formats import FORMATS, WRITABLE_FORMATS
from pacos.data.quality_filter import FilterConfig
from pacos.data.quality_score import ScoreConfig
from pacos.demo import DemoConfig
from pacos.errors import PacosError
from pacos.eval.answer import AnswerConfig, EndpointConfig
from pacos.eval.judge_config import JudgeConfig, JudgeRunConfig
from pacos.eval.report import ReportConfig
from pacos.infer.config import (
    EngineOptions,
    EvalTasksConfig,
    InferConfig,
    PromptOptions,
)
from pacos.infer.params import SamplingParams
from pacos.models.presets import PRESET_NAMES, PRESETS
from pacos.options import (
    ConfigError,
    add_options,
    check_fields,
    flag_of,
    from_args,
    option,
)
from pacos.prompting.templates import TEMPLATE_NAMES
from pacos.remote.client import TeacherConfig
from pacos.remote.spend import Prices
from pacos.self_instruct.config import SelfInstructConfig
from pacos.serve.config import ServeConfig
from pacos.train.config import TrainConfig
from pacos.train.dry_run import PlanOptions


@dataclass
class Inner:
    depth: int = option(2, "how deep", ge=0)

    def __post_init__(self):
        check_fields(self)


@dataclass
class Toy:
    name: str = option(help="a required name", nonempty=True)
    batch_size: int = option(4, "per-device batch size", ge=1, short="-b")
    lr: float = option(0.5, "learning rate", gt=0, lt=1)
    grad_accum: int | None = option(None, "steps to accumulate (default: computed)", ge=1)
    mode: str = option("fast", "how to run", choices=("fast", "slow"))
    lora: bool = option(False, "train an adapter")
    progress: bool = option(True, "no progress bar")
    color: bool | None = option(None, "no colours (unset: only on a terminal)")
    tasks: tuple[str, ...] = option(("a", "b"), "comma-separated tasks", choices=("a", "b", "c"), nonempty=True)
    sizes: tuple[int, ...] = option((1, 2), "comma-separated sizes")
    share: float = option(0.1, "100% is all of it")
    inner: Inner = option(default_factory=Inner, help="nested settings")  # noqa: RUF009

    def __post_init__(self):
        check_fields(self)


def toy_parser(**kw) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="toy")
    add_options(parser, Toy, **kw)
    return parser


def actions(parser) -> dict[str, argparse.Action]:
    return {s: a for a in parser._actions for s in a.option_strings}


def test_one_flag_per_field_named_from_the_field():
    flags = actions(toy_parser())
    assert {"--name", "--batch-size", "-b", "--lr", "--grad-accum", "--mode", "--lora", "--no-progress",
            "--no-color", "--tasks", "--sizes", "--share", "--depth"} <= set(flags)
    assert "--progress" not in flags and "--color" not in flags  # a default-True/None bool only turns off
    assert flags["--name"].required and not flags["--batch-size"].required
    assert flags["-b"] is flags["--batch-size"] and flags["--batch-size"].dest == "batch_size"


def test_types_come_from_the_annotations():
    args = toy_parser().parse_args(["--name", "n", "-b", "3", "--lr", "0.25", "--grad-accum", "2",
                                    "--sizes", "4, 5,", "--tasks", "c,,a", "--depth", "7"])
    assert (args.batch_size, args.lr, args.grad_accum) == (3, 0.25, 2)
    assert type(args.batch_size) is int and type(args.lr) is float
    assert args.sizes == (4, 5) and args.tasks == ("c", "a") and args.depth == 7


@pytest.mark.parametrize("argv,error", [(["--batch-size", "x"], "argument -b/--batch-size: invalid int value"),
                                        (["--lr", "half"], "argument --lr: invalid float value"),
                                        (["--sizes", "1,x"], "argument --sizes: invalid comma-separated int list")])
def test_unparseable_values_are_argparse_errors(argv, error, capsys):
    with pytest.raises(SystemExit) as e:
        toy_parser().parse_args(["--name", "n", *argv])
    assert e.value.code == 2 and error in capsys.readouterr().err


def test_bools_store_true_or_turn_off():
    parse = toy_parser().parse_args
    default = parse(["--name", "n"])
    assert (default.lora, default.progress, default.color) == (False, True, None)
    given = parse(["--name", "n", "--lora", "--no-progress", "--no-color"])
    assert (given.lora, given.progress, given.color) == (True, False, False)


@pytest.mark.parametrize("argv,bad", [(["--mode", "medium"], "--mode"), (["--tasks", "a,z"], "--tasks")])
def test_choices_are_refused_with_argparse_error(argv, bad, capsys):
    with pytest.raises(SystemExit) as e:
        toy_parser().parse_args(["--name", "n", *argv])
    err = capsys.readouterr().err
    assert e.value.code == 2 and f"argument {bad}: invalid choice" in err


def test_parser_defaults_are_the_dataclass_defaults():
    args = toy_parser().parse_args(["--name", "n"])
    built = from_args(Toy, args)
    assert built == Toy(name="n")
    for f in dataclasses.fields(Toy):
        if f.name != "inner":
            assert getattr(args, f.name) == getattr(Toy(name="n"), f.name), f.name


def test_from_args_round_trip_and_overrides():
    original = Toy(name="x", batch_size=9, lr=0.75, grad_accum=3, mode="slow", lora=True, progress=False,
                   color=False, tasks=("c",), sizes=(8,), share=2.5, inner=Inner(depth=5))
    argv = ["--name", "x", "--batch-size", "9", "--lr", "0.75", "--grad-accum", "3", "--mode", "slow", "--lora",
            "--no-progress", "--no-color", "--tasks", "c", "--sizes", "8", "--share", "2.5", "--depth", "5"]
    args = toy_parser().parse_args(argv)
    assert from_args(Toy, args) == original
    assert from_args(Toy, args, batch_size=1).batch_size == 1
    with pytest.raises(TypeError, match="no_such"):
        from_args(Toy, args, no_such=1)


def test_help_shows_each_flag_with_its_help_and_default():
    text = toy_parser().format_help()  # also: a "%" in help text must not break argparse's formatting
    assert "per-device batch size (default: 4)" in text
    assert "comma-separated tasks (default: a,b)" in text
    assert "(default: computed)" in text and "(default: None)" not in text  # no second default when described
    assert "100% is all of it (default: 0.1)" in text


def test_prefix_and_defaults_override():
    parser = argparse.ArgumentParser()
    add_options(parser, Toy, prefix="toy-", defaults_override={"batch_size": 16}, exclude=("inner",))
    flags = actions(parser)
    assert "--toy-batch-size" in flags and "--no-toy-progress" in flags and "--depth" not in flags
    args = parser.parse_args(["--toy-name", "n"])
    assert args.toy_batch_size == 16 and Toy(name="n").batch_size == 4
    assert from_args(Toy, args, prefix="toy-") == Toy(name="n", batch_size=16)


def test_a_field_without_help_or_a_taken_dest_is_a_programming_error():
    @dataclass
    class NoHelp:
        x: int = 3

    with pytest.raises(ValueError, match="NoHelp.x has no help"):
        add_options(argparse.ArgumentParser(), NoHelp)
    parser = toy_parser()
    with pytest.raises(ValueError, match="Toy.name: dest 'name' is taken"):
        add_options(parser, Toy)


@pytest.mark.parametrize("kwargs,message", [
    ({"batch_size": 0}, "--batch-size must be an integer >= 1 (got 0)"),
    ({"batch_size": True}, "--batch-size must be an integer >= 1 (got True)"),
    ({"batch_size": 2.0}, "--batch-size must be an integer >= 1 (got 2.0)"),
    ({"lr": 1.0}, "--lr must be a number > 0 and < 1 (got 1.0)"),
    ({"lr": math.nan}, "--lr must be a finite number > 0 and < 1 (got nan)"),
    ({"share": math.inf}, "--share must be a finite number (got inf)"),
    ({"grad_accum": 0}, "--grad-accum must be an integer >= 1 (got 0)"),
    ({"mode": "medium"}, "--mode must be one of fast, slow (got 'medium')"),
    ({"name": ""}, "--name must be a non-empty string (got '')"),
    ({"name": 5}, "--name must be a string (got 5)"),
    ({"progress": "yes"}, "--no-progress must be true or false (got 'yes')"),
    ({"tasks": ()}, "--tasks must be at least one value (got ())"),
    ({"tasks": ("a", "z")}, "--tasks must be a list or tuple, each item one of a, b, c (got ('a', 'z'))"),
    ({"sizes": (1, "2")}, "--sizes must be a list or tuple, each item an integer (got (1, '2'))"),
    ({"tasks": "a"}, "--tasks must be a list or tuple, each item a string (got 'a')"),
    ({"inner": 3}, "inner must be a Inner (got 3)"),
])
def test_checks_name_the_flag(kwargs, message):
    with pytest.raises(ConfigError) as e:
        Toy(**{"name": "n", **kwargs})
    assert str(e.value) == message


def test_valid_values_pass_checks():
    toy = Toy(name="n", lr=0.999, grad_accum=None, share=-3, tasks=["c"], sizes=())
    assert toy.share == -3 and toy.sizes == () and toy.tasks == ["c"]
    assert Toy(name="n", lr=1e-9).lr == 1e-9
    with pytest.raises(ConfigError, match="--depth must be an integer >= 0"):
        Inner(depth=-1)


# --- the stage configs --------------------------------------------------------------------------------------

def train_config(**kw):
    return TrainConfig(**{"model": "m", "data": "d", "out": "o", **kw})


def si_config(**kw):
    return SelfInstructConfig(**{"seed_tasks": "seeds.jsonl", "out": "out.jsonl", **kw})


@pytest.mark.parametrize("build,message", [
    (lambda: train_config(batch_size=0), "--batch-size must be an integer >= 1 (got 0)"),
    (lambda: train_config(template="nope"), "--template must be one of " + ", ".join(TEMPLATE_NAMES)),
    (lambda: train_config(lora_dropout=1.0), "--lora-dropout must be a number >= 0 and < 1 (got 1.0)"),
    (lambda: train_config(lr=0.0), "--lr must be a number > 0 (got 0.0)"),
    (lambda: train_config(epochs=math.nan), "--epochs must be a finite number > 0"),
    (lambda: train_config(seed=-1), "--seed must be an integer >= 0"),
    (lambda: train_config(grad_accum=0), "--grad-accum must be an integer >= 1"),
    (lambda: train_config(save_every=0), "--save-every must be a number > 0"),
    (lambda: train_config(model=""), "--model must be a non-empty path"),
    (lambda: train_config(progress=None), "--no-progress must be true or false"),
    (lambda: TeacherConfig(timeout=0), "--timeout must be a number > 0 (got 0)"),
    (lambda: TeacherConfig(timeout=math.inf), "--timeout must be a finite number > 0 (got inf)"),
    (lambda: TeacherConfig(concurrency=0), "--concurrency must be an integer >= 1 (got 0)"),
    (lambda: TeacherConfig(api="rest"), "--api must be one of completions, chat (got 'rest')"),
    (lambda: TeacherConfig(url=""), "--teacher-url must be a non-empty string"),
    (lambda: TeacherConfig(max_retries=-1), "--max-retries must be an integer >= 0"),
    (lambda: si_config(max_cost=1.0), "--max-cost needs --price-in and --price-out"),
    (lambda: si_config(pipeline="three-stage"), "--pipeline must be one of alpaca, self-instruct"),
    (lambda: si_config(num_instructions=0), "--num-instructions must be an integer >= 1"),
    (lambda: si_config(max_bad_answers=0), "--max-bad-answers must be an integer >= 1"),
    (lambda: si_config(threshold=1.5), "--threshold must be a number >= 0 and <= 1"),
    (lambda: si_config(teacher={"url": "x"}), "teacher must be a TeacherConfig"),
    (lambda: SelfInstructConfig(seed_tasks="", out="o"), "needs --seed-tasks FILE and --out FILE.jsonl"),
    (lambda: DemoConfig(preset="huge"), "--preset must be one of " + ", ".join(PRESET_NAMES)),
    (lambda: DemoConfig(tasks=("uppercase", "bogus")), "--tasks must be a list or tuple, each item one of reverse_word"),
    (lambda: DemoConfig(tasks=()), "--tasks must be at least one value"),
    (lambda: DemoConfig(n_train=0), "--n-train must be an integer >= 1"),
])
def test_python_callers_get_the_checks(build, message):
    with pytest.raises(PacosError) as e:
        build()
    assert isinstance(e.value, ConfigError) and message in str(e.value)


def test_defaults_and_ordinary_values_are_valid():
    config = train_config(model=Path("m"), epochs=2, lr=1e-4, lora=True, template="chatml", max_steps=10)
    assert config.learning_rate == 1e-4 and config.accumulation() == 32
    assert si_config(max_cost=1.0, price_in=0.5).teacher == TeacherConfig()
    assert TeacherConfig(api="chat", requests_per_minute=30, timeout=0.5).timeout == 0.5
    assert DemoConfig(tasks=("add",)).tasks == ("add",)
    assert dataclasses.replace(DemoConfig(), n_train=800).n_train == 800
    with pytest.raises(ConfigError, match="--n-test"):
        dataclasses.replace(DemoConfig(), n_test=0)  # replace() runs the checks too


# --- the real parser ----------------------------------------------------------------------------------------

PARSER = build_parser()


def subparser(*names) -> argparse.ArgumentParser:
    parser = PARSER
    for name in names:
        parser = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[name]
    return parser


STAGES = [(("train",), TrainConfig, ()), (("train",), PlanOptions, ()),
          (("self-instruct",), SelfInstructConfig, ("teacher",)),
          (("self-instruct",), TeacherConfig, ()), (("demo",), DemoConfig, ()),
          (("infer",), InferConfig, ()), (("infer",), SamplingParams, ()), (("infer",), PromptOptions, ()),
          (("ask",), SamplingParams, ()), (("chat",), SamplingParams, ()), (("chat",), PromptOptions, ()),
          (("eval", "tasks"), EvalTasksConfig, ()), (("eval", "tasks"), PromptOptions, ()),
          (("serve",), ServeConfig, ("engine",)),
          (("eval", "answer"), AnswerConfig, ()), (("eval", "answer"), EndpointConfig, ()),
          (("eval", "answer"), SamplingParams, ()), (("eval", "answer"), PromptOptions, ()),
          (("eval", "judge"), JudgeRunConfig, ("judge", "prices")), (("eval", "judge"), JudgeConfig, ()),
          (("eval", "judge"), Prices, ()), (("eval", "report"), ReportConfig, ()),
          (("data", "score"), ScoreConfig, ("data", "judge", "prices")), (("data", "score"), Prices, ()),
          (("data", "filter"), FilterConfig, ("data",)),  # FILE is their positional argument
          *((command, EngineOptions, ()) for command in (("infer",), ("ask",), ("chat",), ("eval", "tasks"),
                                                          ("eval", "answer"), ("serve",)))]


@pytest.mark.parametrize("command,cls,nested", STAGES, ids=lambda v: getattr(v, "__name__", None))
def test_every_config_field_has_a_flag_with_help(command, cls, nested):
    flags = actions(subparser(*command))
    for f in dataclasses.fields(cls):
        if f.name in nested:  # a nested config: its own fields are checked as their own stage
            continue
        flag = flag_of(cls, f.name)
        assert flag in flags, f"{cls.__name__}.{f.name} has no flag in `pacos {' '.join(command)}`"
        assert flags[flag].help and flags[flag].help.strip(), flag
        assert flags[flag].dest == f.name


@pytest.mark.parametrize("command,cls,required", [
    (("train",), TrainConfig, {"model": "m", "data": "d", "out": "o"}),
    (("self-instruct",), SelfInstructConfig, {"seed_tasks": "s", "out": "o"}),
    (("self-instruct",), TeacherConfig, {}),
    (("demo",), DemoConfig, {}),
], ids=["train", "self-instruct", "teacher", "demo"])
def test_real_parser_defaults_build_the_dataclass_defaults(command, cls, required):
    argv = [*command]
    for name, value in required.items():
        argv += [flag_of(cls, name), value]
    args = PARSER.parse_args(argv)
    assert from_args(cls, args, **({"teacher": TeacherConfig()} if cls is SelfInstructConfig else {})) == \
        cls(**required)


EXISTING_FLAGS = {
    "train": "--model --data --out --template --epochs --max-steps --lr --batch-size --grad-accum --max-len "
             "--warmup-ratio --weight-decay --lr-scheduler --val-size --seed --resume --train-on-inputs --lora "
             "--lora-r --lora-alpha --lora-dropout --lora-target --save-every --eval-every --no-progress",
    "self-instruct": "--teacher-url --teacher-model --api --api-key --concurrency --requests-per-minute "
                     "--temperature --top-p --max-tokens --timeout --max-retries --max-response-bytes "
                     "--max-bad-answers --seed-tasks --num-instructions --out --pipeline --prompt-examples "
                     "--batch-size --threshold --seed --price-in --price-out --max-cost --no-progress",
    "demo": "--out --preset --tasks --batch-size --n-train --n-test --epochs --lr --seed --quick",
    "infer": "--data --out --batch-size --max-new-tokens --temperature --top-p --top-k --repetition-penalty --seed "
             "--template",
    "serve": "--host --port --api-key --served-name --backend --template --max-batch --max-queue "
             "--max-choices-per-request --allow-origin --feedback-db --no-feedback",
}


def test_a_tuple_flag_takes_commas_and_repeats_replacing_its_default():
    assert toy_parser().parse_args(["--name", "n", "--sizes", "4", "--sizes", "5,6"]).sizes == (4, 5, 6)
    serve = PARSER.parse_args(["serve", "m", "--allow-origin", "https://a.example", "--allow-origin",
                               "http://b.example:8080"])
    assert from_args(ServeConfig, serve).allow_origin == ("https://a.example", "http://b.example:8080")
    assert from_args(ServeConfig, PARSER.parse_args(["serve", "m"])).allow_origin == ()


def test_the_eval_default_budget_differs_from_infer_and_both_reach_the_dataclasses():
    infer = PARSER.parse_args(["infer", "m", "--data", "d", "--out", "o"])
    assert from_args(SamplingParams, infer) == SamplingParams()
    tasks = PARSER.parse_args(["eval", "tasks", "m", "--data", "d"])
    assert from_args(EvalTasksConfig, tasks).max_new_tokens == 32


@pytest.mark.parametrize("command", EXISTING_FLAGS)
def test_the_existing_flags_are_kept(command):
    assert set(EXISTING_FLAGS[command].split()) <= set(actions(subparser(command)))


def test_no_progress_flags_keep_their_meaning():
    train = PARSER.parse_args(["train", "--model", "m", "--data", "d", "--out", "o", "--no-progress"])
    assert from_args(TrainConfig, train).progress is False
    si = PARSER.parse_args(["self-instruct", "--seed-tasks", "s", "--out", "o"])
    assert si.progress is None  # a bar only on a terminal
    assert PARSER.parse_args(["self-instruct", "--no-progress"]).progress is False
    demo = PARSER.parse_args(["demo", "--tasks", "uppercase,,add"])
    assert from_args(DemoConfig, demo).tasks == ("uppercase", "add")


def test_names_come_from_the_registries():
    assert actions(subparser("train"))["--template"].choices == TEMPLATE_NAMES
    assert actions(subparser("demo"))["--preset"].choices == PRESET_NAMES == tuple(PRESETS)
    assert actions(subparser("model", "init"))["--preset"].choices == PRESET_NAMES
    assert actions(subparser("data", "validate"))["--format"].choices == FORMATS
    assert actions(subparser("data", "convert"))["--format"].choices == FORMATS
    assert actions(subparser("data", "convert"))["--to"].choices == WRITABLE_FORMATS
    assert actions(subparser("self-instruct"))["--pipeline"].choices == ("alpaca", "self-instruct")
    for name in TEMPLATE_NAMES:
        assert name in actions(subparser("data", "preview"))["--template"].help


def test_cli_value_errors_are_one_line_before_any_work(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["train", "--model", str(tmp_path / "none"), "--data", str(tmp_path / "none.jsonl"),
                 "--out", str(out), "--batch-size", "0"])
    err = capsys.readouterr().err
    assert code == 2 and err == "pacos: error: --batch-size must be an integer >= 1 (got 0)\n"
    assert not out.exists()
    code = main(["demo", "--out", str(out), "--n-test", "0"])
    assert code == 2 and "--n-test must be an integer >= 1 (got 0)" in capsys.readouterr().err
    assert not out.exists()
