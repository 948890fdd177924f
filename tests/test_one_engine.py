"""One engine, one sampler: for the same model, prompt and greedy settings, `pacos infer`, `pacos ask`,
`pacos chat` and `pacos serve` return the same text."""

from __future__ import annotations

import json

import httpx

from pacos.data.formats import save_records
from pacos.data.records import Example

from .conftest import run_pacos
from .serve.conftest import start_server, stop_server

INSTRUCTIONS = ("Name three colours.", "Translate 'cat' into French.")
TOKENS = "24"


def test_every_command_gives_the_same_greedy_text(tiny_model_dir, tmp_path):
    common = ("--template", "alpaca")  # an instruction and a one-turn chat render the same Alpaca prompt
    save_records([Example(i) for i in INSTRUCTIONS], tmp_path / "in.jsonl", "jsonl")
    run_pacos("infer", tiny_model_dir, "--data", tmp_path / "in.jsonl", "--out", tmp_path / "out.jsonl",
              "--max-new-tokens", TOKENS, *common, check=True)
    infer = [json.loads(line)["generated"] for line in (tmp_path / "out.jsonl").read_text().splitlines()]

    ask = [run_pacos("ask", tiny_model_dir, i, "--max-new-tokens", TOKENS, *common, check=True).stdout[:-1]
           for i in INSTRUCTIONS]

    script = "".join(f"/reset\n{i}\n" for i in INSTRUCTIONS) + "/exit\n"
    out = run_pacos("chat", tiny_model_dir, "--max-new-tokens", TOKENS, *common, input=script, check=True).stdout
    chat = [part.split("\nyou> ")[0] for part in out.split("assistant> ")[1:]]

    server = start_server(tiny_model_dir, tmp_path, *common)
    try:
        serve = [httpx.post(server.url + "/v1/chat/completions", timeout=60, json={
            "model": "tiny", "messages": [{"role": "user", "content": i}], "max_tokens": int(TOKENS),
            "temperature": 0}).json()["choices"][0]["message"]["content"] for i in INSTRUCTIONS]
    finally:
        stop_server(server)

    assert all(infer) and infer[0] != infer[1]  # real, prompt-dependent text, so equality means something
    assert ask == infer
    assert chat == infer
    assert serve == infer
