"""`--resume` with damaged checkpoints: each kind of damage is named, the newest whole one is used, the run matches."""

import json
import os
import shutil

import pytest
import torch

from pacos.cli import main as cli_main
from pacos.data.formats import save_records
from pacos.data.synth import synth_records
from pacos.train.checkpoints import (
    CheckpointError,
    checkpoint_problem,
    choose_resume_checkpoint,
)
from pacos.train.config import TrainConfig
from pacos.train.loop import train

from .test_train import _StopAt

# Checkpoints every 2 steps and the Trainer keeps the last 2: a run stopped at step 6 holds checkpoint-4 and -6.
KW = dict(batch_size=8, grad_accum=1, max_len=128, progress=False, warmup_ratio=0.0, max_steps=8, lr=3e-3,
          save_every=2, seed=7)


def _config(model, data, out, **kw):
    return TrainConfig(model=str(model), data=str(data), out=str(out), **{**KW, **kw})


def _losses(out):
    return [json.loads(line)["loss"] for line in (out / "train_log.jsonl").read_text().splitlines()
            if "loss" in json.loads(line)]


@pytest.fixture(scope="module")
def runs(tiny_model_dir, tmp_path_factory):
    """(data file, losses of an uninterrupted 8-step run, output dir of the same run stopped after step 6)."""
    root = tmp_path_factory.mktemp("resume")
    data = root / "train.jsonl"
    save_records(synth_records(64, seed=5), data, "jsonl")
    train(_config(tiny_model_dir, data, root / "full"), log=lambda *_: None)
    train(_config(tiny_model_dir, data, root / "part"), log=lambda *_: None, callbacks=[_StopAt(6)])
    names = sorted(p.name for p in (root / "part" / "checkpoints").iterdir())
    assert names == ["checkpoint-4", "checkpoint-6"]
    return data, _losses(root / "full"), root / "part"


def _truncate(path):
    os.truncate(path, path.stat().st_size // 2)


def _half_written(ckpt):
    # SIGKILL mid-save: the Trainer writes weights, then optimizer/scheduler, RNG, and trainer_state.json last.
    _truncate(ckpt / "optimizer.pt")
    for name in ("scheduler.pt", "rng_state.pth", "trainer_state.json"):
        (ckpt / name).unlink()


DAMAGE = {
    "truncated weights": (lambda c: _truncate(c / "model.safetensors"), "model.safetensors does not load"),
    "missing optimizer": (lambda c: (c / "optimizer.pt").unlink(), "optimizer.pt is missing"),
    "truncated scheduler": (lambda c: _truncate(c / "scheduler.pt"), "scheduler.pt does not load"),
    "missing rng state": (lambda c: (c / "rng_state.pth").unlink(), "rng_state.pth is missing"),
    "garbage trainer state": (lambda c: (c / "trainer_state.json").write_text('{"global_step": 6,'),
                              "trainer_state.json does not load"),
    "unknown trainer state field": (lambda c: (c / "trainer_state.json").write_text('{"nonsense": 1}'),
                                    "trainer_state.json does not load"),
    "half-written by SIGKILL": (_half_written, "trainer_state.json is missing"),
    "missing weights": (lambda c: (c / "model.safetensors").unlink(), "no weights file"),
}


def _copy_run(part, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(part, out)
    return out


@pytest.mark.parametrize("kind", DAMAGE)
def test_each_damage_is_named_and_the_previous_checkpoint_chosen(runs, tmp_path, kind):
    _, _, part = runs
    out = _copy_run(part, tmp_path)
    ckpts = out / "checkpoints"
    assert checkpoint_problem(ckpts / "checkpoint-6", lora=False) is None  # whole before the damage
    damage, reason = DAMAGE[kind]
    damage(ckpts / "checkpoint-6")
    assert reason in checkpoint_problem(ckpts / "checkpoint-6", lora=False)
    lines = []
    chosen = choose_resume_checkpoint(ckpts, lora=False, log=lines.append)
    assert chosen == ckpts / "checkpoint-4"
    assert len(lines) == 1 and "checkpoint-6" in lines[0] and reason in lines[0] and "checkpoint-4" in lines[0]
    # Moved out of the Trainer's `checkpoint-*` glob, so a later --resume or rotation never picks it again.
    assert not (ckpts / "checkpoint-6").exists() and (ckpts / "damaged-checkpoint-6").is_dir()


def test_a_full_checkpoint_is_not_resumed_as_a_lora_run(runs):
    _, _, part = runs
    problem = checkpoint_problem(part / "checkpoints" / "checkpoint-6", lora=True)
    assert "full-model weights" in problem and "--lora" in problem


@pytest.mark.parametrize("kind", ["half-written by SIGKILL", "truncated weights"])
def test_resume_past_a_damaged_checkpoint_matches_uninterrupted_run(tiny_model_dir, runs, tmp_path, kind):
    data, full_losses, part = runs
    out = _copy_run(part, tmp_path)
    DAMAGE[kind][0](out / "checkpoints" / "checkpoint-6")
    lines = []
    result = train(_config(tiny_model_dir, data, out, resume=True), log=lines.append)
    assert any("checkpoint-6 is damaged" in line for line in lines)
    assert any("resuming" in line and line.rstrip(")").endswith("checkpoint-4") for line in lines)
    assert result.steps == 8
    assert _losses(out) == pytest.approx(full_losses, rel=1e-4, abs=1e-5)
    # The resumed run wrote a fresh checkpoint-6 beside the one set aside.
    assert checkpoint_problem(out / "checkpoints" / "checkpoint-8", lora=False) is None


def test_every_checkpoint_damaged_is_one_line_and_nonzero_exit(tiny_model_dir, runs, tmp_path, capsys):
    data, _, part = runs
    out = _copy_run(part, tmp_path)
    _half_written(out / "checkpoints" / "checkpoint-6")
    (out / "checkpoints" / "checkpoint-4" / "trainer_state.json").write_text("<html>not json</html>")
    # The CLI's own entry point, in this process: a subprocess would spend its time importing transformers.
    code = cli_main(["train", "--model", str(tiny_model_dir), "--data", str(data), "--out", str(out), "--resume",
                     "--max-steps", "8", "--no-progress"])
    stderr = capsys.readouterr().err
    assert code != 0 and "Traceback" not in stderr
    error = stderr.strip().splitlines()
    assert len(error) == 1 and error[0].startswith("pacos: error: --resume: no checkpoint")
    assert "checkpoint-6: trainer_state.json is missing" in error[0]
    assert "checkpoint-4: trainer_state.json does not load" in error[0]
    # Nothing is moved when there is nothing to resume from: the user decides what to keep.
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["checkpoint-4", "checkpoint-6"]


def test_a_checkpoint_the_trainer_cannot_load_is_one_error(tiny_model_dir, runs, tmp_path):
    """A file that loads but does not fit (here an optimizer.pt of the wrong shape) fails inside the Trainer."""
    data, _, part = runs
    out = _copy_run(part, tmp_path)
    torch.save({"not": "an optimizer state"}, out / "checkpoints" / "checkpoint-6" / "optimizer.pt")
    assert checkpoint_problem(out / "checkpoints" / "checkpoint-6", lora=False) is None
    with pytest.raises(CheckpointError, match=r"checkpoint-6: could not load its optimizer or scheduler state"):
        train(_config(tiny_model_dir, data, out, resume=True), log=lambda *_: None)
