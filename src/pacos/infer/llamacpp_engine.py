"""The llama.cpp engine: a GGUF file decoded by llama.cpp (llama-cpp-python's low-level API), with continuous
batching over one context and tokens chosen by pacos's own sampler.

One llama.cpp context holds every running sequence: slot i of the batch is llama.cpp sequence id i, and its
KV cells are that sequence's alone. The cache is unified (one pool of cells shared by all sequences: every
sequence at full length when that fits KV_BUDGET, else admission while the running sequences' ends fit):
llama.cpp then takes tokens of any set of sequences, decodes and prefills alike, into one ubatch, where its
per-sequence streams would split a batch by runs of consecutive sequence ids and by equal token counts.

Each step (1) frees the cells of finished or cancelled sequences (`llama_memory_seq_rm`), (2) admits waiting
prompts into free slots, and (3) runs one `llama_decode` over one token of every decoding sequence plus as
much of the admitted prompts as fits `PREFILL_CHUNK` (a longer prompt goes on in the following steps). The logits of the rows that asked for them come back as one [rows, vocab] numpy view,
handed to `pacos.infer.sampling.next_tokens` as a torch tensor without a copy, and the chosen tokens to
`SequenceBatch._take`: stops, stop ids, stripping and streaming are the transformers engine's, line for line.

Failures stay with their rows: a `llama_decode` that fails is undone (the cells it wrote are removed) and
its entries retried one by one, so only an entry that fails alone is failed; a row that cannot be sampled
fails alone (`SequenceBatch._take`).
"""

from __future__ import annotations

import ctypes
import time

from pacos.errors import ModelLoadError, PacosError
from pacos.infer.continuous import BatchedEngine, Sequence, SequenceBatch
from pacos.infer.sampling import next_tokens

DEFAULT_CONTEXT = 2048  # tokens per sequence at most by default (or the model's own context, when shorter)
PREFILL_CHUNK = 512  # tokens per llama_decode (llama.cpp's n_batch and n_ubatch)
KV_BUDGET = 1 << 30  # bytes the KV cache takes at most, unless one whole context needs more
DECODE_ERRORS = {1: "no room in the KV cache", 2: "aborted", -1: "invalid batch"}


class LlamaCppBatch(SequenceBatch):
    """The step loop over one llama.cpp context; owns the model, the context and the token batch."""

    def __init__(self, path, tokenizer, *, max_batch: int = 16, max_waiting: int = 64, context: int | None = None,
                 threads: int | None = None):
        from pacos.models.gguf_file import (
            check_gguf,
            import_llama_cpp,
            llama_cpp_said,
            physical_cores,
        )

        lc = self.lc = import_llama_cpp()
        path = check_gguf(path)
        limit = lc.llama_max_parallel_sequences()
        if max_batch > limit:
            raise PacosError(f"llama.cpp decodes at most {limit} sequences together; lower the batch size "
                             f"(got {max_batch})")
        lc.llama_backend_init()
        self.model = lc.llama_model_load_from_file(str(path).encode(), lc.llama_model_default_params())
        if not self.model:
            raise ModelLoadError(f"llama.cpp could not load {path}: {llama_cpp_said() or 'unknown reason'}")
        self.ctx = self.llama_batch = self.pool = None
        try:
            trained = lc.llama_model_n_ctx_train(self.model)
            context = context or min(DEFAULT_CONTEXT, trained if trained > 0 else DEFAULT_CONTEXT)
            super().__init__(tokenizer, max_batch=max_batch, max_waiting=max_waiting, context=context)
            self.n_batch = max(PREFILL_CHUNK, max_batch)
            self.threads = threads or physical_cores()
            params = lc.llama_context_default_params()
            # llama.cpp's f16 cache, whatever the weights: an f32 cache decoded an f32 file ~30% slower (2 cores,
            # `small`), for logits closer to the HF model's by ~1e-3.
            params.n_ctx = self._cells(context, max_batch, value_bytes=2)
            params.n_seq_max, params.kv_unified = max_batch, True
            # No flash attention (llama-cpp-python's `Llama` default; llama.cpp's context default is "auto", on):
            # on CPU it decoded `small` q4_k_m slower, 2 threads, 256-token prompt, alternated runs: 147-177 tokens/s
            # against 172-198 without (this engine, with its thread pool), 180-231 against 271-434 with the pool
            # left out (docs/benchmarks.md "GGUF quantization").
            params.flash_attn_type = getattr(lc, "LLAMA_FLASH_ATTN_TYPE_DISABLED", 0)
            params.n_batch = params.n_ubatch = self.n_batch
            params.n_threads = params.n_threads_batch = self.threads
            params.no_perf = True
            self.ctx = lc.llama_init_from_model(self.model, params)
            if not self.ctx:
                raise ModelLoadError(f"llama.cpp could not make a context of {context} x {max_batch} tokens for "
                                     f"{path}: {llama_cpp_said() or 'unknown reason'}")
            from pacos.infer.ggml_threadpool import Threadpool

            self.pool = Threadpool(lc, self.ctx, self.threads)  # one pool for the context's life (see its module)
            self.memory = lc.llama_get_memory(self.ctx)
            self.cells = lc.llama_n_ctx(self.ctx)
            vocab = lc.llama_model_get_vocab(self.model)
            self.n_vocab = lc.llama_vocab_n_tokens(vocab)
            self.llama_batch = lc.llama_batch_init(self.n_batch, 0, 1)
        except BaseException:
            self.free()
            raise
        import numpy as np

        # The batch's arrays as numpy views (filled without a ctypes call per token, but for the sequence ids).
        n = self.n_batch
        self.tokens = np.ctypeslib.as_array(self.llama_batch.token, (n,))
        self.positions = np.ctypeslib.as_array(self.llama_batch.pos, (n,))
        self.wants_logits = np.ctypeslib.as_array(self.llama_batch.logits, (n,))
        np.ctypeslib.as_array(self.llama_batch.n_seq_id, (n,))[:] = 1
        self.seq_ids = [self.llama_batch.seq_id[i] for i in range(n)]  # each token's one sequence id: seq_ids[i][0]
        self.rows = [None] * max_batch  # slot i is llama.cpp sequence i
        self.fed = [0] * max_batch  # tokens of each slot's sequence in the KV cache
        self.admitted = 0
        self.order = [0] * max_batch  # admission order, so prompts are prefilled first come, first served
        self.decode_seconds = 0.0  # time spent inside llama_decode (benchmarks)
        self._view = (None, None)  # (address, tensor) of the logits buffer as last viewed

    def _cells(self, context: int, max_batch: int, value_bytes: int) -> int:
        """KV cells for the context: every sequence at full length when that fits KV_BUDGET, else as many
        as fit it (at least one whole context); `_has_room` admits sequences only while their ends fit."""
        lc, model = self.lc, self.model
        kv_width = lc.llama_model_n_embd(model) * lc.llama_model_n_head_kv(model) // max(1, lc.llama_model_n_head(model))
        per_token = 2 * lc.llama_model_n_layer(model) * kv_width * value_bytes  # keys and values, every layer
        return min(context * max_batch, max(context, KV_BUDGET // max(1, per_token)))

    def _has_room(self, seq: Sequence, admitted: list[Sequence]) -> bool:
        most = lambda s: min(len(s.prompt_ids) + s.sampling.max_new_tokens, self.context)  # cells it can reach
        return sum(map(most, self.running)) + sum(map(most, admitted)) + most(seq) <= self.cells

    def free(self) -> None:
        """Release llama.cpp's batch, context and model (the step thread must have stopped)."""
        if self.llama_batch is not None:
            self.lc.llama_batch_free(self.llama_batch)
            self.llama_batch = None
        if self.pool is not None:
            self.pool.close()
            self.pool = None
        if self.ctx:
            self.lc.llama_free(self.ctx)
            self.ctx = None
        if self.model:
            self.lc.llama_model_free(self.model)
            self.model = None

    # -- the step loop ----------------------------------------------------------------------------------
    def step(self) -> None:
        import torch

        with torch.inference_mode():
            try:
                for slot in self._leave_done():
                    self.lc.llama_memory_seq_rm(self.memory, slot, -1, -1)
                    self.fed[slot] = 0
                free = (i for i, s in enumerate(self.rows) if s is None)
                for seq in self._admit():
                    slot = next(free)
                    self.rows[slot], self.fed[slot], self.order[slot] = seq, 0, self.admitted
                    self.admitted += 1
                if self.running:
                    self._run(self._entries())
            except Exception as e:  # noqa: BLE001  (a failed step fails the rows in it, not the queue)
                self._fail(self.running, "generation failed", e)
                self.rows = [None] * self.max_batch
                self.lc.llama_memory_clear(self.memory, True)
        self.steps += 1

    def _entries(self) -> list[tuple[int, int]]:
        """(slot, tokens to feed) for this step: one token of every decoding sequence, then prompts in order of
        arrival for as long as the batch has room."""
        decoding, prefilling, room = [], [], self.n_batch
        for slot, seq in enumerate(self.rows):
            if seq is None:
                continue
            if self.fed[slot] >= len(seq.prompt_ids):
                decoding.append((slot, 1))
            else:
                prefilling.append(slot)
        room -= len(decoding)
        for slot in sorted(prefilling, key=self.order.__getitem__):
            if room <= 0:
                break
            n = min(room, len(self.rows[slot].prompt_ids) - self.fed[slot])
            decoding.append((slot, n))
            room -= n
        return decoding

    def _run(self, entries: list[tuple[int, int]]) -> None:
        """One llama_decode over `entries`, then the next token of every sequence that reached its end. On
        failure the entries are undone and retried alone, so only one that fails by itself is failed."""
        rc = self._decode(entries)
        if rc != 0:
            for slot, _ in entries:
                self.lc.llama_memory_seq_rm(self.memory, slot, self.fed[slot], -1)  # cells a partial decode left
            if len(entries) > 1:
                for entry in entries:
                    self._run([entry])
                return
            from pacos.models.gguf_file import llama_cpp_said

            said = llama_cpp_said()
            self._fail([self.rows[entries[0][0]]], "generation failed",
                       PacosError(f"llama_decode returned {rc} ({DECODE_ERRORS.get(rc, 'error')})"
                                  + (f": {said}" if said else "")))
            return
        done = []
        for slot, n in entries:
            self.fed[slot] += n
            seq = self.rows[slot]
            if self.fed[slot] == len(seq.prompt_ids) + len(seq.output_ids):
                done.append(seq)
        if done:
            self._take(done, next_tokens(self._logits(len(done)), done))

    def _decode(self, entries: list[tuple[int, int]]) -> int:
        """Fill the batch with `entries` and run llama_decode; its return code."""
        k = 0
        for slot, n in entries:
            seq, start = self.rows[slot], self.fed[slot]
            if start < len(seq.prompt_ids):
                self.tokens[k:k + n] = seq.prompt_ids[start:start + n]
            else:
                self.tokens[k] = seq.output_ids[start - len(seq.prompt_ids)]
            self.positions[k:k + n] = range(start, start + n)
            self.wants_logits[k:k + n] = 0
            for i in range(k, k + n):
                self.seq_ids[i][0] = slot
            k += n
            if start + n == len(seq.prompt_ids) + len(seq.output_ids):
                self.wants_logits[k - 1] = 1
        self.llama_batch.n_tokens = k
        began = time.perf_counter()
        rc = self.lc.llama_decode(self.ctx, self.llama_batch)
        self.lc.llama_synchronize(self.ctx)  # the graph may still be computing (reading the logits would wait)
        self.decode_seconds += time.perf_counter() - began
        return rc

    def _logits(self, rows: int):
        """The last decode's logits, [rows, vocab], as a torch tensor over llama.cpp's buffer (no copy; read
        before the next decode). The view is made again only when llama.cpp moves or grows the buffer."""
        import numpy as np
        import torch

        pointer = self.lc.llama_get_logits(self.ctx)
        address = ctypes.cast(pointer, ctypes.c_void_p).value
        if address != self._view[0] or rows > len(self._view[1]):
            self._view = (address, torch.from_numpy(np.ctypeslib.as_array(pointer, (rows, self.n_vocab))))
        return self._view[1][:rows]


class LlamaCppEngine(BatchedEngine):
    name = "llama.cpp"

    def __init__(self, path, *, template: str | None = None, kind: str = "conversation", max_batch: int = 16,
                 max_waiting: int = 64, threads: int | None = None, context: int | None = None):
        from pacos.models.gguf_file import (
            check_gguf,
            import_llama_cpp,
            load_gguf_tokenizer,
        )
        from pacos.models.loading import model_revision
        from pacos.prompting.templates import resolve_template

        import_llama_cpp()  # a missing llama-cpp-python is said before anything is read
        path = check_gguf(path)
        self.tokenizer = load_gguf_tokenizer(path)
        self.template = resolve_template(path, self.tokenizer, kind, template)
        self.model_ref, self.revision = str(path), model_revision(path, None)
        batch = LlamaCppBatch(path, self.tokenizer, max_batch=max_batch, max_waiting=max_waiting, context=context,
                              threads=threads)
        # The tokenizer's EOS, as on the HF model (the file's own EOS may be a template's end of turn, which
        # `start` adds for that template only).
        self._start_stepping(batch, {self.tokenizer.eos_token_id} - {None})

    def stats(self) -> dict:
        return {**super().stats(), "threads": self.batch.threads, "kv_cells": self.batch.cells,
                "threadpool": bool(self.batch.pool and self.batch.pool.attached)}

    def close(self) -> None:
        super().close()
        if not self.scheduler.thread.is_alive():  # never free what a step still running may use
            self.batch.free()


def decode_speed(path, *, sequences: int = 1, new_tokens: int = 128, prompt: str = "Name three colours.",
                 ids: list[int] | None = None, threads: int | None = None, repeats: int = 1,
                 via_events: bool = False) -> dict:
    """Greedy decode throughput of this engine on a GGUF file, for benchmarks: `sequences` streams of one prompt
    (the Alpaca prompt of `prompt`, or the token `ids` as they are) started together through the engine
    interface, EOS ignored, timed by whole generations: one token each (prefill and first token) and
    `new_tokens` each, the fastest of `repeats` each; the difference is the decoding (a token past EOS sends no
    text event, but every generation ends with one). Events go to a callback on the engine's thread, as
    `pacos infer|serve` take them, or with `via_events` are read with `Stream.events()` from this thread, as
    `pacos ask|chat` do (one sequence). Returns aggregate output tokens/s, prompt tokens/s (of the 1-token
    generations) and the share of the decoding time spent inside llama_decode."""
    import threading

    from pacos.data.records import Example
    from pacos.infer.params import SamplingParams

    if via_events and sequences != 1:
        raise ValueError("via_events reads one stream")
    with LlamaCppEngine(path, kind="instruction", max_batch=sequences, max_waiting=sequences,
                        threads=threads) as engine:
        ids = list(ids) if ids is not None else engine.encode(Example(prompt))

        def run(tokens: int) -> tuple[float, float]:
            """(wall seconds, seconds inside llama_decode) of one round of generations."""
            sampling, ended = SamplingParams(temperature=0.0, max_new_tokens=tokens), []
            began, decoding = time.perf_counter(), engine.batch.decode_seconds
            if via_events:
                ended = list(engine.start(ids, sampling, ignore_eos=True).events())[-1:]
            else:
                finished = threading.Semaphore(0)

                def sink(stream, event):
                    if event.finish_reason is not None:
                        ended.append(event)
                        finished.release()

                for _ in range(sequences):
                    engine.start(ids, sampling, ignore_eos=True, sink=sink)
                for _ in range(sequences):
                    finished.acquire()
            took = time.perf_counter() - began, engine.batch.decode_seconds - decoding
            failed = [e.error for e in ended if e.error]
            if failed:
                raise PacosError(f"{path}: generation failed: {failed[0]}")
            return took

        run(4)  # warm-up
        (short, short_decoding), (long, long_decoding) = (min(run(n) for _ in range(repeats)) for n in (1, new_tokens))
        seconds, tokens = long - short, sequences * (new_tokens - 1)
        return {"sequences": sequences, "tokens": tokens, "seconds": seconds, "tokens_per_s": tokens / seconds,
                "prompt_tokens_per_s": sequences * len(ids) / short,
                "in_llama_decode": (long_decoding - short_decoding) / seconds, "threads": engine.batch.threads}

