"""Offline presets: sizes, the Hugging Face layout, the local tokenizer, and loading errors."""

import json
import time

import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer

from pacos.errors import ModelLoadError
from pacos.models.loading import load_model
from pacos.models.presets import PRESETS, Preset, build_model

from ..conftest import run_pacos


@pytest.mark.parametrize("preset,low,high", [("nano", 3e5, 1e6), ("tiny", 1e6, 5e6), ("small", 20e6, 40e6), ("base-100m", 85e6, 115e6)])
def test_preset_sizes(preset, low, high):
    model, tok = build_model(preset)
    n = sum(p.numel() for p in model.parameters())
    assert low <= n <= high
    assert type(model).__name__ == "LlamaForCausalLM"
    assert model.config.vocab_size == len(tok)


def test_a_shape_of_ones_own_takes_its_kv_heads_and_vocabulary():
    model, tok = build_model(Preset(64, 2, 4, 128, 256, num_key_value_heads=2, vocab_size=1000))
    assert (model.config.num_attention_heads, model.config.num_key_value_heads) == (4, 2)
    assert model.get_input_embeddings().num_embeddings == model.config.vocab_size == 1000 > len(tok)
    assert model.model.layers[0].self_attn.k_proj.out_features == 2 * 64 // 4  # 2 KV heads of 16


def test_model_init_writes_a_standard_hub_layout(tmp_path):
    proc = run_pacos("model", "init", "--preset", "tiny", "--out", tmp_path / "m", check=True)
    assert "parameters" in proc.stdout
    assert proc.stderr == ""  # no deprecation noise, no per-shard progress bar for one small file
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
                 "generation_config.json", "chat_template.jinja"):
        assert (tmp_path / "m" / name).is_file(), name
    # Plain transformers loads it like any hub model.
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "m")
    tok = AutoTokenizer.from_pretrained(tmp_path / "m")
    assert json.loads((tmp_path / "m" / "config.json").read_text())["model_type"] == "llama"
    assert model.generation_config.eos_token_id == tok.eos_token_id


def test_tokenizer_is_char_level_with_bos_and_byte_fallback(tiny_tokenizer):
    tok = tiny_tokenizer
    ids = tok("héllo, Wörld 42")["input_ids"]
    assert ids[0] == tok.bos_token_id
    assert tok.decode(ids, skip_special_tokens=True) == "héllo, Wörld 42"
    assert len(tok("abc", add_special_tokens=False)["input_ids"]) == 3
    assert tok.pad_token is None  # like LLaMA: training must handle it explicitly
    assert tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False,
                                   add_generation_prompt=True).endswith("<|im_start|>assistant\n")


def test_hub_id_offline_fails_fast_with_one_line(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    with pytest.raises(ModelLoadError, match="not in the local Hugging Face cache"):
        load_model("some-org/some-model-that-is-not-cached")
    assert time.perf_counter() - start < 10


def test_unreachable_hub_is_detected_quickly(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens on the discard port
    start = time.perf_counter()
    with pytest.raises(ModelLoadError, match="can't be reached"):
        load_model("some-org/some-model-that-is-not-cached")
    assert time.perf_counter() - start < 10


def test_presets_are_listed():
    assert {"tiny", "small", "base-100m"} <= set(PRESETS)
