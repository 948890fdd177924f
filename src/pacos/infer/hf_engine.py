"""The transformers engine: a model stepped by the continuous-batching loop (`pacos.infer.batching`) on a
background thread, behind the `Engine` interface every command uses."""

from __future__ import annotations

from pacos.infer.batching import BatchEngine
from pacos.infer.continuous import BatchedEngine
from pacos.prompting.special_tokens import ensure_pad_token


class TransformersEngine(BatchedEngine):
    name = "transformers"

    def __init__(self, model, tokenizer, *, template=None, model_ref: str = "", revision: str = "",
                 max_batch: int = 16, max_waiting: int = 64):
        if tokenizer.pad_token is None:
            ensure_pad_token(tokenizer)  # reuse an existing token, never resize at inference
        self.model, self.tokenizer, self.template = model, tokenizer, template
        self.model_ref, self.revision = model_ref, revision
        eos = model.generation_config.eos_token_id
        eos_ids = set([eos] if isinstance(eos, int) else (eos or []))
        if tokenizer.eos_token_id is not None:
            eos_ids.add(tokenizer.eos_token_id)
        self._start_stepping(BatchEngine(model, tokenizer, max_batch=max_batch, max_waiting=max_waiting), eos_ids)

    @classmethod
    def load(cls, model_ref: str, *, template: str | None = None, kind: str = "conversation", max_batch: int = 16,
             max_waiting: int = 64, dtype=None, threads: int | None = None) -> TransformersEngine:
        import torch

        from pacos.models.loading import load_model, model_revision
        from pacos.prompting.templates import resolve_template

        if threads:
            torch.set_num_threads(threads)
        model, tokenizer = load_model(model_ref, dtype=dtype)
        if torch.cuda.is_available():
            model.to("cuda")
        return cls(model, tokenizer, template=resolve_template(model_ref, tokenizer, kind, template),
                   model_ref=str(model_ref), revision=model_revision(model_ref, model), max_batch=max_batch,
                   max_waiting=max_waiting)
