"""Continuous batching for transformers models: each step runs one forward pass over every active sequence.

The batch is left-padded and shares one KV cache ([batch, heads, time, dim] per layer, `pacos.infer.kv_cache`).
A step (1) frees the slots of finished or cancelled rows, (2) decodes one token for every running row
in a single forward pass, and (3) admits waiting requests: their prompts are prefilled together, their
first token sampled, and their cache rows written into free slots of the batch (new slots only while the
batch fills up); a draining batch is compacted.
So a request arriving mid-generation joins at the next step instead of waiting for the batch to finish,
and every running request shares each forward pass. Rows carry explicit position ids, so padding never
shifts a sequence's positions.

Failures stay with the requests they belong to: a row whose token cannot be chosen (non-finite logits, a
sampling value that fails) ends with finish_reason "error" alone; a failed decode pass fails the rows in it
and a failed prefill only the rows being admitted (retried one by one, so one bad prompt fails alone); the
waiting queue is never failed. `BatchScheduler` runs the steps on a background thread; every command
reaches it through the engine interface (`pacos.infer.engine`).
"""

from __future__ import annotations

import inspect
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from pacos.errors import PacosError
from pacos.infer.engine import QueueFull
from pacos.infer.kv_cache import growing_cache
from pacos.infer.params import SamplingParams
from pacos.infer.sampling import next_tokens
from pacos.infer.textstream import IncrementalDecoder, StopMatcher

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


class BatchEngine:
    """The step loop's state: running rows with their cache and mask, and the waiting queue."""

    def __init__(self, model, tokenizer, max_batch: int = 16, max_waiting: int = 64):
        self.model, self.tokenizer = model, tokenizer
        self.max_batch, self.max_waiting = max_batch, max_waiting
        self.context = getattr(model.config, "max_position_embeddings", None)
        self.pad_id = next((i for i in (tokenizer.pad_token_id, tokenizer.eos_token_id) if i is not None), 0)
        self.device = next(model.parameters()).device
        # transformers 5.24 renamed the forward's `past_key_values` to `cache` (the old name warns until 5.40).
        self.cache_arg = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
        self.waiting: deque[Sequence] = deque()
        # The batch's slots, in cache row order; None is a free slot (a finished sequence's, until another
        # takes it: reusing slots means a joining or leaving sequence never copies the whole cache).
        self.rows: list[Sequence | None] = []
        self.cache = None  # GrowingCache over `rows`
        self.mask = None  # [slots, time] long: 1 where the cache holds a real token of that row
        self.lock = threading.Lock()
        self.steps = 0
        self.cancelled = 0  # sequences dropped unfinished (client gone, Ctrl-C)

    # -- requests ---------------------------------------------------------------------------------------
    def submit(self, seq: Sequence) -> None:
        """Queue `seq`; SamplingError for a value that could not be sampled, QueueFull when the queue is full."""
        import torch

        # Any integer seed is taken modulo 2**64: the server's per-choice seed (seed + index) may pass 64 bits.
        (replace(seq.sampling, seed=None) if isinstance(seq.sampling.seed, int) else seq.sampling).check()
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
        seq.cancelled = True  # the step loop drops it (and its cache row) before the next forward pass

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

    # -- the step loop ----------------------------------------------------------------------------------
    def step(self) -> None:
        import torch

        with torch.inference_mode():
            try:
                self._release_done()
                if self.running:
                    self._decode()
            except Exception as e:  # noqa: BLE001  (a failed pass fails the rows in it, not the queue)
                for seq in self.running:
                    self._finish(seq, "error", _one_line("generation failed", e))
                self.rows, self.cache, self.mask = [], None, None
            admitted = self._admit()
            if admitted:
                self._prefill_isolated(admitted)
            free = self.rows.count(None)
            if free and not self.waiting and 2 * free >= len(self.rows):
                self._compact()  # the batch is draining: stop computing the free slots
        self.steps += 1

    def _admit(self) -> list[Sequence]:
        room = self.max_batch - len(self.running)
        admitted = []
        with self.lock:
            while self.waiting and len(admitted) < room:
                seq = self.waiting.popleft()
                if seq.cancelled:
                    self.cancelled += 1
                else:
                    admitted.append(seq)
        return admitted

    def _decode(self) -> None:
        import torch

        # A free slot is fed a pad token that attends only to itself (its output is ignored; no NaN).
        ids = torch.tensor([[s.output_ids[-1] if s else self.pad_id] for s in self.rows], device=self.device)
        # The fed token's position: everything before it is in the cache.
        pos = torch.tensor([[len(s.prompt_ids) + len(s.output_ids) - 1 if s else 0] for s in self.rows],
                           device=self.device)
        self.mask = torch.cat([self.mask, self.mask.new_ones((len(self.rows), 1))], dim=1)
        out = self.model(input_ids=ids, attention_mask=self.mask, position_ids=pos, use_cache=True,
                         **{self.cache_arg: self.cache})  # the cache grows in place
        logits = out.logits[:, -1]
        active = [i for i, s in enumerate(self.rows) if s is not None]
        if len(active) < len(self.rows):
            logits = logits[active]
        rows = [self.rows[i] for i in active]
        self._take(rows, next_tokens(logits, rows))

    def _prefill_isolated(self, rows: list[Sequence]) -> None:
        """Prefill `rows` together; if that fails, one at a time, so only a row that fails alone is failed.
        The running rows' cache is untouched by a failed prefill (it is only replaced once the new one is built)."""
        try:
            self._prefill(rows)
        except Exception as e:  # noqa: BLE001
            if len(rows) == 1:
                self._finish(rows[0], "error", _one_line("generation failed", e))
                return
            for seq in rows:
                self._prefill_isolated([seq])

    def _prefill(self, rows: list[Sequence]) -> None:
        import torch

        width = max(len(s.prompt_ids) for s in rows)
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, s in enumerate(rows):
            ids[i, width - len(s.prompt_ids):] = torch.tensor(s.prompt_ids)
            mask[i, width - len(s.prompt_ids):] = 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        cache = growing_cache()
        out = self.model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True, logits_to_keep=1,
                         **{self.cache_arg: cache})
        keep = mask.bool()[:, None, :, None]
        for layer in cache.layers:  # padded positions may hold NaN (fully masked rows); zero them
            layer.keys = torch.where(keep, layer.keys, 0)
            layer.values = torch.where(keep, layer.values, 0)
        self._insert(cache, mask, rows)
        self._take(rows, next_tokens(out.logits[:, -1], rows))

    def _insert(self, cache, mask, new_rows: list[Sequence]) -> None:
        """Put newly prefilled rows (their own cache and left-padded mask) into free slots of the batch, or new
        slots at its end. Everything that can fail is built before anything is assigned, so a failure here
        leaves the running batch as it was."""
        import torch
        import torch.nn.functional as F

        if self.cache is None:
            self.cache, self.mask, self.rows = cache, mask, list(new_rows)
            return
        width, new_width = self.mask.shape[1], mask.shape[1]
        free = [i for i, s in enumerate(self.rows) if s is None][: len(new_rows)]
        grow = len(new_rows) - len(free)
        slots = free + list(range(len(self.rows), len(self.rows) + grow))
        extra = max(0, new_width - width)  # a prompt longer than the batch so far: room on the left
        theirs = [(F.pad(layer.keys, (0, 0, width + extra - new_width, 0)),
                   F.pad(layer.values, (0, 0, width + extra - new_width, 0))) for layer in cache.layers]
        their_mask = F.pad(mask, (width + extra - new_width, 0))
        if extra:
            for layer in self.cache.layers:
                layer.prepend(extra)
            self.mask = F.pad(self.mask, (extra, 0))
        if grow:  # the batch gets more slots: the one copy of the whole cache, while the batch fills up
            for layer, (keys, values) in zip(self.cache.layers, theirs):
                layer.keys = torch.cat([layer.keys, keys.new_zeros((grow, *keys.shape[1:]))])
                layer.values = torch.cat([layer.values, values.new_zeros((grow, *values.shape[1:]))])
            self.mask = torch.cat([self.mask, self.mask.new_zeros((grow, self.mask.shape[1]))])
            self.rows += [None] * grow
        index = torch.tensor(slots, device=self.device)
        for layer, (keys, values) in zip(self.cache.layers, theirs):
            layer.keys[index] = keys  # writes through the view into the layer's buffers
            layer.values[index] = values
        self.mask[index] = their_mask
        for slot, seq in zip(slots, new_rows):
            self.rows[slot] = seq

    def _release_done(self) -> None:
        """Finished and cancelled rows leave their slots (no copy); columns no row uses any more are cut."""
        done = [i for i, s in enumerate(self.rows) if s is not None and s.done]
        if not done:
            return
        self.cancelled += sum(self.rows[i].cancelled and self.rows[i].finish_reason is None for i in done)
        for i in done:
            self.rows[i] = None
        if not self.running:
            self.rows, self.cache, self.mask = [], None, None
            return
        self.mask[done] = 0
        self._trim()

    def _compact(self) -> None:
        """Drop the free slots from the batch (a copy of the cache rows that stay)."""
        import torch

        keep = [i for i, s in enumerate(self.rows) if s is not None]
        if not keep:
            self.rows, self.cache, self.mask = [], None, None
            return
        index = torch.tensor(keep, device=self.device)
        self.mask = self.mask[index]
        for layer in self.cache.layers:
            layer.keys, layer.values = layer.keys[index], layer.values[index]
        self.rows = [self.rows[i] for i in keep]
        self._trim()

    def _trim(self) -> None:
        """Cut the leading columns no row uses (the left padding of departed long prompts): a narrower view."""
        used = self.mask.any(dim=0).nonzero()
        first = int(used[0]) if len(used) else self.mask.shape[1]
        if first:
            self.mask = self.mask[:, first:]
            for layer in self.cache.layers:
                layer.keys, layer.values = layer.keys[:, :, first:], layer.values[:, :, first:]

    def _take(self, rows: list[Sequence], choices: list) -> None:
        """Each row's sampled token, or its own failure (the other rows go on)."""
        for seq, choice in zip(rows, choices):
            if isinstance(choice, Exception):
                self._finish(seq, "error", _one_line("sampling failed", choice))
                continue
            try:
                self._accept(seq, choice)
            except Exception as e:  # noqa: BLE001  (e.g. a token the tokenizer cannot decode)
                self._finish(seq, "error", _one_line("generation failed", e))

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


def _one_line(what: str, e: BaseException) -> str:
    """A one-line reason for `Sequence.error`."""
    lines = str(e).strip().splitlines()
    return f"{what}: {type(e).__name__}" + (f": {lines[0]}" if lines else "")


class BatchScheduler:
    """Runs `engine.step()` on a background thread whenever there is work (the server's engine loop)."""

    def __init__(self, engine: BatchEngine):
        self.engine = engine
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
