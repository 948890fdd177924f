"""Shared fixtures: tiny offline models built once per test session, and paths to ../shared data."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # tests run servers and commands beside each other
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing in the suite may download

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A `pacos model init --preset tiny` model, saved in the Hugging Face layout."""
    from pacos.models.presets import init_model

    path = tmp_path_factory.mktemp("models") / "tiny"
    init_model("tiny", path, seed=0)
    return path


@pytest.fixture(scope="session")
def tiny_gguf(tiny_model_dir, tmp_path_factory) -> Path:
    """The tiny model exported to an f32 GGUF file, unverified (skipped without gguf and llama-cpp-python)."""
    pytest.importorskip("gguf")
    pytest.importorskip("llama_cpp")
    from pacos.export.gguf_export import export_gguf

    path = tmp_path_factory.mktemp("gguf") / "tiny.gguf"
    export_gguf(str(tiny_model_dir), path, "f32", verify=False, log=lambda message: None)
    return path


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


def run_pacos(*args: str, check: bool = False, timeout: float = 600, **kwargs) -> subprocess.CompletedProcess:
    """Run the real `pacos` CLI in a subprocess (as a user would)."""
    proc = subprocess.run([sys.executable, "-m", "pacos.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, **kwargs)
    if check and proc.returncode != 0:
        raise AssertionError(f"pacos {' '.join(map(str, args))} failed ({proc.returncode}):\n{proc.stderr}")
    return proc


def kill_pacos_after(*args: str, path: Path, lines: int, timeout: float = 120) -> None:
    """Run the real `pacos` CLI and kill -9 it once `path` holds `lines` lines (a crash in the middle of a run)."""
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "pacos.cli", *map(str, args)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=env)
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None and (
            not path.exists() or path.read_text().count("\n") < lines):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
