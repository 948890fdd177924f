"""Run a few training steps in this process and print its peak RSS over a baseline, as JSON (test_memory_plan).

Usage: python peak_rss.py MODEL_DIR DATA_FILE OUT_DIR full|lora BATCH MAX_LEN STEPS [--gradient-checkpointing]

The baseline is this process with the whole training stack imported (torch, transformers' Trainer, peft,
datasets, matplotlib for the loss curve) and nothing loaded: on a GPU machine the libraries live in host
memory, so what the plan covers, the model and its training state, is what comes on top of them.
"""

import json
import os
import sys

os.environ.setdefault("OMP_NUM_THREADS", "2")
import datasets  # noqa: E402,F401
import matplotlib.pyplot  # noqa: E402,F401
import peft  # noqa: E402,F401
import psutil  # noqa: E402
import torch  # noqa: E402,F401
import transformers  # noqa: E402
from transformers import Trainer, TrainingArguments  # noqa: E402,F401

from pacos.train import arguments, checkpoints, lora, packing, progress, save  # noqa: E402,F401
from pacos.train.config import TrainConfig  # noqa: E402
from pacos.train.loop import train  # noqa: E402


def main(argv):
    model, data, out, method, batch, max_len, steps = argv[:7]
    transformers.logging.set_verbosity_error()
    baseline = psutil.Process().memory_info().rss
    config = TrainConfig(model=model, data=data, out=out, lora=method == "lora", batch_size=int(batch),
                         grad_accum=1, max_len=int(max_len), max_steps=int(steps), save_every=10_000,
                         warmup_ratio=0.0, progress=False, bf16="off", packing="on",
                         gradient_checkpointing="--gradient-checkpointing" in argv)
    train(config, log=lambda *_: None)
    print(json.dumps({"baseline": baseline, "peak": _peak_rss(), "increase": _peak_rss() - baseline}))


def _peak_rss() -> int:
    """This process's peak RSS: VmHWM, which starts afresh at exec (getrusage's ru_maxrss does not: a child
    started from a big process inherits the parent's peak)."""
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024  # kB
    raise RuntimeError("no VmHWM in /proc/self/status (Linux only)")


if __name__ == "__main__":
    main(sys.argv[1:])
