"""The transformers engine: a model stepped by the continuous-batching loop (`pacos.infer.batching`) on a
background thread, behind the `Engine` interface every command uses."""

from __future__ import annotations

from pacos.infer.batching import BatchEngine, BatchScheduler, Sequence
from pacos.infer.engine import Engine, Event, Sink, Stream
from pacos.infer.params import SamplingParams
from pacos.prompting.special_tokens import ensure_pad_token, stop_token_ids


class TransformersEngine(Engine):
    name = "transformers"

    def __init__(self, model, tokenizer, *, template=None, model_ref: str = "", revision: str = "",
                 max_batch: int = 16, max_waiting: int = 64):
        if tokenizer.pad_token is None:
            ensure_pad_token(tokenizer)  # reuse an existing token, never resize at inference
        self.model, self.tokenizer, self.template = model, tokenizer, template
        self.model_ref, self.revision = model_ref, revision
        self.max_batch, self.max_waiting = max_batch, max_waiting
        self.batch = BatchEngine(model, tokenizer, max_batch=max_batch, max_waiting=max_waiting)
        self.context_length = self.batch.context
        eos = model.generation_config.eos_token_id
        self.eos_ids = frozenset([eos] if isinstance(eos, int) else (eos or []))
        if tokenizer.eos_token_id is not None:
            self.eos_ids |= {tokenizer.eos_token_id}
        self._stop_ids = {}  # template name -> its stop ids with EOS
        self.scheduler = BatchScheduler(self.batch)
        self.scheduler.start()

    @classmethod
    def load(cls, model_ref: str, *, template: str | None = None, kind: str = "conversation", max_batch: int = 16,
             max_waiting: int = 64, dtype=None) -> TransformersEngine:
        import torch

        from pacos.models.loading import load_model, model_revision
        from pacos.prompting.templates import resolve_template

        model, tokenizer = load_model(model_ref, dtype=dtype)
        if torch.cuda.is_available():
            model.to("cuda")
        return cls(model, tokenizer, template=resolve_template(model_ref, tokenizer, kind, template),
                   model_ref=str(model_ref), revision=model_revision(model_ref, model), max_batch=max_batch,
                   max_waiting=max_waiting)

    def start(self, prompt_ids, sampling: SamplingParams, *, stops=(), template=None, ignore_eos=False,
              sink: Sink | None = None) -> Stream:
        stops, stop_ids = tuple(stops), self.eos_ids
        if template is not None:
            stops += tuple(template.stop_strings)
            if template.name not in self._stop_ids:
                self._stop_ids[template.name] = self.eos_ids | frozenset(stop_token_ids(self.tokenizer, template))
            stop_ids = self._stop_ids[template.name]
        stream = _BatchStream(self.scheduler, sink)
        stream.seq = Sequence(list(prompt_ids), sampling, stream.on_event, stops=stops,
                              stop_ids=frozenset() if ignore_eos else stop_ids, strip=template is not None)
        stream.prompt_tokens = len(prompt_ids)
        self.scheduler.submit(stream.seq)  # SamplingError, QueueFull
        return stream

    def stats(self) -> dict:
        return {"running": len(self.batch.running), "waiting": len(self.batch.waiting),
                "max_batch": self.batch.max_batch, "max_waiting": self.batch.max_waiting,
                "steps": self.batch.steps, "cancelled": self.batch.cancelled}

    def close(self) -> None:
        self.scheduler.stop()


class _BatchStream(Stream):
    seq: Sequence

    def __init__(self, scheduler: BatchScheduler, sink: Sink | None):
        super().__init__(sink)
        self.scheduler = scheduler

    def on_event(self, delta: str, finish: str | None) -> None:  # on the engine thread
        self.deliver(Event(delta, finish, len(self.seq.output_ids), self.seq.error if finish else ""))

    @property
    def completion_tokens(self) -> int:
        return len(self.seq.output_ids)

    @property
    def done(self) -> bool:
        return self.seq.done

    def cancel(self) -> None:
        if not self.seq.done:
            self.scheduler.cancel(self.seq)
