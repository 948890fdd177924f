"""Engines behind `pacos serve`: the interface the app talks to, the transformers backend, and vLLM's.

The app never touches a model: it asks a backend to encode prompts with the model's template and to
`start` generations, each a `Generation` handle whose `events()` yields text deltas as they are final.
Starting raises `QueueFull` when the backend is saturated (the app answers 503), and `cancel()` stops
the work when a client goes away.
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from pacos.data.records import Conversation
from pacos.errors import PacosError
from pacos.infer.batching import QueueFull
from pacos.infer.generate import SamplingParams

BACKENDS = ("transformers", "vllm")


@dataclass
class Event:
    delta: str
    finish_reason: str | None  # "stop", "length", or "error" (then `error` says why)
    completion_tokens: int
    error: str = ""


class Generation:
    """A running generation: iterate `events()` once; `cancel()` is safe at any time."""

    prompt_tokens: int = 0
    completion_tokens: int = 0

    def events(self) -> AsyncIterator[Event]:
        raise NotImplementedError

    def cancel(self) -> None:
        raise NotImplementedError


class Backend:
    """What the server needs from an engine. Subclasses fill in loading and `start`."""

    engine = ""
    model_ref = ""
    revision = ""
    template = None  # pacos.templates.Template used for chat prompts
    tokenizer = None
    context_length: int | None = None

    def encode_chat(self, conv: Conversation) -> list[int]:
        from pacos.train.tokenize import encode_prompt

        return encode_prompt(conv, self.tokenizer, self.template)

    def encode_text(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=True)["input_ids"]

    def chat_stops(self) -> tuple[str, ...]:
        return tuple(self.template.stop_strings)

    def start(self, prompt_ids: list[int], sampling: SamplingParams, stops: list[str], chat: bool,
              ignore_eos: bool = False) -> Generation:
        """Queue a generation; `chat` adds the template's stops and strips the answer's leading whitespace."""
        raise NotImplementedError

    def stats(self) -> dict:
        return {}

    def close(self) -> None:
        pass


class TransformersBackend(Backend):
    """The default: a transformers model stepped by the continuous-batching engine on a background thread."""

    engine = "transformers"

    def __init__(self, model_ref: str, template: str | None = None, max_batch: int = 16, max_waiting: int = 64):
        from pacos.infer.batching import BatchEngine, BatchScheduler
        from pacos.infer.generate import Generator
        from pacos.train.save import stop_token_ids

        gen = Generator.load(model_ref, template, [Conversation([])])
        self.model_ref, self.tokenizer, self.template = str(model_ref), gen.tokenizer, gen.template
        self.revision = model_revision(model_ref, gen.model)
        self.batch = BatchEngine(gen.model, gen.tokenizer, max_batch=max_batch, max_waiting=max_waiting)
        self.context_length = self.batch.context
        eos = gen.model.generation_config.eos_token_id
        self.eos_ids = frozenset([eos] if isinstance(eos, int) else (eos or []))
        self.chat_eos_ids = self.eos_ids | frozenset(stop_token_ids(gen.tokenizer, gen.template))
        self.scheduler = BatchScheduler(self.batch)
        self.scheduler.start()

    def start(self, prompt_ids, sampling, stops, chat, ignore_eos=False) -> Generation:
        return _EngineGeneration(self, prompt_ids, sampling, stops, chat, ignore_eos)

    def stats(self) -> dict:
        return {"running": len(self.batch.running), "waiting": len(self.batch.waiting),
                "max_batch": self.batch.max_batch, "max_waiting": self.batch.max_waiting,
                "steps": self.batch.steps, "cancelled": self.batch.cancelled}

    def close(self) -> None:
        self.scheduler.stop()


class _EngineGeneration(Generation):
    def __init__(self, backend: TransformersBackend, prompt_ids, sampling, stops, chat, ignore_eos):
        from pacos.infer.batching import Sequence

        self.loop = asyncio.get_running_loop()
        self.queue: asyncio.Queue = asyncio.Queue()
        self.prompt_tokens = len(prompt_ids)
        all_stops = tuple(stops) + (backend.chat_stops() if chat else ())
        eos_ids = frozenset() if ignore_eos else backend.chat_eos_ids if chat else backend.eos_ids
        self.seq = Sequence(list(prompt_ids), sampling, self._on_event, stops=all_stops, eos_ids=eos_ids,
                            strip_leading=chat)
        self.scheduler = backend.scheduler
        self.scheduler.submit(self.seq)  # raises QueueFull

    def _on_event(self, delta: str, finish: str | None) -> None:  # called on the engine thread
        try:
            self.loop.call_soon_threadsafe(self.queue.put_nowait, (delta, finish))
        except RuntimeError:  # the event loop is gone (server shutting down)
            self.seq.cancelled = True

    @property
    def completion_tokens(self) -> int:
        return len(self.seq.output_ids)

    async def events(self):
        try:
            while True:
                delta, finish = await self.queue.get()
                # A slow reader gets what piled up as one delta instead of falling further behind.
                while finish is None and not self.queue.empty():
                    more, finish = self.queue.get_nowait()
                    delta += more
                yield Event(delta, finish, self.completion_tokens, self.seq.error)
                if finish is not None:
                    return
        finally:
            self.cancel()

    def cancel(self) -> None:
        if not self.seq.done:
            self.scheduler.cancel(self.seq)


class VLLMBackend(Backend):
    """vLLM's async engine (GPU): same templates and prompt ids as pacos, vLLM does the batching."""

    engine = "vllm"

    def __init__(self, model_ref: str, template: str | None = None, max_batch: int = 256, max_waiting: int = 1024):
        try:
            from vllm import AsyncEngineArgs, AsyncLLMEngine
        except ImportError:
            raise PacosError("--backend vllm needs vLLM (a CUDA GPU machine): pip install vllm; "
                             "or leave out --backend to use transformers") from None
        from pacos.infer.generate import resolve_template
        from pacos.models.loading import is_adapter, load_tokenizer

        if is_adapter(model_ref):
            raise PacosError(f"{model_ref} is a LoRA adapter: merge it first (pacos merge) to serve it with vLLM")
        self.model_ref, self.tokenizer = str(model_ref), load_tokenizer(model_ref)
        self.template = resolve_template(model_ref, self.tokenizer, [Conversation([])], template)
        self.revision = model_revision(model_ref, None)
        self.llm = AsyncLLMEngine.from_engine_args(AsyncEngineArgs(model=str(model_ref), max_num_seqs=max_batch))
        self.context_length = getattr(getattr(self.llm, "model_config", None), "max_model_len", None)
        self.max_in_flight, self.in_flight = max_batch + max_waiting, 0

    def start(self, prompt_ids, sampling, stops, chat, ignore_eos=False) -> Generation:
        if self.in_flight >= self.max_in_flight:
            raise QueueFull(f"{self.in_flight} requests in flight")
        stops = list(stops) + (list(self.chat_stops()) if chat else [])
        return _VLLMGeneration(self, prompt_ids, sampling, stops, ignore_eos)


class _VLLMGeneration(Generation):
    def __init__(self, backend: VLLMBackend, prompt_ids, sampling: SamplingParams, stops, ignore_eos):
        from vllm import SamplingParams as VSampling

        self.backend, self.prompt_ids, self.prompt_tokens = backend, list(prompt_ids), len(prompt_ids)
        self.request_id = uuid.uuid4().hex
        self.params = VSampling(n=1, temperature=sampling.temperature, top_p=sampling.top_p,
                                top_k=sampling.top_k or -1, repetition_penalty=sampling.repetition_penalty,
                                presence_penalty=sampling.presence_penalty,
                                frequency_penalty=sampling.frequency_penalty, seed=sampling.seed,
                                max_tokens=sampling.max_new_tokens, stop=stops or None, ignore_eos=ignore_eos)
        backend.in_flight += 1

    async def events(self):
        sent = ""
        try:
            async for out in self.backend.llm.generate({"prompt_token_ids": self.prompt_ids}, self.params,
                                                       self.request_id):
                result = out.outputs[0]
                self.completion_tokens = len(result.token_ids)
                finish = result.finish_reason if out.finished else None
                delta, sent = result.text[len(sent):], result.text
                if delta or finish:
                    yield Event(delta, {"abort": "error"}.get(finish, finish), self.completion_tokens)
        finally:
            self.backend.in_flight -= 1
            self.cancel()

    def cancel(self) -> None:
        asyncio.ensure_future(self.backend.llm.abort(self.request_id))


def load_backend(name: str, model_ref: str, template: str | None = None, max_batch: int = 16,
                 max_waiting: int = 64) -> Backend:
    if name not in BACKENDS:
        raise PacosError(f"unknown backend {name!r}; choose one of: {', '.join(BACKENDS)}")
    cls = VLLMBackend if name == "vllm" else TransformersBackend
    return cls(model_ref, template, max_batch=max_batch, max_waiting=max_waiting)


def model_revision(model_ref, model) -> str:
    """The hub commit a model came from, else a short fingerprint of its local weight files."""
    commit = getattr(getattr(model, "config", None), "_commit_hash", None)
    if commit:
        return commit
    path = Path(model_ref)
    if not path.is_dir():
        return ""
    digest = hashlib.sha256()
    for f in sorted(path.glob("*.safetensors")) + sorted(path.glob("*.bin")) + sorted(path.glob("*config.json")):
        digest.update(f.name.encode())
        with open(f, "rb") as fh:  # head and tail: enough to tell weights apart without reading gigabytes
            digest.update(fh.read(1 << 16))
            fh.seek(max(0, f.stat().st_size - (1 << 16)))
            digest.update(fh.read())
    return digest.hexdigest()[:12]
