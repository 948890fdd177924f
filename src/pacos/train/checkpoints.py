"""Which checkpoint `--resume` continues from: the newest whole one, with one line for each damaged one skipped."""

from __future__ import annotations

import json
import re
from pathlib import Path

from pacos.errors import PacosError
from pacos.models.loading import first_line

CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")  # transformers' PREFIX_CHECKPOINT_DIR naming
DAMAGED_PREFIX = "damaged-"  # outside the Trainer's `checkpoint-*` glob, so neither it nor we pick it again

# What a transformers 5.x Trainer reads when it resumes (Trainer._load_from_checkpoint,
# _load_optimizer_and_scheduler, _load_rng_state, TrainerState.load_from_json). The Trainer quietly skips a
# missing optimizer, scheduler or RNG file, and the run goes on with fresh state: a different run from the one
# that was interrupted, so here a missing one makes the checkpoint damaged.
STATE_FILE = "trainer_state.json"
TORCH_FILES = ("optimizer.pt", "scheduler.pt")
FULL_WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")
FSDP_WEIGHTS, FSDP_OPTIMIZER = "pytorch_model_fsdp.bin", "optimizer.bin"  # accelerate's FULL_STATE_DICT files
ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")


class CheckpointError(PacosError):
    """No checkpoint can be resumed from, or the Trainer could not load the one chosen."""


def checkpoints_newest_first(ckpt_dir: Path) -> list[Path]:
    found = [(int(m.group(1)), p) for p in Path(ckpt_dir).iterdir()
             if p.is_dir() and (m := CHECKPOINT_RE.match(p.name))] if Path(ckpt_dir).is_dir() else []
    return [p for _, p in sorted(found, reverse=True)]


def checkpoint_problem(path: Path, lora: bool) -> str | None:
    """Why the Trainer could not resume exactly from `path`, or None when every file it reads loads."""
    try:
        for file, load in _files_the_trainer_reads(Path(path), lora):
            if not file.is_file():
                return f"{file.name} is missing" + (" (the save was cut short)" if file.name == STATE_FILE else "")
            try:
                load(file)
            except Exception as e:  # whatever a library raises on this file, the Trainer would raise too
                return f"{file.name} does not load: {first_line(e)}"
    except _Damaged as e:
        return str(e)
    return None


def choose_resume_checkpoint(ckpt_dir: Path, lora: bool, log=print, set_aside: bool = True) -> Path:
    """The newest whole checkpoint; damaged newer ones are moved aside, each with one line saying why.

    `set_aside=False` (the other processes of a run, beside rank 0 moving them) leaves them where they are.
    """
    candidates = checkpoints_newest_first(ckpt_dir)
    if not candidates:
        raise CheckpointError(f"--resume: no checkpoint in {ckpt_dir} to resume from; run without --resume")
    damaged = []
    for path in candidates:
        problem = checkpoint_problem(path, lora)
        if problem is None:
            for bad, why in damaged if set_aside else ():
                aside = _set_aside(bad)
                log(f"checkpoint {bad} is damaged ({why}): moved it to {aside.name}, resuming from {path.name}")
            return path
        damaged.append((path, problem))
    reasons = "; ".join(f"{p.name}: {why}" for p, why in damaged)
    raise CheckpointError(f"--resume: no checkpoint in {ckpt_dir} is whole ({reasons}); "
                          "run without --resume to start over")


class _Damaged(Exception):
    """A checkpoint lacks something before any one file can be blamed (no weights at all, the wrong kind)."""


def _files_the_trainer_reads(path: Path, lora: bool):
    """(file, loader) pairs in the order the Trainer reads them on resume; a loader raises if the file is bad."""
    yield path / STATE_FILE, _read_trainer_state
    wanted, other = (ADAPTER_WEIGHTS, FULL_WEIGHTS) if lora else (FULL_WEIGHTS, ADAPTER_WEIGHTS)
    present = [name for name in wanted if (path / name).is_file()]
    if not present:
        if any((path / name).is_file() for name in other):
            kind = "full-model weights" if lora else "a LoRA adapter"
            raise _Damaged(f"it holds {kind}: resume with{'out' if lora else ''} --lora, as the run was started")
        raise _Damaged(f"no weights file ({' or '.join(wanted)})")
    if lora:
        yield path / "adapter_config.json", _read_json  # peft's load_adapter reads it
    elif (path / "config.json").is_file():
        yield path / "config.json", _read_json  # the Trainer reads it when present, for the version check
    weights = path / present[0]
    if weights.name.endswith(".index.json"):
        yield weights, _read_shard_index
        for shard in sorted(set(_read_shard_index(weights).values())):
            yield path / shard, _open_safetensors
    else:
        yield weights, _open_safetensors if weights.suffix == ".safetensors" else _read_torch
    if (path / FSDP_WEIGHTS).is_file():  # an FSDP run's: the whole model and optimizer gathered from the shards
        yield path / FSDP_WEIGHTS, _read_torch
        yield path / FSDP_OPTIMIZER, _read_torch
        yield path / "scheduler.pt", _read_torch
    else:
        for name in TORCH_FILES:
            yield path / name, _read_torch
    # rng_state.pth, or one rng_state_{rank}.pth per process of a distributed run
    for file in sorted(path.glob("rng_state*.pth")) or [path / "rng_state.pth"]:
        yield file, _read_torch
    if (path / "scaler.pt").exists():  # only written with fp16 mixed precision
        yield path / "scaler.pt", _read_torch


def _read_json(file: Path):
    # Plain json, as transformers reads these files: a logged NaN loss is legal in trainer_state.json.
    return json.loads(file.read_text(encoding="utf-8"))


def _read_trainer_state(file: Path) -> None:
    from transformers import TrainerState

    data = _read_json(file)
    TrainerState(**data)  # what TrainerState.load_from_json does: unknown or missing fields fail here
    step = data.get("global_step")
    if not isinstance(step, int) or isinstance(step, bool) or step < 0:
        raise ValueError(f"global_step is {step!r}, not a step count")


def _read_shard_index(file: Path) -> dict:
    weight_map = _read_json(file).get("weight_map")
    if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
        raise ValueError("no weight_map of tensor names to shard files")
    return weight_map


def _open_safetensors(file: Path) -> None:
    from safetensors import safe_open

    # Opening checks the header and that the data covers the file exactly: a torn write fails here.
    with safe_open(str(file), framework="pt") as f:
        f.keys()


def _read_torch(file: Path) -> None:
    import torch
    from transformers.trainer_pt_utils import safe_globals

    # mmap: the zip's directory and pickles are read, not all of a (possibly large) optimizer's tensors.
    # safe_globals: the numpy types the Trainer allows in rng_state.pth.
    with safe_globals():
        torch.load(file, map_location="cpu", weights_only=True, mmap=True)


def _set_aside(path: Path) -> Path:
    target = path.with_name(DAMAGED_PREFIX + path.name)
    n = 1
    while target.exists():
        n += 1
        target = path.with_name(f"{DAMAGED_PREFIX}{n}-{path.name}")
    path.rename(target)
    return target
