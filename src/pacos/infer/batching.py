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
waiting queue is never failed. What does not depend on the model (the queue, the slots, what happens to each
chosen token, the stepping thread) is `pacos.infer.continuous`, shared with the llama.cpp backend; every
command reaches it through the engine interface (`pacos.infer.engine`).
"""

from __future__ import annotations

import inspect

from pacos.infer.continuous import Sequence, SequenceBatch
from pacos.infer.engine import QueueFull  # noqa: F401  (re-exported: callers import it with the step loop)
from pacos.infer.kv_cache import growing_cache
from pacos.infer.sampling import next_tokens


class BatchEngine(SequenceBatch):
    """The transformers step loop's state: running rows with their cache and mask (the queue, the slots and
    what happens to a chosen token are `SequenceBatch`'s)."""

    def __init__(self, model, tokenizer, max_batch: int = 16, max_waiting: int = 64):
        super().__init__(tokenizer, max_batch=max_batch, max_waiting=max_waiting,
                         context=getattr(model.config, "max_position_embeddings", None),
                         device=next(model.parameters()).device)
        self.model = model
        self.pad_id = next((i for i in (tokenizer.pad_token_id, tokenizer.eos_token_id) if i is not None), 0)
        # transformers 5.24 renamed the forward's `past_key_values` to `cache` (the old name warns until 5.40).
        self.cache_arg = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
        # `rows` are the batch's slots in cache row order; None is a free slot (a finished sequence's, until
        # another takes it: reusing slots means a joining or leaving sequence never copies the whole cache).
        self.cache = None  # GrowingCache over `rows`
        self.mask = None  # [slots, time] long: 1 where the cache holds a real token of that row

    # -- the step loop ----------------------------------------------------------------------------------
    def step(self) -> None:
        import torch

        with torch.inference_mode():
            try:
                self._release_done()
                if self.running:
                    self._decode()
            except Exception as e:  # noqa: BLE001  (a failed pass fails the rows in it, not the queue)
                self._fail(self.running, "generation failed", e)
                self.rows, self.cache, self.mask = [], None, None
            admitted = self._admit()
            if admitted:
                self._prefill_isolated(admitted)
            free = self.rows.count(None)
            if free and not self.waiting and 2 * free >= len(self.rows):
                self._compact()  # the batch is draining: stop computing the free slots
        self.steps += 1

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
                self._fail(rows, "generation failed", e)
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
        done = self._leave_done()
        if not done:
            return
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
