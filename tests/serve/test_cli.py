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
