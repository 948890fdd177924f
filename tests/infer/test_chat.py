"""`pacos chat`: history trimming (pure and on a model), save/load, and a real session in a pseudo-terminal."""

import json
import os
import sys
import time

import pexpect
import pytest

from pacos.data.records import Message
from pacos.errors import PacosError
from pacos.infer.chat import ChatSession, fit_history
from pacos.infer.hf_engine import TransformersEngine
from pacos.infer.params import SamplingParams


def test_fit_history_drops_oldest_turn_pairs_and_keeps_the_system_prompt():
    msgs = [Message("system", "S")] + [Message("user" if i % 2 == 0 else "assistant", f"m{i}") for i in range(5)]
    length = lambda ms: sum(len(m.content) for m in ms)
    kept, dropped = fit_history(msgs, length, 7)
    assert [m.content for m in kept] == ["S", "m2", "m3", "m4"] and dropped == 1
    kept, dropped = fit_history(msgs, length, 3)
    assert [m.content for m in kept] == ["S", "m4"] and dropped == 2
    with pytest.raises(PacosError, match="message alone"):
        fit_history(msgs, length, 2)


@pytest.fixture()
def engine(tiny_model_dir):
    with TransformersEngine.load(str(tiny_model_dir), kind="conversation") as engine:  # the model's own template
        yield engine


def test_session_trims_to_the_context_and_streams(engine, tmp_path):
    session = ChatSession(engine, SamplingParams(max_new_tokens=8), system="Be brief.")
    session.engine.context_length = 140  # room for about two turns of this chat template
    deltas = []
    for i in range(4):
        answer, dropped = session.reply(f"question number {i}", deltas.append)
    assert answer == session.turns[-1].content and "".join(deltas).endswith(answer)
    assert dropped >= 1 and len(session.turns) == 8  # the session keeps everything; only the prompt is trimmed
    ids, _ = session.prompt_ids()
    assert len(ids) + 8 <= 140
    text = session.engine.tokenizer.decode(ids)
    assert "Be brief." in text and "question number 3" in text and "question number 0" not in text

    session.save(tmp_path / "c.json")
    other = ChatSession(engine, SamplingParams(max_new_tokens=8))
    other.load(tmp_path / "c.json")
    assert other.messages == session.messages and other.system == "Be brief."
    (tmp_path / "bad.json").write_text('{"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]}')
    with pytest.raises(PacosError, match="alternate"):
        other.load(tmp_path / "bad.json")
    with pytest.raises(PacosError, match="not a number"):
        other.set_params(["temperature=hot"])
    with pytest.raises(PacosError, match="top_p"):
        other.set_params(["top_p=2"])


def test_regenerate_replaces_the_last_answer(engine):
    session = ChatSession(engine, SamplingParams(max_new_tokens=6, temperature=1.0, seed=1))
    session.reply("hi", lambda d: None)
    session.params.seed = 2
    second, _ = session.regenerate(lambda d: None)
    assert len(session.turns) == 2 and session.turns[-1].content == second


@pytest.fixture(scope="module")
def lora_adapter(tiny_model_dir, tmp_path_factory):
    """An untrained LoRA adapter on the tiny model (loads like any `pacos train --lora` output)."""
    from peft import LoraConfig, get_peft_model

    from pacos.models.loading import load_model
    from pacos.models.peft_warnings import peft_alias_filter

    model, tokenizer = load_model(tiny_model_dir)
    out = tmp_path_factory.mktemp("adapter") / "lora"
    with peft_alias_filter():  # the same known peft/transformers deprecation pacos filters at its own peft calls
        get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"])).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def test_chat_in_a_terminal_with_a_lora_adapter(lora_adapter, tmp_path):
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "HF_HUB_OFFLINE": "1"}
    child = pexpect.spawn(sys.executable, ["-m", "pacos.cli", "chat", str(lora_adapter), "--system", "You are terse.",
                                           "--max-new-tokens", "300"], encoding="utf-8", timeout=90, env=env,
                          dimensions=(40, 200))
    try:
        child.expect("you> ")
        child.sendline("hello")
        child.expect("assistant> ")
        # Tokens arrive as they are generated: the answer comes in several reads, not in one piece at the end.
        pieces, deadline = [], time.time() + 60
        while "you> " not in "".join(pieces) and time.time() < deadline:
            try:
                pieces.append(child.read_nonblocking(4096, timeout=5))
            except pexpect.TIMEOUT:
                break
        assert "you> " in "".join(pieces) and len(pieces) >= 3, pieces
        child.sendline("/params max_new_tokens=12 temperature=0.5")
        child.expect("max_new_tokens=12  temperature=0.5")
        child.sendline("/regen")
        child.expect("assistant> ")
        child.expect("you> ")
        saved = tmp_path / "conv.json"
        child.sendline(f"/save {saved}")
        child.expect("saved 3 messages")
        child.sendline("/reset")
        child.expect("conversation cleared")
        child.sendline(f"/load {saved}")
        child.expect("loaded 2 messages")
        child.sendline("/load /nonexistent.json")
        child.expect("error: /nonexistent.json: can't read")
        child.sendline("/exit")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0
    messages = json.loads(saved.read_text())["messages"]
    assert [m["role"] for m in messages] == ["system", "user", "assistant"]
    assert messages[0]["content"] == "You are terse." and messages[1]["content"] == "hello"
