"""The memory plan (`pacos train --dry-run`) against published runs and against what the CPU measures.

Published anchors, from config.json files with LLaMA's published dimensions (nothing downloaded): Alpaca 7B
full fine-tuning with FSDP on 4 x A100-80GB fits; the same without sharding on one A100-80GB does not; QLoRA
fine-tunes LLaMA-65B on one 48 GB GPU; LoRA on 7B fits a 24 GB RTX 4090. Measured: the tensors autograd
saves (exact bytes) and the peak RSS of a real training run on the `small` preset.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pacos.errors import PacosError
from pacos.options import ConfigError
from pacos.train.config import TrainConfig
from pacos.train.dry_run import PlanOptions, read_model_shape, setup_of
from pacos.train.memory_plan import GIB, ModelShape, Setup, plan_memory

from ..conftest import run_pacos

LLAMA_7B = dict(hidden_size=4096, num_hidden_layers=32, num_attention_heads=32, intermediate_size=11008)
LLAMA_65B = dict(hidden_size=8192, num_hidden_layers=80, num_attention_heads=64, intermediate_size=22016)


def _llama_dir(tmp_path, dims, dtype) -> Path:
    path = tmp_path / f"llama-{dims['num_hidden_layers']}-{dtype}"
    path.mkdir(exist_ok=True)
    (path / "config.json").write_text(json.dumps({
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 32000,
        "max_position_embeddings": 2048, "rms_norm_eps": 1e-6, "tie_word_embeddings": False,
        "torch_dtype": dtype, **dims}))
    return path


def _plan(model_dir, gpu=None, devices=None, **train):
    config = TrainConfig(model=str(model_dir), data="-", out="-", **train)
    options = PlanOptions(gpu=gpu, devices=devices)
    return plan_memory(read_model_shape(model_dir), setup_of(config, options))


def _term(plan, name) -> float:
    return next(t.bytes for t in plan.terms if t.name == name)


# Alpaca's train.py loaded LLaMA in fp32 (transformers' default then) and trained with --bf16 True; pacos
# trains the checkpoint's dtype, so the Alpaca anchors use an fp32 checkpoint.
def test_alpaca_7b_full_fsdp_on_4_a100_80gb_fits(tmp_path):
    plan = _plan(_llama_dir(tmp_path, LLAMA_7B, "float32"), gpu="a100-80gb", fsdp=True, nproc=4, batch_size=4,
                 max_len=512)
    assert plan.model.params == pytest.approx(6.74e9, rel=0.01)
    assert "bf16 mixed" in plan.precision and plan.setup.devices == 4
    states = _term(plan, "weights") + _term(plan, "gradients") + _term(plan, "optimizer")
    assert states == pytest.approx(16 * plan.model.params / 4)
    fits, line = plan.verdict("a100-80gb")
    assert fits and 30 * GIB < plan.total < 60 * GIB, line


def test_7b_full_on_one_a100_80gb_does_not_fit(tmp_path):
    plan = _plan(_llama_dir(tmp_path, LLAMA_7B, "float32"), gpu="a100-80gb", batch_size=4, max_len=512)
    states = _term(plan, "weights") + _term(plan, "gradients") + _term(plan, "optimizer")
    assert states == pytest.approx(16 * plan.model.params) and states > 105e9  # 16 bytes/param: 108 GB
    assert not plan.verdict("a100-80gb")[0]
    checkpointed = _plan(_llama_dir(tmp_path, LLAMA_7B, "float32"), gpu="a100-80gb", batch_size=1, max_len=512,
                         gradient_checkpointing=True)
    assert not checkpointed.verdict("a100-80gb")[0]  # the states alone are more than the card


def test_qlora_65b_on_one_48gb_gpu_fits(tmp_path):
    # The QLoRA paper's Guanaco-65B: LoRA r=64 on every linear layer, batch 1, 512 tokens, checkpointing.
    model = _llama_dir(tmp_path, LLAMA_65B, "float16")
    plan = _plan(model, gpu="a6000-48gb", qlora=True, lora_r=64, lora_target="all-linear", batch_size=1,
                 max_len=512, gradient_checkpointing=True)
    assert plan.model.params == pytest.approx(65.2e9, rel=0.01)
    assert 30 * GIB < _term(plan, "weights") < 35 * GIB  # ~0.516 bytes per linear weight (NF4 + DQ constants)
    fits, line = plan.verdict("a6000-48gb")
    assert fits and "paged" not in line, line
    fits, line = plan.verdict("a100-40gb")  # 4.4 GiB over, less than the paged moments (6 GiB)
    assert fits and "of the paged optimizer state in CPU memory" in line, line
    lora16 = _plan(model, gpu="a6000-48gb", lora=True, batch_size=1, max_len=512, gradient_checkpointing=True)
    assert not lora16.verdict("a6000-48gb")[0]  # a 16-bit base is 121 GiB


def test_lora_7b_on_a_24gb_rtx4090_fits(tmp_path):
    # alpaca-lora's micro batch 4 x 256 tokens, q_proj/v_proj r=8; its base was 8-bit, pacos's the fp16 checkpoint.
    model = _llama_dir(tmp_path, LLAMA_7B, "float16")
    plan = _plan(model, gpu="rtx4090", lora=True, batch_size=4, max_len=256)
    assert plan.trainable == 4_194_304  # 32 layers x 2 modules x 8 x (4096 + 4096)
    assert plan.verdict("rtx4090")[0], plan.verdict("rtx4090")[1]
    assert not _plan(model, gpu="rtx4090", batch_size=4, max_len=256).verdict("rtx4090")[0]  # full: no


def test_lora_parameters_are_peft_s_count(tiny_model_dir):
    from peft import LoraConfig, get_peft_model

    from pacos.models.loading import load_model

    for target in ("q_proj,v_proj", "all-linear", "k_proj,down_proj"):
        model, _ = load_model(tiny_model_dir, trainable=True)
        base_params = sum(p.numel() for p in model.parameters())
        names = "all-linear" if target == "all-linear" else target.split(",")
        peft_model = get_peft_model(model, LoraConfig(r=4, target_modules=names, task_type="CAUSAL_LM"))
        plan = _plan(tiny_model_dir, lora=True, lora_r=4, lora_target=target)
        assert plan.trainable == peft_model.get_nb_trainable_parameters()[0], target
        assert plan.model.params == base_params


def test_fsdp_divides_the_states_by_the_devices_and_ddp_does_not(tmp_path):
    model = _llama_dir(tmp_path, LLAMA_7B, "float32")
    one = _plan(model)
    sharded = _plan(model, fsdp=True, nproc=2, devices=8)  # --devices overrides --nproc for planning
    assert sharded.setup.devices == 8
    assert _term(sharded, "optimizer") == pytest.approx(_term(one, "optimizer") / 8)
    ddp = _plan(model, devices=8)
    assert _term(ddp, "optimizer") == _term(one, "optimizer") and _term(ddp, "DDP buckets") > 0
    with pytest.raises(PacosError, match="--devices N or --nproc N"):
        _plan(model, fsdp=True)


def test_checkpointing_and_precision_change_the_activations(tmp_path):
    model = _llama_dir(tmp_path, LLAMA_7B, "float32")
    plain, checkpointed = _plan(model), _plan(model, gradient_checkpointing=True)
    assert _term(checkpointed, "activations") < _term(plain, "activations") / 5
    fp32 = _plan(model, bf16="off")
    assert fp32.precision == "fp32" and "bf16 weight copies" not in {t.name for t in fp32.terms}
    half = _plan(_llama_dir(tmp_path, LLAMA_7B, "bfloat16"))  # full fine-tuning loads fp32 master weights
    assert half.model.dtype == "float32" and _term(half, "optimizer") == pytest.approx(8 * half.model.params)
    assert _term(half, "weights") == _term(_plan(model), "weights")  # as from an fp32 checkpoint
    t4 = _plan(model, gpu="t4")  # no bf16 on a T4: --bf16 auto trains fp32
    assert t4.precision == "fp32"
    with pytest.raises(ConfigError, match="no bfloat16"):
        _plan(model, gpu="t4", bf16="on")


def test_unknown_gpu_and_architecture_are_one_line_errors(tmp_path):
    with pytest.raises(ConfigError, match="known: h200, h100-80gb, a100-80gb"):
        PlanOptions(gpu="gtx-9000")
    path = tmp_path / "gpt2"
    path.mkdir()
    (path / "config.json").write_text(json.dumps({"model_type": "gpt2", "n_embd": 768, "n_layer": 12}))
    with pytest.raises(PacosError, match="LLaMA-style decoders"):
        read_model_shape(path)


def test_cli_dry_run_prints_the_plan_and_trains_nothing(tmp_path):
    model = _llama_dir(tmp_path, LLAMA_7B, "float32")
    proc = run_pacos("train", "--model", model, "--dry-run", "--fsdp", "--nproc", "4", "--gpu", "a100-80gb",
                     check=True)
    assert "full fine-tuning, bf16 mixed precision" in proc.stdout and "FSDP full_shard" in proc.stdout
    for term in ("weights", "gradients", "optimizer", "activations", "total", "fits on a100-80gb"):
        assert term in proc.stdout, term
    plan = json.loads(run_pacos("train", "--model", model, "--dry-run", "--json", "--qlora", "--gpu", "t4",
                                "--gradient-checkpointing", check=True).stdout)
    assert plan["method"] == "qlora" and "fp16 compute" in plan["precision"] and plan["fits"] is True
    assert sorted(p.name for p in tmp_path.iterdir()) == [model.name]  # nothing written
    bad = run_pacos("train", "--model", model, "--dry-run", "--gpu", "gtx-9000")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "known: h200" in bad.stderr
    missing = run_pacos("train", "--model", model)
    assert missing.returncode == 2 and "needs --data FILE and --out DIR" in missing.stderr


SMALL = ModelShape(hidden=512, layers=8, heads=8, intermediate=1376, vocab=365)


@pytest.mark.parametrize("method,target,checkpointing", [("full", "q_proj,v_proj", False),
                                                          ("lora", "q_proj,v_proj", False),
                                                          ("lora", "all-linear", False),
                                                          ("full", "q_proj,v_proj", True)])
def test_planned_activations_are_the_bytes_autograd_saves(method, target, checkpointing):
    """The activation formula, checked exactly: every tensor the backward pass keeps, counted once."""
    import torch
    from peft import LoraConfig, get_peft_model

    from pacos.models.presets import build_model
    from pacos.train.packing import packed_collator, use_packed_attention

    torch.manual_seed(0)
    model, _ = build_model("small")
    model.train()
    use_packed_attention(model)  # pacos's default: packed records, sdpa record by record
    if method == "lora":
        model = get_peft_model(model, LoraConfig(r=8, lora_dropout=0.05, task_type="CAUSAL_LM",
                                                 target_modules="all-linear" if target == "all-linear"
                                                 else target.split(",")))
    if checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    batch, length = 4, 128
    rows = [{"input_ids": torch.randint(3, 300, (length,)).tolist(), "labels": torch.randint(3, 300, (length,)).tolist()}
            for _ in range(batch)]
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved = {}

    def keep(t):
        storage = t.untyped_storage()
        if storage.data_ptr() not in params:
            saved[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(keep, lambda t: t):
        model(**packed_collator()(rows))
    setup = Setup(method=method, bf16=False, batch_size=batch, max_len=length, lora_target=target,
                  gradient_checkpointing=checkpointing, device="cpu")
    plan = plan_memory(SMALL, setup)
    # The plan's activations, and of the logits term the fp32 log-softmax the loss keeps (4 of its 12 B).
    planned = _term(plan, "activations") + 4 * batch * length * SMALL.vocab
    measured = sum(saved.values())
    if checkpointing:  # the plan adds the one layer the backward pass recomputes, not saved in the forward
        planned -= batch * length * plan.layer_activations
    assert measured == pytest.approx(planned, rel=0.06), (measured, planned)


def _measure(model_dir, data, out, *args) -> dict:
    script = Path(__file__).with_name("peak_rss.py")
    proc = subprocess.run([sys.executable, str(script), str(model_dir), str(data), str(out), *map(str, args)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def long_records(tmp_path_factory):
    """Records longer than any --max-len here: every row is exactly max_len tokens, the plan's worst case."""
    import random

    from pacos.data.formats import save_records
    from pacos.data.records import Example

    rng = random.Random(0)
    path = tmp_path_factory.mktemp("data") / "long.jsonl"
    words = ["alpha", "beta", "gamma", "delta"]
    save_records([Example(f"Repeat item {i}.", "", " ".join(rng.choice(words) for _ in range(200)))
                  for i in range(32)], path, "jsonl")
    return path


@pytest.fixture(scope="module")
def small_model_dir(tmp_path_factory):
    from pacos.models.presets import init_model

    path = tmp_path_factory.mktemp("models") / "small"
    init_model("small", path, seed=0)
    return path


def _planned_cpu(model_dir, **train) -> float:
    config = TrainConfig(model=str(model_dir), data="-", out="-", bf16="off", **train)
    return plan_memory(read_model_shape(model_dir), setup_of(config, PlanOptions(), device="cpu")).total


def test_plan_matches_the_measured_peak_of_a_small_run(small_model_dir, long_records, tmp_path):
    """Full fine-tuning of `small` (26M) for 2 steps of 2 x 64 tokens: the weights' states dominate."""
    measured = _measure(small_model_dir, long_records, tmp_path / "run", "full", 2, 64, 2)["increase"]
    planned = _planned_cpu(small_model_dir, batch_size=2, max_len=64)
    assert planned == pytest.approx(measured, rel=0.25), (planned, measured)


@pytest.mark.slow
@pytest.mark.parametrize("preset,batch,length,extra", [("small", 8, 128, ()), ("small", 8, 128, ("--gradient-checkpointing",)),
                                                       ("tiny", 8, 128, ())])
def test_plan_matches_the_measured_peak_with_activations(preset, batch, length, extra, small_model_dir,
                                                         tiny_model_dir, long_records, tmp_path):
    """Batches where activations weigh as much as the states; `tiny` prints its numbers (fixed overhead
    dominates its ~100 MB: its bound is 80 MB absolute, not 25%)."""
    model_dir = small_model_dir if preset == "small" else tiny_model_dir
    measured = _measure(model_dir, long_records, tmp_path / "run", "full", batch, length, 3, *extra)["increase"]
    planned = _planned_cpu(model_dir, batch_size=batch, max_len=length,
                           gradient_checkpointing="--gradient-checkpointing" in extra)
    print(f"{preset} batch {batch} x {length} {' '.join(extra)}: planned {planned / 2**20:.0f} MiB, "
          f"measured {measured / 2**20:.0f} MiB")
    if preset == "tiny":
        assert abs(planned - measured) < 80 * 2**20
    else:
        assert planned == pytest.approx(measured, rel=0.25), (planned, measured)
