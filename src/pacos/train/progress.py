"""Trainer callbacks: `train_log.jsonl` (step, loss, eval loss, lr, tokens/s) and a progress bar."""

from __future__ import annotations

import json
import time
from pathlib import Path

from transformers import TrainerCallback


# What TRL's DPOTrainer logs beside the loss, as train_log.jsonl names it: the chosen-minus-rejected implicit
# reward (beta x log-ratio to the reference) and the share of pairs where chosen wins.
DPO_METRICS = {"rewards/margins": "reward_margin", "rewards/accuracies": "reward_accuracy"}


class JsonlLogCallback(TrainerCallback):
    """Appends one JSON object per logged step; on resume, entries past the checkpoint are dropped first."""

    def __init__(self, path: Path, resume_step: int = 0):
        self.path = Path(path)
        self._last_time = None
        self._last_tokens = 0
        self._last_step = resume_step
        if resume_step:
            keep = [line for line in read_log(self.path) if line.get("step", 0) <= resume_step]
            self.path.write_text("".join(json.dumps(r) + "\n" for r in keep))
        elif self.path.exists():
            self.path.unlink()

    def on_train_begin(self, args, state, control, **kwargs):
        self._last_time = time.perf_counter()
        self._last_tokens = state.num_input_tokens_seen
        self._last_step = state.global_step

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not logs or not state.is_world_process_zero:
            return
        row = {"step": state.global_step, "epoch": round(state.epoch or 0.0, 4)}
        if "loss" in logs:
            now = time.perf_counter()
            tokens = state.num_input_tokens_seen - self._last_tokens
            row.update(loss=logs["loss"], lr=logs.get("learning_rate"),
                       tokens_per_s=round(tokens / max(now - self._last_time, 1e-9), 1),
                       tokens_seen=state.num_input_tokens_seen)
            row.update({name: logs[key] for key, name in DPO_METRICS.items() if key in logs})
            self._last_time, self._last_tokens = now, state.num_input_tokens_seen
        elif "eval_loss" in logs:
            row["eval_loss"] = logs["eval_loss"]
            row.update({f"eval_{name}": logs[f"eval_{key}"] for key, name in DPO_METRICS.items() if f"eval_{key}" in logs})
        else:
            return
        with self.path.open("a") as f:
            f.write(json.dumps(row) + "\n")


class ProgressCallback(TrainerCallback):
    """A tqdm bar over optimizer steps showing loss and tokens/s, with tqdm's own rate and ETA."""

    def __init__(self):
        self.bar = None
        self._t0 = None
        self._tokens0 = 0

    def on_train_begin(self, args, state, control, **kwargs):
        from tqdm.auto import tqdm

        if state.is_world_process_zero:
            self.bar = tqdm(total=state.max_steps, initial=state.global_step, desc="train", unit="step",
                            dynamic_ncols=True)
            self._t0, self._tokens0 = time.perf_counter(), state.num_input_tokens_seen

    def on_step_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.update(state.global_step - self.bar.n)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.bar is None or not logs:
            return
        post = {}
        if "loss" in logs:
            rate = (state.num_input_tokens_seen - self._tokens0) / max(time.perf_counter() - self._t0, 1e-9)
            post.update(loss=f"{logs['loss']:.4f}", tok_s=f"{rate:,.0f}")
        if "eval_loss" in logs:
            post["eval"] = f"{logs['eval_loss']:.4f}"
        if post:
            self.bar.set_postfix(post, refresh=False)

    def on_train_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def read_log(path: Path) -> list[dict]:
    """The rows of a train_log.jsonl; a torn last line (killed run) is ignored."""
    rows = []
    if Path(path).exists():
        for line in Path(path).read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return rows


def plot_loss(log_path: Path, png_path: Path) -> Path:
    """The loss curve (train, and eval when present) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_log(log_path)
    train = [(r["step"], r["loss"]) for r in rows if "loss" in r]
    evals = [(r["step"], r["eval_loss"]) for r in rows if "eval_loss" in r]
    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    if train:
        ax.plot(*zip(*train), label="train loss", lw=1.2)
    if evals:
        ax.plot(*zip(*evals), "o-", label="eval loss", lw=1.5)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss")
    ax.set_title("pacos train")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(png_path)
    plt.close(fig)
    return png_path
