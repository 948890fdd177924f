"""The one generation engine every command talks to: `infer`, `ask`, `chat`, `eval`, `demo` and `serve`.

An `Engine` takes a prompt (token ids), sampling parameters and stops, and returns a `Stream`: text
events as they become final, then a finish reason ("stop", "length", "error"); a stream can be cancelled
at any time, and the engine reports its stats. Prompts are built by the prompt layer (`pacos.prompting`),
so every caller sends the model the text it was trained on; `start(..., template=T)` adds the template's
stop strings and end-of-turn id and strips the answer, so a streamed answer equals a finished one.

The implementations are registered in `pacos.infer.backends`: `transformers` (the default: continuous
batching over a transformers model, `pacos.infer.batching`, on a background thread), `llama.cpp` (GGUF files:
the same continuous batching over one llama.cpp context, `pacos.infer.llamacpp_engine`) and `vllm` (its
async engine, GPU, for serving).
`complete` and `complete_many` drive any engine from synchronous code; `complete_many` keeps a bounded
window of prompts in flight, so a finished record frees its slot at once and a file of any size streams
through.
"""

from __future__ import annotations

import asyncio
import itertools
import queue
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass

from pacos.errors import PacosError
from pacos.infer.params import SamplingParams


class QueueFull(PacosError):
    """The engine's waiting queue is at capacity (the server answers 503 with Retry-After)."""


@dataclass
class Event:
    delta: str
    finish_reason: str | None  # "stop", "length", or "error" (then `error` says why)
    completion_tokens: int
    error: str = ""


@dataclass
class Completion:
    """A finished generation."""

    text: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    error: str = ""


Sink = Callable[["Stream", Event], None]


class Stream:
    """A running generation. Read it once: `events()` from synchronous code, `aevents()` from a coroutine.

    Events are delivered where the stream was started: from inside a running event loop, to that loop
    (`aevents`); elsewhere to a thread-safe queue (`events`); or, given `sink`, to that callable (called on
    the engine's thread; it must not block).
    """

    prompt_tokens: int = 0

    def __init__(self, sink: Sink | None = None):
        self._sink = sink
        self._queue = None
        self._loop = None
        if sink is None:
            try:
                self._loop = asyncio.get_running_loop()
                self._queue = asyncio.Queue()
            except RuntimeError:
                self._queue = queue.SimpleQueue()

    @property
    def completion_tokens(self) -> int:
        raise NotImplementedError

    @property
    def done(self) -> bool:
        raise NotImplementedError

    def cancel(self) -> None:
        raise NotImplementedError

    def deliver(self, event: Event) -> None:
        """Hand an event to the reader (engine implementations call this, from any thread)."""
        if self._sink is not None:
            self._sink(self, event)
        elif self._loop is not None:
            try:
                self._loop.call_soon_threadsafe(self._queue.put_nowait, event)
            except RuntimeError:  # the event loop is gone (server shutting down)
                self.cancel()
        else:
            self._queue.put(event)

    def events(self) -> Iterator[Event]:
        """Events until the finish event; leaving early (break, Ctrl-C) cancels the generation."""
        if self._loop is not None or self._sink is not None:
            raise PacosError("this stream delivers its events elsewhere (started in an event loop or with a sink)")
        try:
            while True:
                try:
                    event = self._queue.get(timeout=0.1)  # a timeout keeps Ctrl-C responsive
                except queue.Empty:
                    continue
                yield event
                if event.finish_reason is not None:
                    return
        finally:
            if not self.done:
                self.cancel()

    async def aevents(self) -> AsyncIterator[Event]:
        """Events as an async iterator; what piled up for a slow reader comes as one event."""
        if self._loop is None:
            raise PacosError("this stream was not started in an event loop")
        try:
            while True:
                event = await self._queue.get()
                while event.finish_reason is None and not self._queue.empty():
                    more = self._queue.get_nowait()
                    event = Event(event.delta + more.delta, more.finish_reason, more.completion_tokens, more.error)
                yield event
                if event.finish_reason is not None:
                    return
        finally:
            if not self.done:
                self.cancel()


class Engine:
    """What a generating command needs from a backend. Subclasses fill in loading, `start` and `stats`."""

    name = ""
    model_ref = ""
    revision = ""
    tokenizer = None
    template = None  # pacos.prompting.templates.Template resolved for this use (trained one, else default)
    context_length: int | None = None
    max_batch = 1  # sequences decoded together
    max_waiting = 0  # sequences queued beyond those

    def encode(self, record, template=None) -> list[int]:
        """Prompt ids for a record (Example or Conversation) under `template` (default: the engine's)."""
        from pacos.prompting.encode import encode_prompt

        return encode_prompt(record, self.tokenizer, template or self.template)

    def encode_text(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=True)["input_ids"]

    def start(self, prompt_ids: list[int], sampling: SamplingParams, *, stops: Iterable[str] = (), template=None,
              ignore_eos: bool = False, sink: Sink | None = None) -> Stream:
        """Queue a generation. `template`: the prompt was built with it, so its stops apply and the answer is
        stripped. Raises SamplingError for a value that can't be sampled and QueueFull when saturated."""
        raise NotImplementedError

    def stats(self) -> dict:
        return {}

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def complete(engine: Engine, prompt_ids: list[int], sampling: SamplingParams, **start) -> Completion:
    """One generation, start to finish (`pacos ask`)."""
    stream = engine.start(prompt_ids, sampling, **start)
    text, last = "", None
    for last in stream.events():
        text += last.delta
    return Completion(text, last.finish_reason, stream.prompt_tokens, last.completion_tokens, last.error)


class InFlight:
    """Generations running on an engine, handed back as they finish (for synchronous drivers: `complete_many`,
    and `pacos eval answer`, which starts a question's next turn when its answer to the last one is in)."""

    def __init__(self, engine: Engine, **start):
        self.engine, self._start = engine, start
        self._done: queue.SimpleQueue = queue.SimpleQueue()
        self._texts: dict = {}
        self._streams: dict = {}

    def __len__(self) -> int:
        return len(self._streams)

    def submit(self, key, prompt_ids: list[int], sampling: SamplingParams) -> None:
        """Start a generation; `key` (any hashable, not already in flight) names it in `next_done`."""
        texts = self._texts[key] = []

        def sink(stream: Stream, event: Event) -> None:
            texts.append(event.delta)
            if event.finish_reason is not None:
                self._done.put((key, stream, event))

        self._streams[key] = self.engine.start(prompt_ids, sampling, sink=sink, **self._start)

    def next_done(self) -> tuple[object, Completion]:
        """(key, Completion) of the next generation to finish; waits for one (call only while len(self) > 0)."""
        while True:
            try:
                key, stream, event = self._done.get(timeout=0.1)  # a timeout keeps Ctrl-C responsive
            except queue.Empty:
                continue
            del self._streams[key]
            text = "".join(self._texts.pop(key))
            return key, Completion(text, event.finish_reason, stream.prompt_tokens, event.completion_tokens,
                                   event.error)

    def cancel(self) -> None:
        for stream in self._streams.values():
            stream.cancel()


def complete_many(engine: Engine, prompts: Iterable[list[int]], sampling: SamplingParams, *,
                  window: int | None = None, sampling_for: Callable[[int], SamplingParams] | None = None,
                  **start) -> Iterator[tuple[int, Completion]]:
    """(index, Completion) for every prompt, in the order they finish; `sampling_for(index)`, when given,
    is each prompt's own sampling (e.g. a per-record seed).

    Prompts are read lazily and at most `window` (default: `default_window`) are in flight, so a finished
    sequence's slot is refilled at once and the input can be any length. Leaving the iterator early cancels
    what is in flight.
    """
    window = window or default_window(engine)
    flight = InFlight(engine, **start)
    source = iter(enumerate(prompts))

    def refill() -> None:
        for index, ids in itertools.islice(source, window - len(flight)):
            flight.submit(index, ids, sampling_for(index) if sampling_for else sampling)

    try:
        refill()
        while len(flight):
            index, done = flight.next_done()
            refill()
            yield index, done
    finally:
        flight.cancel()


def default_window(engine: Engine) -> int:
    """Generations to keep in flight: the engine's waiting room, at most two batches (everything submitted
    waits until the engine's next step admits it, so more would only wait longer)."""
    return max(1, min(engine.max_waiting, 2 * engine.max_batch))


def in_input_order(results: Iterable[tuple[int, Completion]], first: int = 0) -> Iterator[tuple[int, Completion]]:
    """Reorders (index, Completion) pairs so they come out by index, starting at `first`, each as soon as
    all before it are out."""
    pending: dict[int, Completion] = {}
    following = first
    for index, completion in results:
        pending[index] = completion
        while following in pending:
            yield following, pending.pop(following)
            following += 1
