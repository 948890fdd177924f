"""`pacos export` on tiny offline models of each supported architecture and tokenizer kind, each loaded by
llama.cpp: token ids equal, f32 logits and greedy continuations equal to HF, the silent details (Q/K
permutation, GQA, Llama 3 rope scaling, tied/untied output, end-of-turn EOS, chat template) checked, and bad
input refused in one line."""

from __future__ import annotations

import numpy as np
import pytest

llama_cpp = pytest.importorskip("llama_cpp")

import torch

from pacos.data.formats import save_records
from pacos.data.records import Conversation, Message
from pacos.data.synth import synth_records
from pacos.export import arch as arch_module
from pacos.export.gguf_export import export_gguf
from pacos.export.verify import STRINGS, VerificationError, compare_logits, hf_logits
from pacos.models.gguf_file import (
    gguf_template_name,
    load_gguf_tokenizer,
    metadata,
    open_llama,
)
from pacos.models.loading import load_model
from pacos.prompting.templates import get_template, resolve_template

from ..conftest import run_pacos

QUIET = {"log": lambda message: None}


def _save(model_cls, config, tokenizer, path, seed=0):
    from transformers import GenerationConfig

    torch.manual_seed(seed)
    model = model_cls(config)
    with torch.no_grad():  # spread the weights a little so logits are far from ties
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    model.generation_config = GenerationConfig(bos_token_id=tokenizer.bos_token_id,
                                               eos_token_id=tokenizer.eos_token_id)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def _llama_like(tmp_path, name, **overrides):
    from transformers import (
        LlamaConfig,
        LlamaForCausalLM,
        MistralConfig,
        MistralForCausalLM,
    )

    from pacos.models.tokenizer import build_char_tokenizer

    tokenizer = build_char_tokenizer()
    mistral = overrides.pop("mistral", False)
    fields = {"vocab_size": len(tokenizer), "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
                     "num_key_value_heads": 4, "intermediate_size": 128, "max_position_embeddings": 512,
                     "bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id,
                     "tie_word_embeddings": False, **overrides}
    cls, config = (MistralForCausalLM, MistralConfig(**fields)) if mistral else (LlamaForCausalLM,
                                                                               LlamaConfig(**fields))
    return _save(cls, config, tokenizer, tmp_path / name)


QWEN2_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|"
               r"\s+(?!\S)|\s+")
CHATML = ("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + "
          "'<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")


def qwen2_tokenizer():
    """A byte-level BPE tokenizer built the way Qwen2's is (NFC, Qwen2's split regex, byte-level), trained
    offline on a small mixed corpus."""
    from tokenizers import (
        Regex,
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        trainers,
    )
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_REGEX), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    corpus = [text for text in STRINGS.values()] + [
        "Below is an instruction that describes a task. Write a response that appropriately completes the request.",
        "The quick brown fox jumps over the lazy dog. 1234567890 tokens, tokenizer, tokenization.",
        "def main():\n    print('hello world')\n    return 0\n", "我想在apple工作。列出5种不同的技巧。今天天气很好。"] * 20
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tok.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=700, special_tokens=specials,
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   model_max_length=512)
    fast.chat_template = CHATML
    return fast


@pytest.fixture(scope="module")
def qwen2_dir(tmp_path_factory):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    tokenizer = qwen2_tokenizer()
    config = Qwen2Config(vocab_size=len(tokenizer), hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, intermediate_size=128, max_position_embeddings=512,
                         tie_word_embeddings=True, eos_token_id=tokenizer.eos_token_id, bos_token_id=None)
    return _save(Qwen2ForCausalLM, config, tokenizer, tmp_path_factory.mktemp("qwen2") / "qwen2")


@pytest.fixture(scope="module")
def sentencepiece_dir(tmp_path_factory):
    """A LLaMA model whose tokenizer is a real SentencePiece BPE model (byte fallback, identity normalization,
    a dummy prefix, as LLaMA 1/2's and Mistral's are), trained offline and loaded by transformers from
    tokenizer.model."""
    spm = pytest.importorskip("sentencepiece")
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    root = tmp_path_factory.mktemp("spm")
    corpus = root / "corpus.txt"
    corpus.write_text("\n".join(list(STRINGS.values()) * 30 + [
        "The quick brown fox jumps over the lazy dog. Give three tips for staying healthy."] * 30))
    source = root / "source"
    source.mkdir()
    spm.SentencePieceTrainer.train(input=str(corpus), model_prefix=str(source / "tokenizer"), vocab_size=600,
                                   model_type="bpe", byte_fallback=True, character_coverage=0.9995, bos_id=1,
                                   eos_id=2, unk_id=0, pad_id=-1, split_digits=True, normalization_rule_name="identity",
                                   remove_extra_whitespaces=False, allow_whitespace_only_pieces=True, minloglevel=2)
    tokenizer = AutoTokenizer.from_pretrained(source)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                         intermediate_size=128, max_position_embeddings=512, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id)
    return _save(LlamaForCausalLM, config, tokenizer, root / "model")


def test_sentencepiece_llama_vocabulary(sentencepiece_dir, tmp_path):
    out = tmp_path / "spm.gguf"
    result = export_gguf(str(sentencepiece_dir), out, "f32", **QUIET)
    assert result.checks["top1_agreement"] == 1.0
    meta = metadata(out)
    assert meta["tokenizer.ggml.model"] == "llama" and meta["tokenizer.ggml.add_space_prefix"] is True
    model, tokenizer = load_model(sentencepiece_dir)
    llm = open_llama(out, n_ctx=256, f32_cache=True)
    ids = tokenizer("Give three tips")["input_ids"]
    assert _greedy(llm, ids, 12) == _hf_greedy(model, ids, 12)


def _greedy(llm, ids, n):
    out = []
    for token in llm.generate(ids, top_k=1, top_p=1.0, temp=0.0, repeat_penalty=1.0, reset=True):
        out.append(token)
        if len(out) == n:
            break
    return out


def _hf_greedy(model, ids, n):
    with torch.inference_mode():
        out = model.generate(torch.tensor([ids]), max_new_tokens=n, min_new_tokens=n, do_sample=False,
                             eos_token_id=None, pad_token_id=0)
    return out[0, len(ids):].tolist()


def _tensor_names(path):
    from gguf import GGUFReader

    return {t.name for t in GGUFReader(path).tensors}


def test_llama_offline_tokenizer_f32_equals_hf_token_for_token(tiny_model_dir, tmp_path):
    out = tmp_path / "tiny.gguf"
    result = export_gguf(str(tiny_model_dir), out, "f32", **QUIET)
    assert result.checks["top1_agreement"] == 1.0 and result.checks["max_abs_diff"] < 1e-3
    model, tokenizer = load_model(tiny_model_dir)
    llm = open_llama(out, n_ctx=512, f32_cache=True)
    for text in ("Give three tips for staying healthy.", "列出5种技巧", "x = [1, 2, 3]\n"):
        ids = tokenizer(text)["input_ids"]
        assert llm.tokenize(text.encode(), add_bos=True, special=True) == ids
        assert _greedy(llm, ids, 16) == _hf_greedy(model, ids, 16), text
    meta = metadata(out)
    assert meta["tokenizer.ggml.model"] == "llama"
    assert meta["tokenizer.ggml.add_space_prefix"] is False  # the presets' tokenizer adds no ▁ prefix
    assert meta["tokenizer.ggml.bos_token_id"] == tokenizer.bos_token_id and meta["tokenizer.ggml.add_bos_token"]
    assert meta["llama.rope.freq_base"] == pytest.approx(model.config.rope_parameters["rope_theta"])
    assert "output.weight" in _tensor_names(out)  # the presets' head is untied
    # the embedded tokenizer is the HF one
    assert load_gguf_tokenizer(out)("héllo 世界")["input_ids"] == tokenizer("héllo 世界")["input_ids"]


def test_qwen2_byte_level_bpe_with_chatml(qwen2_dir, tmp_path):
    out = tmp_path / "qwen2.gguf"
    result = export_gguf(str(qwen2_dir), out, "f32", **QUIET)
    assert result.arch == "qwen2" and result.checks["top1_agreement"] == 1.0
    meta = metadata(out)
    assert meta["tokenizer.ggml.model"] == "gpt2" and meta["tokenizer.ggml.pre"] == "qwen2"
    assert meta["tokenizer.ggml.add_bos_token"] is False
    assert "output.weight" not in _tensor_names(out)  # tied: llama.cpp reuses token_embd
    model, tokenizer = load_model(qwen2_dir)
    end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert meta["tokenizer.ggml.eos_token_id"] == end
    assert meta["tokenizer.chat_template"] == CHATML
    llm = open_llama(out, n_ctx=512, f32_cache=True)
    assert llama_cpp.llama_vocab_is_eog(llama_cpp.llama_model_get_vocab(llm.model), end)
    ids = tokenizer("<|im_start|>user\n你好, world<|im_end|>\n<|im_start|>assistant\n")["input_ids"]
    assert _greedy(llm, ids, 12) == _hf_greedy(model, ids, 12)


@pytest.mark.parametrize("name,overrides", [
    ("gqa-llama3-rope", {"num_key_value_heads": 2, "rope_theta": 500000.0,
                         "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                          "high_freq_factor": 4.0, "original_max_position_embeddings": 16}}),
    ("mistral", {"mistral": True, "num_key_value_heads": 2, "sliding_window": None}),
])
def test_llama_family_variants_match_hf(tmp_path, name, overrides):
    model_dir = _llama_like(tmp_path, name, **overrides)
    result = export_gguf(str(model_dir), tmp_path / f"{name}.gguf", "f32", **QUIET)
    assert result.arch == "llama" and result.checks["top1_agreement"] == 1.0
    if name.startswith("gqa"):
        assert "rope_freqs.weight" in _tensor_names(tmp_path / f"{name}.gguf")
        assert metadata(tmp_path / f"{name}.gguf")["llama.attention.head_count_kv"] == 2


def test_a_silent_conversion_mistake_fails_the_self_check(tmp_path, monkeypatch):
    """The verification is what catches the silent details: without the Q/K permutation, or without Llama 3's
    rope factors, the logits disagree and the export fails, leaving no file."""
    model_dir = _llama_like(tmp_path, "llama3", num_key_value_heads=2, rope_scaling={
        "rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
        "original_max_position_embeddings": 16})
    out = tmp_path / "broken.gguf"
    with monkeypatch.context() as m:
        m.setattr(arch_module, "permute", lambda weight, n_head: weight)
        with pytest.raises(VerificationError, match="logits differ"):
            export_gguf(str(model_dir), out, "f32", **QUIET)
    with monkeypatch.context() as m:
        m.setattr(arch_module, "llama3_rope_factors", lambda config: None)
        with pytest.raises(VerificationError, match="logits differ"):
            export_gguf(str(model_dir), out, "f32", **QUIET)
    assert not out.exists() and list(tmp_path.glob(".broken.gguf*")) == []


def test_lora_adapter_is_merged_first(tiny_model_dir, tmp_path):
    from peft import LoraConfig, get_peft_model

    base, tokenizer = load_model(tiny_model_dir)
    peft_model = get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "v_proj"],
                                                 init_lora_weights=False))
    adapter = tmp_path / "adapter"
    peft_model.save_pretrained(adapter)
    tokenizer.save_pretrained(adapter)
    result = export_gguf(str(adapter), tmp_path / "lora.gguf", "f32", **QUIET)
    assert result.checks["top1_agreement"] == 1.0
    merged, _ = load_model(adapter)
    plain, _ = load_model(tiny_model_dir)
    ids = tokenizer("Name a color.")["input_ids"]
    llm = open_llama(tmp_path / "lora.gguf", n_ctx=128, logits_all=True)
    llm.eval(ids)
    theirs = np.array(llm.scores[: len(ids)], dtype=np.float64)
    assert compare_logits(hf_logits(merged, ids), theirs)["max_abs_diff"] < 1e-3
    assert compare_logits(hf_logits(plain, ids), theirs)["max_abs_diff"] > 1e-2  # the adapter is really in it


@pytest.fixture(scope="module")
def trained_dir(tiny_model_dir, tmp_path_factory):
    """The tiny preset fine-tuned with ChatML (a model that has learnt something).

    300 small steps rather than 40 of the default effective batch 128: as fast, and the model ends up decided
    enough that q8_0's rounding flips ~0.3% of its top-1 tokens (measured over three seeds: 99.6-99.8%
    agreement); after 40 big steps it still had near-ties and one seed measured 97.5%."""
    from pacos.train.config import TrainConfig
    from pacos.train.loop import train

    root = tmp_path_factory.mktemp("trained")
    data = root / "train.jsonl"
    save_records(synth_records(96, seed=3), data, "jsonl")
    out = root / "model"
    train(TrainConfig(model=str(tiny_model_dir), data=str(data), out=str(out), batch_size=8, grad_accum=1,
                      max_len=128, max_steps=300, lr=3e-3, warmup_ratio=0.0, progress=False, save_every=1000,
                      template="chatml"))
    return out, data


def test_q8_0_agrees_with_the_trained_model_and_records_its_template(trained_dir, tmp_path):
    model_dir, data = trained_dir
    out = tmp_path / "q8.gguf"
    result = export_gguf(str(model_dir), out, "q8_0", **QUIET)
    assert result.template == "chatml" and gguf_template_name(out) == "chatml"
    model, tokenizer = load_model(model_dir)
    template = resolve_template(out, load_gguf_tokenizer(out), "instruction", None)
    assert template.name == "chatml"  # `pacos chat FILE.gguf` prompts as the model was trained
    llm = open_llama(out, n_ctx=256, logits_all=True)
    agree = total = 0
    from pacos.data.formats import load_records
    from pacos.prompting.encode import encode_record

    for record in load_records(data)[:24]:  # ~1,300 positions
        ids = encode_record(record, tokenizer, template, max_len=128).input_ids
        llm.reset()
        llm.eval(ids)
        theirs = np.array(llm.scores[: len(ids)])
        ours = hf_logits(model, ids)
        agree += int((ours.argmax(-1) == theirs.argmax(-1)).sum())
        total += len(ids)
    assert agree / total >= 0.99, agree / total
    # ChatML's end of turn is the file's EOS, so llama.cpp's own tools stop there
    end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert metadata(out)["tokenizer.ggml.eos_token_id"] == end


def _render(jinja: str, messages, eos: str) -> str:
    import jinja2

    return jinja2.Environment().from_string(jinja).render(messages=messages, eos_token=eos,
                                                          add_generation_prompt=True)


@pytest.mark.parametrize("name", ["alpaca", "vicuna", "chatml"])
def test_the_written_chat_template_renders_pacos_prompts(name, tiny_tokenizer):
    from pacos.export.chat_templates import gguf_chat_template

    template = get_template(name, tiny_tokenizer, "conversation")
    eos = tiny_tokenizer.eos_token
    for messages in ([("user", "Hi")], [("system", "Be brief."), ("user", "Hi"), ("assistant", "Hello!"),
                                        ("user", "What's 2+2?")],
                     [("user", "a"), ("assistant", "b"), ("user", "c"), ("assistant", "d"), ("user", "e")]):
        conv = Conversation([Message(role, text) for role, text in messages])
        expected = "".join(s.text + (eos if s.eos else "") for s in template.prompt_segments(conv))
        rendered = _render(gguf_chat_template(name, tiny_tokenizer),
                           [{"role": r, "content": c} for r, c in messages], eos)
        assert rendered == expected, (name, messages)


def test_bad_input_gets_one_line_errors(tiny_model_dir, tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel

    gpt2 = tmp_path / "gpt2"
    GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=100, bos_token_id=0, eos_token_id=0)).save_pretrained(gpt2)
    proc = run_pacos("export", gpt2, "--out", tmp_path / "g.gguf")
    assert proc.returncode == 2 and "GPT2LMHeadModel" in proc.stderr and "LlamaForCausalLM" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr

    good = tmp_path / "good.gguf"
    export_gguf(str(tiny_model_dir), good, "f16", verify=False, **QUIET)
    truncated = tmp_path / "truncated.gguf"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    corrupt = tmp_path / "corrupt.gguf"
    corrupt.write_bytes(b"GGUF" + bytes(range(256)) * 8)
    not_gguf = tmp_path / "text.gguf"
    not_gguf.write_text("hello")
    for path, says in ((truncated, "truncated"), (corrupt, "corrupt"), (not_gguf, "not a GGUF")):
        proc = run_pacos("ask", path, "hi", "--max-new-tokens", "2")
        assert proc.returncode != 0 and says in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr

    proc = run_pacos("export", good, "--out", tmp_path / "again.gguf")
    assert proc.returncode == 2 and "already a GGUF file" in proc.stderr

    proc = run_pacos("export", tiny_model_dir, "--out", tmp_path / "x.gguf", "--quant", "q3_k")
    assert proc.returncode == 2 and "q4_k_m" in proc.stderr


def test_without_llama_cpp_python_export_says_how_to_install(tiny_model_dir, tmp_path):
    import subprocess
    import sys

    code = ("import sys; sys.modules['llama_cpp'] = None; from pacos.cli import main; "
            f"sys.exit(main(['export', {str(tiny_model_dir)!r}, '--out', {str(tmp_path / 'm.gguf')!r}, "
            "'--quant', 'q4_k_m']))")
    proc = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "llama-cpp-python" in proc.stderr and "pip install" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "m.gguf").exists()


def test_export_cli_reports_the_checks(tiny_model_dir, tmp_path):
    proc = run_pacos("export", tiny_model_dir, "--out", tmp_path / "m.gguf", "--quant", "q4_k_m", check=True)
    assert "q4_k_m" in proc.stdout and "token ids equal" in proc.stdout and "KL" in proc.stdout
    assert (tmp_path / "m.gguf").stat().st_size < (tiny_model_dir / "model.safetensors").stat().st_size / 3
    assert metadata(tmp_path / "m.gguf")["general.file_type"] == 15  # LLAMA_FTYPE_MOSTLY_Q4_K_M
