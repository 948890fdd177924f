"""A persistent ggml CPU thread pool for a llama.cpp context (llama-cpp-python binds none, so through ctypes).

Without one, ggml makes a disposable pool for every graph it computes: with pacos's portable build (OpenMP
off) each `llama_decode` starts and joins its worker threads, which on a busy 2-core machine cost more than
the decoding itself. Measured on `small` fine-tuned on Alpaca, 2 threads, batch 1, 256-token prompt, 128
tokens, this engine with and without the pool and raw llama-cpp-python, alternated in three rounds, beside one
busy-looping process (docs/inference.md): q4_k_m decoded 81-100 tokens/s with the pool, 30-36 without, raw
22-32; q8_0 68-94, 31-57, 27-59. On the quiet machine, two rounds: q4_k_m 304/232 with, 328/217 without;
q8_0 264/352 with, 230/250 without.

The pool must come from the ggml this process already loaded (`_loaded`).
"""

from __future__ import annotations

import ctypes
import os

MAX_THREADS = 512  # GGML_MAX_N_THREADS: the length of the cpumask in ggml_threadpool_params


class ThreadpoolParams(ctypes.Structure):
    """ggml.h's `struct ggml_threadpool_params`."""

    _fields_ = [("cpumask", ctypes.c_bool * MAX_THREADS), ("n_threads", ctypes.c_int), ("prio", ctypes.c_int),
                ("poll", ctypes.c_uint32), ("strict_cpu", ctypes.c_bool), ("paused", ctypes.c_bool)]


def _loaded(libdir: str, stem: str) -> ctypes.CDLL:
    """The copy of `libdir`'s library `stem` (e.g. "libggml-cpu") that this process has already loaded.

    Never a second copy: a wheel may ship the same library under several file names (libggml-cpu.so and
    libggml-cpu.so.0 as two files, not links), and loading the other name maps a second, uninitialised ggml
    whose pool threads then run its kernels: with it, q4_0 and q4_k_m files (whose weights the first copy had
    repacked) gave all-zero logits. RTLD_NOLOAD opens only what is loaded already; OSError when nothing is."""
    if not hasattr(os, "RTLD_NOLOAD"):
        raise OSError("no RTLD_NOLOAD on this platform")
    for name in sorted(os.listdir(libdir)):
        if name.startswith(stem + ".") or name.startswith(stem + "-"):
            try:
                return ctypes.CDLL(os.path.join(libdir, name), mode=os.RTLD_NOLOAD | os.RTLD_NOW)
            except OSError:
                continue  # that file is not the loaded copy
    raise OSError(f"no loaded {stem} in {libdir}")


def _libraries(llama_cpp):
    """(libggml-base, libggml-cpu, libllama) of the installed llama-cpp-python, the copies already loaded (after
    a context exists, so that the CPU backend is), with the signatures set."""
    libdir = os.path.join(os.path.dirname(llama_cpp.__file__), "lib")
    base = _loaded(libdir, "libggml-base")
    cpu = _loaded(libdir, "libggml-cpu")
    llama = llama_cpp.llama_cpp._lib
    base.ggml_threadpool_params_init.argtypes = [ctypes.POINTER(ThreadpoolParams), ctypes.c_int]
    base.ggml_threadpool_params_init.restype = None
    cpu.ggml_threadpool_new.argtypes = [ctypes.POINTER(ThreadpoolParams)]
    cpu.ggml_threadpool_new.restype = ctypes.c_void_p
    cpu.ggml_threadpool_free.argtypes = [ctypes.c_void_p]
    cpu.ggml_threadpool_free.restype = None
    llama.llama_attach_threadpool.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
    llama.llama_attach_threadpool.restype = None
    llama.llama_detach_threadpool.argtypes = [ctypes.c_void_p]
    llama.llama_detach_threadpool.restype = None
    return base, cpu, llama


class Threadpool:
    """A pool of `threads` attached to a context (for decoding and prompt batches alike); `close` detaches and
    frees it. Where the libraries lack the symbols (another build of llama-cpp-python), `attached` is False and
    ggml's own disposable pools are used, as before."""

    def __init__(self, llama_cpp, ctx, threads: int):
        self.ctx, self.pool, self._libs = ctx, None, None
        try:
            self._libs = _libraries(llama_cpp)
        except (OSError, AttributeError):
            return
        base, cpu, llama = self._libs
        params = ThreadpoolParams()
        base.ggml_threadpool_params_init(ctypes.byref(params), threads)
        self.pool = cpu.ggml_threadpool_new(ctypes.byref(params))
        if self.pool:
            llama.llama_attach_threadpool(ctypes.cast(ctx, ctypes.c_void_p), self.pool, self.pool)

    @property
    def attached(self) -> bool:
        return bool(self.pool)

    def close(self) -> None:
        """Detach and free (before the context is freed)."""
        if self.pool:
            _, cpu, llama = self._libs
            llama.llama_detach_threadpool(ctypes.cast(self.ctx, ctypes.c_void_p))
            cpu.ggml_threadpool_free(self.pool)
            self.pool = None
