"""The Trainer pacos trains with: checkpoint loading failures as one line naming the checkpoint, FSDP on CPU."""

from __future__ import annotations

import contextlib

from transformers import Trainer

from pacos.train.checkpoints import CheckpointError


class ResumingTrainer(Trainer):
    """A Trainer whose failures while loading a checkpoint name it in one line instead of a traceback.

    Only the loading steps are wrapped, so an error in training itself still surfaces as what it is.
    It also runs FSDP on CPU processes, which accelerate would quietly train with DDP instead.
    """

    def create_accelerator_and_postprocess(self):
        super().create_accelerator_and_postprocess()
        from pacos.train.distributed import fsdp_on_cpu

        fsdp_on_cpu(self)

    def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
        with _loading(resume_from_checkpoint, "its weights"):
            return super()._load_from_checkpoint(resume_from_checkpoint, model)

    def _load_optimizer_and_scheduler(self, checkpoint):
        with _loading(checkpoint, "its optimizer or scheduler state"):
            return super()._load_optimizer_and_scheduler(checkpoint)

    def _load_scaler(self, checkpoint):
        with _loading(checkpoint, "its gradient scaler state"):
            return super()._load_scaler(checkpoint)

    def _load_rng_state(self, checkpoint):
        with _loading(checkpoint, "its random number generator state"):
            return super()._load_rng_state(checkpoint)


@contextlib.contextmanager
def _loading(checkpoint, what: str):
    try:
        yield
    except Exception as e:  # anything at all from a library reading a file we did not write ourselves
        if checkpoint is None:
            raise
        detail = " ".join(str(e).split())  # torch's state-dict errors put the useful part on later lines
        detail = detail if len(detail) <= 300 else detail[:300] + "..."
        raise CheckpointError(f"--resume: {checkpoint}: could not load {what} ({type(e).__name__}: {detail}); "
                              "was the run started with another --model or --lora? Otherwise move this "
                              "checkpoint away to resume from an older one, or run without --resume") from None
