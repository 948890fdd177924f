"""Training end to end on the tiny offline model: loss falls, overfitting reproduces, LoRA, merge, resume."""

import json

import pytest
import torch
from transformers import TrainerCallback

from pacos.data.formats import save_records
from pacos.data.records import Example
from pacos.data.synth import synth_records
from pacos.models.loading import load_model
from pacos.train.config import TrainConfig
from pacos.train.loop import train
from pacos.train.merge import merge_adapter

from ..conftest import run_pacos


def _config(model, data, out, **kw):
    base = dict(model=str(model), data=str(data), out=str(out), batch_size=8, grad_accum=1, max_len=128,
                progress=False, save_every=1000, warmup_ratio=0.0)
    return TrainConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def synth_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "train.jsonl"
    save_records(synth_records(64, seed=5), path, "jsonl")
    return path


def _losses(out):
    return [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]


def test_loss_goes_down_and_outputs_are_written(tiny_model_dir, synth_file, tmp_path):
    out = tmp_path / "full"
    result = train(_config(tiny_model_dir, synth_file, out, max_steps=16, lr=3e-3), log=lambda *_: None)
    rows = [r for r in _losses(out) if "loss" in r]
    assert len(rows) == 16 and rows[-1]["step"] == 16
    assert sum(r["loss"] for r in rows[-4:]) / 4 < 0.85 * sum(r["loss"] for r in rows[:4]) / 4
    assert all(r["tokens_per_s"] > 0 and r["lr"] is not None for r in rows)
    assert (out / "loss_curve.png").stat().st_size > 1000
    assert result.steps == 16
    model, tok = load_model(out)
    assert tok.pad_token_id is not None and model.generation_config.pad_token_id == tok.pad_token_id
    assert model.generation_config.eos_token_id == tok.eos_token_id
    assert json.loads((out / "pacos_train.json").read_text())["template"] == "alpaca"


def test_overfit_eight_records_reproduced_by_greedy_infer(tiny_model_dir, tmp_path):
    records = [Example(f"Say the code for item {i}.", "", code) for i, code in
               enumerate(["kqz", "Plum 7", "x-y-z", "moon", "42", "tea time", "QQ", "zebra!"])]
    save_records(records, tmp_path / "eight.jsonl", "jsonl")
    out = tmp_path / "overfit"
    train(_config(tiny_model_dir, tmp_path / "eight.jsonl", out, max_steps=120, lr=3e-3), log=lambda *_: None)
    proc = run_pacos("infer", out, "--data", tmp_path / "eight.jsonl", "--out", tmp_path / "gen.jsonl",
                     "--max-new-tokens", "16", check=True)
    assert "Traceback" not in proc.stderr
    generated = [json.loads(line)["generated"] for line in (tmp_path / "gen.jsonl").read_text().splitlines()]
    assert generated == [r.output for r in records]


def _logits(model, ids):
    with torch.no_grad():
        return model(input_ids=torch.tensor([ids])).logits


def test_lora_adapter_saved_reloads_and_merges(tiny_model_dir, synth_file, tmp_path):
    out = tmp_path / "lora"
    train(_config(tiny_model_dir, synth_file, out, max_steps=6, lr=1e-2, lora=True, lora_target="all-linear"),
          log=lambda *_: None)
    assert (out / "adapter_config.json").is_file()
    from safetensors.torch import load_file

    tensors = load_file(str(out / "adapter_model.safetensors"))
    assert any("lora_B" in k and t.abs().max() > 0 for k, t in tensors.items())
    assert not (out / "model.safetensors").exists()  # an adapter, not full weights

    ids = [1, 40, 50, 60, 70, 80]
    adapter_model, _ = load_model(out, merge_adapter=False)
    base_model, _ = load_model(tiny_model_dir)
    assert not torch.allclose(_logits(adapter_model, ids), _logits(base_model, ids), atol=1e-4)

    merged_dir = merge_adapter(out, tmp_path / "merged")
    merged, _ = load_model(merged_dir)
    assert (merged_dir / "model.safetensors").is_file()
    torch.testing.assert_close(_logits(merged, ids), _logits(adapter_model, ids), atol=1e-4, rtol=1e-4)


class _StopAt(TrainerCallback):
    def __init__(self, step):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            control.should_training_stop = True


@pytest.mark.parametrize("lora", [False, True])
def test_resume_matches_uninterrupted_run(tiny_model_dir, synth_file, tmp_path, lora):
    kw = dict(max_steps=8, lr=3e-3, save_every=4, lora=lora, lora_dropout=0.1, seed=7)
    full, part = tmp_path / "full", tmp_path / "part"
    train(_config(tiny_model_dir, synth_file, full, **kw), log=lambda *_: None)
    train(_config(tiny_model_dir, synth_file, part, **kw), log=lambda *_: None, callbacks=[_StopAt(4)])
    assert (part / "checkpoints" / "checkpoint-4").is_dir()
    assert max(r["step"] for r in _losses(part)) == 4
    train(_config(tiny_model_dir, synth_file, part, resume=True, **kw), log=lambda *_: None)
    a = [r["loss"] for r in _losses(full) if "loss" in r]
    b = [r["loss"] for r in _losses(part) if "loss" in r]
    assert len(a) == len(b) == 8
    assert b == pytest.approx(a, rel=1e-4, abs=1e-5)


def test_resume_without_checkpoint_is_a_clear_error(tiny_model_dir, synth_file, tmp_path):
    proc = run_pacos("train", "--model", tiny_model_dir, "--data", synth_file, "--out", tmp_path / "x", "--resume")
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "no checkpoint" in proc.stderr


@pytest.mark.parametrize("args,message", [
    (["--model", "{model}", "--data", "{tmp}/missing.json"], "missing.json"),
    (["--model", "{tmp}/no-model", "--data", "{data}"], "no such directory"),
    (["--model", "nobody/not-a-model", "--data", "{data}"], "HF_HUB_OFFLINE"),
    (["--model", "{model}", "--data", "{data}", "--lora", "--lora-target", "nonexistent_proj"], "lora-target"),
])
def test_train_bad_input_is_one_line_error(tiny_model_dir, synth_file, tmp_path, args, message):
    args = [a.format(model=tiny_model_dir, tmp=tmp_path, data=synth_file) for a in args]
    proc = run_pacos("train", *args, "--out", tmp_path / "out", "--max-steps", "1")
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr and message in proc.stderr


@pytest.mark.parametrize("lora", [False, True])
def test_a_bf16_checkpoint_trains_from_fp32_weights(tiny_model_dir, synth_file, tmp_path, lora):
    # Full fine-tuning keeps fp32 master weights whatever the checkpoint's dtype (AdamW moments in bf16 would
    # lose the small updates); on a CPU the LoRA base is fp32 too.
    model, tokenizer = load_model(tiny_model_dir)
    half = tmp_path / "bf16"
    model.to(torch.bfloat16).save_pretrained(half)
    tokenizer.save_pretrained(half)
    assert load_model(half)[0].dtype == torch.bfloat16
    seen = []

    class Dtypes(TrainerCallback):
        def on_step_end(self, args, state, control, model=None, optimizer=None, **kw):
            seen.append({p.dtype for p in model.parameters()})
            seen.append({t.dtype for s in optimizer.state.values() for t in s.values() if t.dim() > 0})

    train(_config(half, synth_file, tmp_path / "out", max_steps=1, lora=lora), log=lambda *_: None,
          callbacks=[Dtypes()])
    assert seen == [{torch.float32}, {torch.float32}]
