"""One engine, one sampler: for the same model, prompt and greedy settings, `pacos infer`, `pacos ask`,
`pacos chat` and `pacos serve` return the same text; and the same text again on the model exported to GGUF
(run by llama.cpp)."""

from __future__ import annotations

import json

import httpx
import pytest

from pacos.data.formats import save_records
from pacos.data.records import Example

from .conftest import run_pacos
from .serve.conftest import start_server, stop_server

INSTRUCTIONS = ("Name three colours.", "Translate 'cat' into French.")
TOKENS = "24"


def every_commands_text(model, tmp_path) -> dict[str, list[str]]:
    """The greedy answers to INSTRUCTIONS from infer, ask, chat and serve on `model`."""
    common = ("--template", "alpaca")  # an instruction and a one-turn chat render the same Alpaca prompt
    save_records([Example(i) for i in INSTRUCTIONS], tmp_path / "in.jsonl", "jsonl")
    run_pacos("infer", model, "--data", tmp_path / "in.jsonl", "--out", tmp_path / "out.jsonl",
              "--max-new-tokens", TOKENS, *common, check=True)
    infer = [json.loads(line)["generated"] for line in (tmp_path / "out.jsonl").read_text().splitlines()]

    ask = [run_pacos("ask", model, i, "--max-new-tokens", TOKENS, *common, check=True).stdout[:-1]
           for i in INSTRUCTIONS]

    script = "".join(f"/reset\n{i}\n" for i in INSTRUCTIONS) + "/exit\n"
    out = run_pacos("chat", model, "--max-new-tokens", TOKENS, *common, input=script, check=True).stdout
    chat = [part.split("\nyou> ")[0] for part in out.split("assistant> ")[1:]]

    server = start_server(model, tmp_path, *common)
    try:
        name = httpx.get(server.url + "/v1/models", timeout=10).json()["data"][0]["id"]
        serve = [httpx.post(server.url + "/v1/chat/completions", timeout=60, json={
            "model": name, "messages": [{"role": "user", "content": i}], "max_tokens": int(TOKENS),
            "temperature": 0}).json()["choices"][0]["message"]["content"] for i in INSTRUCTIONS]
    finally:
        stop_server(server)
    return {"infer": infer, "ask": ask, "chat": chat, "serve": serve}


@pytest.fixture(scope="module")
def hf_texts(tiny_model_dir, tmp_path_factory):
    return every_commands_text(tiny_model_dir, tmp_path_factory.mktemp("hf"))


def test_every_command_gives_the_same_greedy_text(hf_texts):
    infer = hf_texts["infer"]
    assert all(infer) and infer[0] != infer[1]  # real, prompt-dependent text, so equality means something
    assert hf_texts["ask"] == infer
    assert hf_texts["chat"] == infer
    assert hf_texts["serve"] == infer


def test_the_gguf_file_gives_every_command_the_models_text(hf_texts, tiny_gguf, tmp_path):
    assert every_commands_text(tiny_gguf, tmp_path) == hf_texts
