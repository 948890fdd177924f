"""A live `pacos serve` on loopback with the tiny model (and one with two models, for the compare page), shared
by the serving tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

API_KEY = "test-key-123"


@dataclass
class LiveServer:
    url: str
    api_key: str
    feedback_db: Path
    proc: subprocess.Popen

    def health(self) -> dict:
        """With the key: the figures (running, waiting, steps, ...) are only shown to its holders."""
        return httpx.get(self.url + "/health", timeout=10, headers={"Authorization": f"Bearer {self.api_key}"}).json()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model_dir, tmp: Path, *args: str) -> LiveServer:
    """`model_dir`: one model, or a list of MODEL arguments (NAME=PATH) for one server."""
    models = [str(m) for m in model_dir] if isinstance(model_dir, list) else [str(model_dir)]
    port = free_port()
    db = tmp / "feedback.sqlite3"
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "HF_HUB_OFFLINE": "1"}
    with open(tmp / "server.log", "w") as log:  # the child keeps its own copy of the descriptor
        proc = subprocess.Popen([sys.executable, "-m", "pacos.cli", "serve", *models, "--port", str(port),
                                 "--feedback-db", str(db), *args], stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"pacos serve exited with {proc.returncode}:\n{(tmp / 'server.log').read_text()}")
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                return LiveServer(url, API_KEY, db, proc)
        except httpx.HTTPError:
            time.sleep(0.3)
    proc.kill()
    raise RuntimeError("pacos serve did not come up in 120 s")


def stop_server(server: LiveServer) -> None:
    server.proc.terminate()
    try:
        server.proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.proc.kill()


@pytest.fixture(scope="session")
def server(tiny_model_dir, tmp_path_factory):
    live = start_server(tiny_model_dir, tmp_path_factory.mktemp("serve"), "--api-key", API_KEY)
    yield live
    stop_server(live)


# Names no random text of the tiny model will hold by chance, so a test can look for them in what is streamed.
COMPARED = ("alpha-x9q", "omega-k7z")


@pytest.fixture(scope="session")
def compare_server(tiny_model_dir, tmp_path_factory):
    """Two models (the tiny one twice, each on its own engine) and no API key: the compare page's server."""
    live = start_server([f"{name}={tiny_model_dir}" for name in COMPARED], tmp_path_factory.mktemp("serve-compare"))
    yield live
    stop_server(live)


@pytest.fixture()
def client(server):
    from openai import OpenAI

    return OpenAI(base_url=server.url + "/v1", api_key=server.api_key, max_retries=0, timeout=60)
