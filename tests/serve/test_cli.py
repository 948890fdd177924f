"""`pacos serve` refuses bad setups with one line and a non-zero exit, before binding anything."""

import importlib.util

import pytest

from ..conftest import run_pacos


@pytest.mark.parametrize("args, message", [
    (["/nonexistent/model"], "no such directory"),
    (["{model}", "--backend", "vllm"], "needs vLLM"),
    (["{model}", "--port", "70000"], "--port"),
])
def test_serve_setup_errors(tiny_model_dir, args, message):
    if "vllm" in args and importlib.util.find_spec("vllm"):
        pytest.skip("vllm is installed here")
    r = run_pacos("serve", *[a.format(model=tiny_model_dir) for a in args], timeout=120)
    assert r.returncode != 0 and message in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_a_feedback_db_that_is_not_sqlite_is_one_line(tiny_model_dir, tmp_path):
    junk = tmp_path / "votes.sqlite3"
    junk.write_text("these are my notes, not a database\n" * 50)
    r = run_pacos("serve", tiny_model_dir, "--feedback-db", junk, timeout=120)
    assert r.returncode != 0 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert str(junk) in r.stderr and "not a database" in r.stderr
    assert junk.read_text().startswith("these are my notes")  # left as it was


@pytest.mark.parametrize("flag", [["--allow-origin", "evil.example"], ["--allow-origin", "http://a.example/path"],
                                  ["--max-choices-per-request", "0"]])
def test_bad_access_flags_are_one_line(tiny_model_dir, flag):
    r = run_pacos("serve", tiny_model_dir, *flag, timeout=120)
    assert r.returncode != 0 and flag[0] in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_several_models_are_named_by_the_directory_or_name_equals_model(tmp_path):
    from pacos.errors import PacosError
    from pacos.serve.cli import served_models

    odd = tmp_path / "a=b"  # a directory whose name holds "=" is still a path
    odd.mkdir()
    (tmp_path / "tuned").mkdir()
    assert served_models(["base=org/model", str(tmp_path / "tuned"), str(odd)]) == {
        "base": "org/model", "tuned": str(tmp_path / "tuned"), "a=b": str(odd)}
    assert served_models(["org/model"], "mine") == {"mine": "org/model"}
    for refs, served_name, message in ((["x=m1", "x=m2"], None, "two models would be served as 'x'"),
                                       (["m1", "m2"], "mine", "--served-name names a single model"),
                                       (["x="], None, "give NAME=MODEL")):
        with pytest.raises(PacosError, match=message):
            served_models(refs, served_name)
