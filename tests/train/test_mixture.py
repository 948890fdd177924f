"""Data mixtures: `--data FILE[:WEIGHT]` parsing, weighted sampling (deterministic under --seed), the counts
in the log and in pacos_train.json, and the one-line errors for bad weights."""

import argparse
import json
import math

import pytest

from pacos.data.formats import save_records
from pacos.data.mixture import Source, mix, parse_source, parse_sources, sample_source
from pacos.data.records import Example
from pacos.options import ConfigError, add_options, from_args
from pacos.train.config import TrainConfig

from ..conftest import run_pacos



def parse(spec, existing=()):
    return parse_source(spec, exists=lambda p: p in existing)


def test_only_a_trailing_number_is_a_weight():
    assert parse("a.json") == Source("a.json")
    assert parse("b.jsonl:0.3") == Source("b.jsonl", 0.3)
    assert parse("b.jsonl:2") == Source("b.jsonl", 2.0)
    assert parse("b.jsonl:.5") == Source("b.jsonl", 0.5)
    assert parse("b.jsonl:1e-1") == Source("b.jsonl", 0.1)
    assert parse(r"C:\data\a.json") == Source(r"C:\data\a.json")  # a Windows drive is not a weight
    assert parse(r"C:\data\a.json:0.5") == Source(r"C:\data\a.json", 0.5)
    assert parse("s3:bucket/x.jsonl") == Source("s3:bucket/x.jsonl")
    assert parse("a,b.json:1") == Source("a,b.json", 1.0)  # commas are part of the path
    assert parse("runs/v2:3/data.json") == Source("runs/v2:3/data.json")  # only at the end


def test_an_existing_file_named_like_a_weight_is_that_file():
    assert parse("file:0.3", existing={"file:0.3"}) == Source("file:0.3")
    assert parse("file:0.3:2", existing={"file:0.3"}) == Source("file:0.3", 2.0)


@pytest.mark.parametrize("spec, problem", [
    ("a.json:-1", "finite number >= 0 (got -1)"),
    ("a.json:nan", "finite number >= 0 (got nan)"),
    ("a.json:inf", "finite number >= 0 (got inf)"),
])
def test_bad_weights_name_the_flag(spec, problem):
    with pytest.raises(ConfigError) as e:
        parse(spec)
    assert str(e.value) == f"--data {spec}: the weight must be a {problem}"


def test_a_weight_that_is_not_a_number_names_the_flag_when_the_file_exists():
    with pytest.raises(ConfigError, match=r"^--data a\.json:abc: the weight after ':' must be a number \(got 'abc'\)"):
        parse("a.json:abc", existing={"a.json"})
    assert parse("a.json:abc") == Source("a.json:abc")  # no a.json either: a path (that loading reports missing)


def test_zero_for_every_source_is_an_error_zero_for_one_leaves_it_out():
    with pytest.raises(ConfigError, match=r"^--data: every source has weight 0"):
        parse_sources(["a:0", "b:0"], exists=lambda p: False)
    records, counts = mix([(Source("a"), [1, 2]), (Source("b", 0.0), [3, 4])], seed=0)
    assert records == [1, 2] and [(c.read, c.used) for c in counts] == [(2, 2), (2, 0)]


def test_weights_multiply_each_source_size():
    items = list(range(100))
    assert sample_source(items, None, 0, 0) == items
    assert sample_source(items, 1.0, 0, 0) == items
    part = sample_source(items, 0.3, seed=1, index=0)
    assert len(part) == 30 and len(set(part)) == 30 and part == sorted(part)  # without replacement, in order
    twice = sample_source(items, 2.0, 1, 0)
    assert sorted(twice) == sorted(items * 2)
    more = sample_source(items, 2.5, 1, 0)
    assert len(more) == 250 and all(2 <= more.count(i) <= 3 for i in items)
    assert sample_source([], 0.5, 1, 0) == []


def test_sampling_is_deterministic_under_the_seed_and_per_source():
    items = list(range(50))
    assert sample_source(items, 0.5, 7, 0) == sample_source(items, 0.5, 7, 0)
    assert sample_source(items, 0.5, 7, 0) != sample_source(items, 0.5, 8, 0)
    one, _ = mix([(Source("a", 0.5), items)], seed=3)
    two, counts = mix([(Source("a", 0.5), items), (Source("b", 0.2), list(range(100, 150)))], seed=3)
    assert two[:25] == one  # adding a source leaves the earlier ones' picks alone
    assert [c.as_dict() for c in counts] == [{"path": "a", "weight": 0.5, "read": 50, "used": 25},
                                             {"path": "b", "weight": 0.2, "read": 50, "used": 10}]


def _parser():
    parser = argparse.ArgumentParser(exit_on_error=False)
    add_options(parser, TrainConfig)
    return parser


def test_data_flag_repeats_and_keeps_commas_and_python_callers_pass_a_string(tmp_path):
    args = _parser().parse_args(["--model", "m", "--out", "o", "--data", "a,b.json", "--data", "c.jsonl:0.3"])
    config = from_args(TrainConfig, args)
    assert config.data == ("a,b.json", "c.jsonl:0.3")
    assert config.sources == [Source("a,b.json"), Source("c.jsonl", 0.3)]
    assert TrainConfig(model="m", out="o", data="file.json").data == ("file.json",)
    assert TrainConfig(model="m", out="o", data=tmp_path / "f.json").data == (str(tmp_path / "f.json"),)
    with pytest.raises(ConfigError, match=r"^--data a\.json:-2: the weight must be"):
        TrainConfig(model="m", out="o", data=("a.json:-2",))
    assert math.isclose(TrainConfig(model="m", out="o", data="x", method="dpo").learning_rate, 5e-7)


def test_cli_bad_weight_is_one_line(tmp_path):
    proc = run_pacos("train", "--model", tmp_path, "--data", "a.json:nan", "--out", tmp_path / "o")
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines()[-1].endswith("--data a.json:nan: the weight must be a finite number "
                                                         ">= 0 (got nan)")
    assert "Traceback" not in proc.stderr


def test_a_mixture_trains_and_records_its_counts(tiny_model_dir, tmp_path):
    from pacos.train.loop import train

    save_records([Example(f"Say a {i}.", "", "a") for i in range(20)], tmp_path / "a.json", "alpaca")
    save_records([Example(f"Say b {i}.", "", "b") for i in range(10)], tmp_path / "b.jsonl", "jsonl")
    lines = []
    config = TrainConfig(model=str(tiny_model_dir), data=(str(tmp_path / "a.json"), f"{tmp_path / 'b.jsonl'}:0.3"),
                         out=str(tmp_path / "out"), max_steps=1, batch_size=4, grad_accum=1, max_len=64,
                         progress=False, save_every=1000, warmup_ratio=0.0, packing="off")
    result = train(config, log=lines.append)
    assert result.report.total == 23
    assert f"data: {tmp_path / 'a.json'} 20 read, 20 used | {tmp_path / 'b.jsonl'} (x0.3) 10 read, 3 used" in lines
    run = json.loads((tmp_path / "out" / "pacos_train.json").read_text())
    assert run["sources"] == [{"path": str(tmp_path / "a.json"), "weight": None, "read": 20, "used": 20},
                              {"path": str(tmp_path / "b.jsonl"), "weight": 0.3, "read": 10, "used": 3}]
    assert run["config"]["data"] == [str(tmp_path / "a.json"), f"{tmp_path / 'b.jsonl'}:0.3"]
