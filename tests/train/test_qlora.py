"""`--qlora`: one line and a non-zero exit where it cannot run (here: no GPU, no bitsandbytes), and on a GPU
the pieces the recipe needs, checked without one: the BitsAndBytesConfig, the TrainingArguments, the loading
call, the casts after LoRA, and TrainConfig's rules."""

from __future__ import annotations

import pytest
import torch

from pacos.data.formats import save_records
from pacos.data.synth import synth_records
from pacos.options import ConfigError
from pacos.train import qlora
from pacos.train.config import TrainConfig

from ..conftest import run_pacos


def _config(**kw):
    return TrainConfig(**{"model": "m", "data": "d.jsonl", "out": "o", **kw})


@pytest.mark.skipif(torch.cuda.is_available(), reason="the no-GPU error path")
def test_qlora_without_a_gpu_is_one_line_and_exit_2(tiny_model_dir, tmp_path):
    save_records(synth_records(4, seed=0), tmp_path / "d.jsonl", "jsonl")
    proc = run_pacos("train", "--model", tiny_model_dir, "--data", tmp_path / "d.jsonl", "--out", tmp_path / "run",
                     "--qlora")
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("pacos: error: --qlora needs a CUDA GPU (this machine has none)")
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert not (tmp_path / "run").exists()  # refused before anything was written or loaded


def test_the_problem_names_what_is_missing():
    assert qlora.qlora_problem(cuda=True, bitsandbytes=True) is None
    assert qlora.qlora_problem(cuda=True, bitsandbytes=False) == \
        "--qlora needs bitsandbytes (pip install 'pacos[qlora]')"
    assert qlora.qlora_problem(cuda=False, bitsandbytes=True) == "--qlora needs a CUDA GPU (this machine has none)"


def test_qlora_implies_lora_and_refuses_fsdp_and_dpo():
    config = _config(qlora=True)
    assert config.lora and config.learning_rate == 3e-4
    with pytest.raises(ConfigError, match="--qlora with --fsdp is not supported"):
        _config(qlora=True, fsdp=True, nproc=2)
    with pytest.raises(ConfigError, match="--qlora with --method dpo"):
        _config(qlora=True, method="dpo")


def test_bitsandbytes_config_is_nf4_with_double_quantization():
    bnb = qlora.quantization_config("bfloat16")
    assert bnb.load_in_4bit and not bnb.load_in_8bit
    assert bnb.bnb_4bit_quant_type == "nf4" and bnb.bnb_4bit_use_double_quant
    assert bnb.bnb_4bit_compute_dtype == torch.bfloat16
    assert qlora.quantization_config("float16").bnb_4bit_compute_dtype == torch.float16


def test_compute_dtype_is_bf16_where_the_gpu_has_it():
    assert qlora.compute_dtype(_config(qlora=True), cuda_bf16=True) == "bfloat16"
    assert qlora.compute_dtype(_config(qlora=True), cuda_bf16=False) == "float16"  # a T4, a V100
    assert qlora.compute_dtype(_config(qlora=True, bf16="off"), cuda_bf16=True) == "float16"


def test_training_arguments_take_the_paged_optimizer(tmp_path):
    from transformers import TrainingArguments
    from transformers.training_args import OptimizerNames

    from pacos.train.arguments import trainer_arguments

    config = _config(qlora=True, out=str(tmp_path))
    base = trainer_arguments(config, tmp_path / "checkpoints", 1, False, True, None)
    args = TrainingArguments(**{**base, **qlora.training_arguments("bfloat16")})
    assert args.optim == OptimizerNames.PAGED_ADAMW == "paged_adamw_32bit"
    assert args.bf16
    assert qlora.training_arguments("float16") == {"optim": "paged_adamw_32bit", "bf16": False}


def test_the_base_loads_quantized_on_this_process_s_gpu(monkeypatch):
    import peft

    import pacos.models.loading as loading

    seen = {}

    def fake_load(ref, **kw):
        seen.update(ref=ref, **kw)
        return "model", "tokenizer"

    def fake_prepare(model, use_gradient_checkpointing):
        seen.update(prepared=model, checkpointing=use_gradient_checkpointing)
        return "prepared"

    monkeypatch.setattr(loading, "load_model", fake_load)
    monkeypatch.setattr(peft, "prepare_model_for_kbit_training", fake_prepare)
    monkeypatch.setenv("LOCAL_RANK", "1")
    model, tok = qlora.load_quantized(_config(qlora=True, gradient_checkpointing=True), "bfloat16")
    assert (model, tok) == ("prepared", "tokenizer")
    assert seen["ref"] == "m" and seen["trainable"] and seen["device_map"] == {"": 1}
    assert seen["quantization_config"].bnb_4bit_quant_type == "nf4"
    assert seen["prepared"] == "model" and seen["checkpointing"] is True


def test_after_lora_the_adapters_and_embeddings_go_to_bf16_and_the_norms_stay_fp32(tiny_model_dir):
    from pacos.models.loading import load_model
    from pacos.train.lora import wrap_lora

    config = _config(model=str(tiny_model_dir), qlora=True, lora_target="all-linear")
    model = wrap_lora(load_model(tiny_model_dir, trainable=True)[0], config, log=lambda *_: None)
    qlora.cast_like_qlora(model, "float16")
    assert {p.dtype for p in model.parameters()} == {torch.float32}  # fp16 compute: fp32 adapters
    qlora.cast_like_qlora(model, "bfloat16")
    dtypes = {name: p.dtype for name, p in model.named_parameters()}
    assert all(d == torch.bfloat16 for n, d in dtypes.items() if "lora_" in n or "embed_tokens" in n
               or "lm_head" in n)
    assert all(d == torch.float32 for n, d in dtypes.items() if "norm" in n)


def test_a_qlora_run_s_wiring_end_to_end_on_cpu(tiny_model_dir, tmp_path, monkeypatch):
    """train() with --qlora where the only stand-ins are the GPU pieces: the base is not quantized
    (flagged 4-bit after training, as the quantizer flags it) and the paged optimizer is plain AdamW. The rest runs
    as on a GPU: k-bit preparation, LoRA, the bf16 casts, the arguments, the save and its checks."""
    from peft import prepare_model_for_kbit_training

    from pacos.models.loading import load_model
    from pacos.train.loop import train

    from transformers import TrainerCallback

    def unquantized(config, dtype):
        model, tokenizer = load_model(config.model, trainable=True)
        return prepare_model_for_kbit_training(model, use_gradient_checkpointing=False), tokenizer

    class FlagFourBit(TrainerCallback):  # what the quantizer sets; the save then skips the fp32 reload check
        def on_train_end(self, args, state, control, model=None, **kwargs):
            model.is_loaded_in_4bit = True

    monkeypatch.setattr(qlora, "check_qlora", lambda: None)
    monkeypatch.setattr(qlora, "load_quantized", unquantized)
    monkeypatch.setattr(qlora, "local_compute_dtype", lambda config: "bfloat16")
    monkeypatch.setattr(qlora, "OPTIMIZER", "adamw_torch")
    save_records(synth_records(16, seed=0), tmp_path / "d.jsonl", "jsonl")
    out = tmp_path / "run"
    result = train(_config(model=str(tiny_model_dir), data=str(tmp_path / "d.jsonl"), out=str(out), qlora=True,
                           max_steps=3, batch_size=4, grad_accum=1, max_len=64, lr=1e-2, progress=False,
                           save_every=1000, warmup_ratio=0.0), log=lambda *_: None, callbacks=[FlagFourBit()])
    assert result.steps == 3
    assert (out / "adapter_config.json").is_file() and not (out / "model.safetensors").exists()
    from safetensors.torch import load_file

    tensors = load_file(str(out / "adapter_model.safetensors"))
    assert tensors and all(t.dtype == torch.bfloat16 for t in tensors.values())  # the recipe's bf16 adapter
    model, _ = load_model(out)  # the usual peft adapter: loads onto its base and merges
    with torch.no_grad():
        assert torch.isfinite(model(input_ids=torch.tensor([[1, 5, 9]])).logits).all()
