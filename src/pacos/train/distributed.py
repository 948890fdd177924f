"""Several training processes: where this one stands in a launched run, `--nproc N` through torchrun, FSDP's settings.

Inside `torchrun` or `accelerate launch` the launcher's environment (RANK, WORLD_SIZE) says how many processes
there are; transformers' Trainer then runs DDP, or FSDP when `--fsdp`. `--nproc N` outside a launcher runs
torchrun itself with the same `pacos train` flags (less `--nproc`), so a run on one machine needs no launcher.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from pacos.errors import PacosError

LAUNCHED_BY_PACOS = "PACOS_TRAIN_LAUNCH"  # in the workers `--nproc` starts: the folder for their error lines


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def launched() -> bool:
    """True inside torchrun / accelerate launch (each worker has its WORLD_SIZE)."""
    return "WORLD_SIZE" in os.environ


def is_main_process() -> bool:
    return rank() == 0


def decoder_layer_class(model) -> str:
    """The class name of the model's repeated decoder block (`LlamaDecoderLayer`), the unit FSDP wraps."""
    import torch

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    no_split = set(getattr(base, "_no_split_modules", None) or ())
    blocks = [m for m in base.modules() if isinstance(m, torch.nn.ModuleList) and len(m) > 0]
    for layers in sorted(blocks, key=len, reverse=True):  # the longest list of identical blocks is the stack
        name = type(layers[0]).__name__
        if (not no_split or name in no_split) and all(type(m) is type(layers[0]) for m in layers):
            return name
    present = sorted({type(m).__name__ for m in base.modules()} & no_split)
    if present:
        return present[0]
    raise PacosError(f"--fsdp: found no decoder layer to wrap in {type(base).__name__} (no list of repeated "
                     "blocks, no _no_split_modules); train it with DDP (drop --fsdp)")


def fsdp_settings(model) -> dict:
    """TrainingArguments.fsdp_config for Alpaca's `--fsdp "full_shard auto_wrap"` on this model's decoder layer."""
    return {
        "version": 2,  # FSDP2 (fully_shard); transformers deprecates FSDP1
        "reshard_after_forward": True,  # full_shard: parameters sharded again after each layer's forward
        "auto_wrap_policy": "TRANSFORMER_BASED_WRAP",
        "transformer_layer_cls_to_wrap": [decoder_layer_class(model)],
        "state_dict_type": "FULL_STATE_DICT",  # one loadable checkpoint, gathered layer by layer on rank 0's CPU
        "cpu_ram_efficient_loading": False,  # every process loads the weights (what a 1-process run starts from)
    }


def fsdp_on_cpu(trainer) -> None:
    """Turn on the FSDP that `--fsdp` asked for in CPU processes (gloo), where accelerate leaves it off.

    accelerate enables FSDP only on accelerators and quietly trains multi-CPU runs with DDP; torch's FSDP2
    (fully_shard) itself runs on CPU with gloo, so the same plugin the Trainer built is switched on.
    """
    if trainer.args.fsdp_plugin_args is None or trainer.is_fsdp_enabled:
        return
    from accelerate import PartialState
    from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin

    state = trainer.accelerator.state
    if state.distributed_type != DistributedType.MULTI_CPU:
        return
    plugin = FullyShardedDataParallelPlugin(**trainer.args.fsdp_plugin_args)
    if state.mixed_precision != "no":
        plugin.set_mixed_precision(state.mixed_precision)
    state.distributed_type = DistributedType.FSDP
    state.fsdp_plugin = plugin
    PartialState._shared_state["distributed_type"] = DistributedType.FSDP  # each AcceleratorState() copies it
    trainer.is_fsdp_enabled = True


def full_state_dict(trainer):
    """The trained weights, whole, on rank 0 (other ranks get {}); every rank must call it (FSDP gathers)."""
    if trainer.is_fsdp_enabled:
        return trainer.accelerator.get_state_dict(trainer.model)  # cpu_offload: rank 0 only, one tensor at a time
    return None  # DDP and one process: each rank holds the whole model already


def train_argv(config) -> list[str]:
    """`pacos train` flags that rebuild `config` (less --nproc): what each launched worker parses."""
    import dataclasses

    from pacos.options import flag_of

    argv = ["train"]
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if f.name == "nproc" or value == f.default or value is None:
            continue
        flag = flag_of(config, f.name)
        if isinstance(value, bool):
            argv.append(flag)  # a bool differs from its default: the flag (or --no-flag) sets it
        elif isinstance(value, tuple):
            for item in value:  # a repeated flag adds each item (commas in a path stay one item)
                argv += [flag, str(os.fspath(item))]
        else:
            argv += [flag, str(os.fspath(value)) if isinstance(value, os.PathLike) else repr(value)
                     if isinstance(value, float) else str(value)]
    return argv


def launch(config, log=print, debug: bool = False) -> int:
    """Run `pacos train` in `config.nproc` processes on this machine (torchrun, standalone); the exit status.

    Rank 0's output comes through; the other ranks' stderr goes to files. A failed run prints one line: each
    worker leaves its error to `report_worker_error`, and rank 0's (else the first failed rank's) is printed.
    """
    import logging

    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    with tempfile.TemporaryDirectory(prefix="pacos-launch-") as logs:
        others = ",".join(f"{r}:2" for r in range(1, config.nproc))  # 2: stderr to a file
        args = get_args_parser().parse_args([
            "--standalone", f"--nproc-per-node={config.nproc}", "--log-dir", logs, "--redirects", others,
            "-m", "pacos.cli", *train_argv(config)])
        os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // config.nproc)))
        os.environ[LAUNCHED_BY_PACOS] = logs
        if debug:
            os.environ["PACOS_DEBUG"] = "1"  # the workers show their tracebacks (`pacos --debug train --nproc N`)
        quiet = logging.getLogger("torch.distributed.elastic")
        level = quiet.level
        quiet.setLevel(logging.CRITICAL)  # its failure report is a traceback; the workers' own lines say why
        log(f"launching {config.nproc} processes (torchrun, {'FSDP full_shard' if config.fsdp else 'DDP'})")
        try:
            run(args)
        except ChildFailedError as e:
            return _report_failure(e, Path(logs))
        finally:
            quiet.setLevel(level)
            os.environ.pop(LAUNCHED_BY_PACOS, None)
    return 0


def report_worker_error(error: Exception, debug: bool = False) -> None:
    """In a worker `--nproc` started: leave the error's one line to the launcher and exit quietly.

    The launcher prints one line for the whole run (rank 0's, else the first rank that failed), not one per
    process. Elsewhere (torchrun, accelerate launch, one process) this returns and the CLI reports as usual.
    """
    folder = os.environ.get(LAUNCHED_BY_PACOS)
    if not folder or debug or os.environ.get("PACOS_DEBUG"):
        return
    if isinstance(error, PacosError):
        line, code = f"pacos: error: {error}", error.exit_code
    else:  # the line pacos.cli.main prints for a bug
        detail = str(error).splitlines()[0][:300] if str(error) else ""
        line = (f"pacos: internal error: {type(error).__name__}{': ' + detail if detail else ''} "
                "(rerun with `pacos --debug ...` for the traceback, and please report it)")
        code = 70
    (Path(folder) / f"error-{rank()}.txt").write_text(f"{code}\n{line}")
    raise SystemExit(code)


def _report_failure(error, logs: Path) -> int:
    """One line for a failed run: rank 0's error, else the first failed rank's, else what torchrun knows."""
    found = sorted((int(p.stem.split("-")[1]), p.read_text().split("\n", 1)) for p in logs.glob("error-*.txt"))
    if found:
        r, (code, line) = next(((r, v) for r, v in found if r == 0), found[0])
        print(line if r == 0 else f"{line} (in process {r})", file=sys.stderr)
        return int(code)
    r = min(error.failures)
    print(f"pacos: error: training process {r} failed (exit code {error.failures[r].exitcode}); run it with "
          "`pacos --debug train ...` for its traceback", file=sys.stderr)
    return 1
