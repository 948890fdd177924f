"""Continuous batching, the part every step-loop backend shares: sequences, the waiting queue, the batch's slots,
what happens to each chosen token, the stepping thread, and the `Engine` built on them.

A backend's step loop (`pacos.infer.batching` for transformers, `pacos.infer.llamacpp_engine` for llama.cpp)
subclasses `SequenceBatch` and fills in `step()`: free the slots of finished rows, run the model once over the
running ones (and the prompts being admitted), and hand each row's logits to the one sampler
(`pacos.infer.sampling.next_tokens`) and the chosen tokens to `_take`. Everything after the token is here, once:
stop ids, incremental detokenization, stop strings, answer stripping, max_new_tokens and the context limit, the
finish reason, and a row's own failure. So every backend stops, strips and streams exactly alike.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from pacos.errors import PacosError
from pacos.infer.engine import Engine, Event, QueueFull, Sink, Stream
from pacos.infer.params import SamplingParams
from pacos.infer.textstream import IncrementalDecoder, StopMatcher
from pacos.prompting.special_tokens import stop_token_ids

# on_event(delta, finish_reason): text as it becomes final; finish_reason "stop", "length", "error" at the end.
EventCallback = Callable[[str, "str | None"], None]


@dataclass(eq=False)
class Sequence:
    """One generation: a prompt, how to sample it, where to stop, and where its text goes."""

    prompt_ids: list[int]
    sampling: SamplingParams
    on_event: EventCallback
    stops: tuple[str, ...] = ()
    stop_ids: frozenset = frozenset()  # token ids that end the generation (EOS, a template's end of turn)
    strip: bool = False  # an answer to a template: no whitespace around it (see StopMatcher)
    output_ids: list[int] = field(default_factory=list)
    finish_reason: str | None = None
    cancelled: bool = False
    text: str = ""  # the released text so far
    error: str = ""  # why generation failed (finish_reason "error")

    def __post_init__(self):
        self.generator = None
        self.decoder = None
        self.matcher = StopMatcher(self.stops, self.strip)

    @property
    def done(self) -> bool:
        return self.finish_reason is not None or self.cancelled


class SequenceBatch:
    """The model-independent state of a continuous batch: the waiting queue, the slots (`rows`, None where
    free), and what a step does with each row's chosen token. Subclasses implement `step()`."""

    def __init__(self, tokenizer, *, max_batch: int = 16, max_waiting: int = 64, context: int | None = None,
                 device="cpu"):
        self.tokenizer = tokenizer
        self.max_batch, self.max_waiting = max_batch, max_waiting
        self.context = context  # most tokens (prompt + output) one sequence may hold
        self.device = device  # where the logits are, and so the seeded generators
        self.waiting: deque[Sequence] = deque()
        self.rows: list[Sequence | None] = []
        self.lock = threading.Lock()
        self.steps = 0
        self.cancelled = 0  # sequences dropped unfinished (client gone, Ctrl-C)

    # -- requests ---------------------------------------------------------------------------------------
    def submit(self, seq: Sequence) -> None:
        """Queue `seq`; SamplingError for a value that could not be sampled, PacosError for a prompt that does
        not fit the context, QueueFull when the queue is full."""
        import torch

        # Any integer seed is taken modulo 2**64: the server's per-choice seed (seed + index) may pass 64 bits.
        (replace(seq.sampling, seed=None) if isinstance(seq.sampling.seed, int) else seq.sampling).check()
        if not seq.prompt_ids:
            raise PacosError("an empty prompt: there is nothing to continue")
        if self.context and len(seq.prompt_ids) >= self.context:
            raise PacosError(f"prompt of {len(seq.prompt_ids)} tokens does not fit the context of {self.context}")
        if seq.sampling.seed is not None:
            seq.generator = torch.Generator(device=self.device).manual_seed(seq.sampling.seed64)
        seq.decoder = IncrementalDecoder(self.tokenizer)
        with self.lock:
            if len(self.waiting) >= self.max_waiting:
                raise QueueFull(f"{len(self.waiting)} requests are already waiting")
            self.waiting.append(seq)

    def cancel(self, seq: Sequence) -> None:
        seq.cancelled = True  # the step loop drops it (and its cache) before the next forward pass

    @property
    def running(self) -> list[Sequence]:
        return [s for s in self.rows if s is not None]

    @property
    def has_work(self) -> bool:
        return bool(self.running or self.waiting)

    def run(self, seq: Sequence) -> Sequence:
        """Submit `seq` and step until it is done, in the caller's thread (tests and tools; commands go through
        `pacos.infer.engine`, which steps on the scheduler's thread)."""
        self.submit(seq)
        try:
            while not seq.done:
                self.step()
        finally:
            if not seq.done:
                self.cancel(seq)
                self.step()
        return seq

    def step(self) -> None:
        raise NotImplementedError

    # -- for the step loops -----------------------------------------------------------------------------
    def _admit(self) -> list[Sequence]:
        """Waiting sequences for the free room of the batch, in arrival order, while the cache has room for
        them (`_has_room`); cancelled ones are dropped."""
        room = self.max_batch - len(self.running)
        admitted = []
        with self.lock:
            while self.waiting and len(admitted) < room:
                if self.waiting[0].cancelled:
                    self.waiting.popleft()
                    self.cancelled += 1
                elif self._has_room(self.waiting[0], admitted):
                    admitted.append(self.waiting.popleft())
                else:
                    break
        return admitted

    def _has_room(self, seq: Sequence, admitted: list[Sequence]) -> bool:
        """Whether the cache can hold `seq` to its end beside the running rows and `admitted` (always, unless a
        backend's cache has a fixed size)."""
        return True

    def _leave_done(self) -> list[int]:
        """Finished and cancelled rows leave their slots; returns those slots (the caller frees their cache)."""
        done = [i for i, s in enumerate(self.rows) if s is not None and s.done]
        self.cancelled += sum(self.rows[i].cancelled and self.rows[i].finish_reason is None for i in done)
        for i in done:
            self.rows[i] = None
        return done

    def _fail(self, rows: list[Sequence], what: str, e: BaseException) -> None:
        for seq in rows:
            self._finish(seq, "error", one_line(what, e))

    def _take(self, rows: list[Sequence], choices: list) -> None:
        """Each row's sampled token, or its own failure (the other rows go on)."""
        for seq, choice in zip(rows, choices):
            if isinstance(choice, Exception):
                self._finish(seq, "error", one_line("sampling failed", choice))
                continue
            try:
                self._accept(seq, choice)
            except Exception as e:  # noqa: BLE001  (e.g. a token the tokenizer cannot decode)
                self._finish(seq, "error", one_line("generation failed", e))

    def _accept(self, seq: Sequence, token: int) -> None:
        if seq.cancelled:
            return
        seq.output_ids.append(token)
        if token in seq.stop_ids:
            self._finish(seq, "stop")
            return
        delta = seq.matcher.push(seq.decoder.push(token))
        if seq.matcher.stopped is not None:
            self._finish(seq, "stop", delta=delta)
        elif len(seq.output_ids) >= seq.sampling.max_new_tokens or (
                self.context and len(seq.prompt_ids) + len(seq.output_ids) >= self.context):
            self._finish(seq, "length", delta=delta)
        elif delta:
            seq.text += delta
            _notify(seq, delta, None)

    def _finish(self, seq: Sequence, reason: str, message: str = "", delta: str = "") -> None:
        if seq.done:
            return
        if reason != "error":
            delta += seq.matcher.flush()
        seq.text += delta
        seq.finish_reason, seq.error = reason, message
        _notify(seq, delta, reason)


def _notify(seq: Sequence, delta: str, reason: str | None) -> None:
    try:
        seq.on_event(delta, reason)
    except Exception:  # noqa: BLE001  (a consumer whose callback fails is gone: stop generating for it)
        seq.cancelled = True


def one_line(what: str, e: BaseException) -> str:
    """A one-line reason for `Sequence.error`."""
    lines = str(e).strip().splitlines()
    return f"{what}: {type(e).__name__}" + (f": {lines[0]}" if lines else "")


class BatchScheduler:
    """Runs `batch.step()` on a background thread whenever there is work (the server's engine loop)."""

    def __init__(self, batch: SequenceBatch):
        self.engine = batch
        self.wake = threading.Condition()
        self.stopping = False
        self.thread = threading.Thread(target=self._loop, name="pacos-batching", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        with self.wake:
            self.stopping = True
            self.wake.notify()
        self.thread.join(timeout=10)

    def submit(self, seq: Sequence) -> None:
        self.engine.submit(seq)
        with self.wake:
            self.wake.notify()

    def cancel(self, seq: Sequence) -> None:
        self.engine.cancel(seq)

    def _loop(self) -> None:
        while True:
            with self.wake:
                while not self.engine.has_work and not self.stopping:
                    self.wake.wait()
                if self.stopping:
                    return
            self.engine.step()


class BatchedEngine(Engine):
    """An `Engine` over a `SequenceBatch` stepped on a background thread: `start` builds the Sequence (stops,
    stop ids, stripping) and queues it. Subclasses load their model and call `_start_stepping`."""

    batch: SequenceBatch
    scheduler: BatchScheduler
    eos_ids: frozenset = frozenset()

    def _start_stepping(self, batch: SequenceBatch, eos_ids) -> None:
        self.batch, self.eos_ids = batch, frozenset(eos_ids)
        self.context_length, self.max_batch, self.max_waiting = batch.context, batch.max_batch, batch.max_waiting
        self._stop_ids = {}  # template name -> its stop ids with EOS
        self.scheduler = BatchScheduler(batch)
        self.scheduler.start()

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
