"""vLLM's async engine behind the `Engine` interface (GPU): the same templates, prompt ids, stops and
sampling parameters as pacos's own engine; vLLM does the batching. Its streams are read with `aevents()`
(the server); start it from inside an event loop."""

from __future__ import annotations

import asyncio
import uuid

from pacos.errors import PacosError
from pacos.infer.engine import Engine, Event, QueueFull, Stream
from pacos.infer.params import SamplingParams


class VLLMEngine(Engine):
    name = "vllm"

    def __init__(self, model_ref: str, *, template: str | None = None, kind: str = "conversation",
                 max_batch: int = 256, max_waiting: int = 1024):
        try:
            from vllm import AsyncEngineArgs, AsyncLLMEngine
        except ImportError:
            raise PacosError("--backend vllm needs vLLM (a CUDA GPU machine): pip install vllm; "
                             "or leave out --backend to use transformers") from None
        from pacos.models.loading import is_adapter, load_tokenizer, model_revision
        from pacos.prompting.templates import resolve_template

        if is_adapter(model_ref):
            raise PacosError(f"{model_ref} is a LoRA adapter: merge it first (pacos merge) to serve it with vLLM")
        self.model_ref, self.tokenizer = str(model_ref), load_tokenizer(model_ref)
        self.template = resolve_template(model_ref, self.tokenizer, kind, template)
        self.revision = model_revision(model_ref, None)
        self.llm = AsyncLLMEngine.from_engine_args(AsyncEngineArgs(model=str(model_ref), max_num_seqs=max_batch))
        self.context_length = getattr(getattr(self.llm, "model_config", None), "max_model_len", None)
        self.max_batch, self.max_waiting = max_batch, max_waiting
        self.in_flight = 0

    def start(self, prompt_ids, sampling: SamplingParams, *, stops=(), template=None, ignore_eos=False,
              sink=None) -> Stream:
        sampling.check()
        if self.in_flight >= self.max_batch + self.max_waiting:
            raise QueueFull(f"{self.in_flight} requests in flight")
        stops = list(stops) + (list(template.stop_strings) if template is not None else [])
        return _VLLMStream(self, prompt_ids, sampling, stops, ignore_eos)

    def stats(self) -> dict:
        return {"in_flight": self.in_flight, "max_batch": self.max_batch, "max_waiting": self.max_waiting}


class _VLLMStream(Stream):
    def __init__(self, engine: VLLMEngine, prompt_ids, sampling: SamplingParams, stops, ignore_eos):
        from vllm import SamplingParams as VSampling

        super().__init__()
        if self._loop is None:
            raise PacosError("the vllm backend serves requests (pacos serve); use --backend transformers here")
        self.engine, self.prompt_ids, self.prompt_tokens = engine, list(prompt_ids), len(prompt_ids)
        self.request_id = uuid.uuid4().hex
        self.params = VSampling(n=1, temperature=sampling.temperature, top_p=sampling.top_p,
                                top_k=sampling.top_k or -1, min_p=sampling.min_p,
                                repetition_penalty=sampling.repetition_penalty,
                                presence_penalty=sampling.presence_penalty,
                                frequency_penalty=sampling.frequency_penalty, seed=sampling.seed,
                                max_tokens=sampling.max_new_tokens, stop=stops or None, ignore_eos=ignore_eos)
        self._tokens, self._done = 0, False
        engine.in_flight += 1

    @property
    def completion_tokens(self) -> int:
        return self._tokens

    @property
    def done(self) -> bool:
        return self._done

    async def aevents(self):
        sent = ""
        try:
            async for out in self.engine.llm.generate({"prompt_token_ids": self.prompt_ids}, self.params,
                                                      self.request_id):
                result = out.outputs[0]
                self._tokens = len(result.token_ids)
                finish = result.finish_reason if out.finished else None
                delta, sent = result.text[len(sent):], result.text
                if delta or finish:
                    yield Event(delta, {"abort": "error"}.get(finish, finish), self._tokens)
            self._done = True
        finally:
            self.engine.in_flight -= 1
            self.cancel()

    def cancel(self) -> None:
        if not self._done:
            self._done = True
            asyncio.ensure_future(self.engine.llm.abort(self.request_id))
