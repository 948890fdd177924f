"""Quantization with llama.cpp's own quantizer (`llama_model_quantize`, what `llama-quantize` runs): the same
per-tensor choices as llama.cpp's tools (e.g. q4_k_m keeps some tensors at q6_k; rows whose width is not a
multiple of 256 fall back to a type that fits), never a home-made K-quant."""

from __future__ import annotations

from pathlib import Path

from pacos.errors import PacosError

FTYPES = {"q8_0": "LLAMA_FTYPE_MOSTLY_Q8_0", "q6_k": "LLAMA_FTYPE_MOSTLY_Q6_K",
          "q5_k_m": "LLAMA_FTYPE_MOSTLY_Q5_K_M", "q4_k_m": "LLAMA_FTYPE_MOSTLY_Q4_K_M",
          "q4_0": "LLAMA_FTYPE_MOSTLY_Q4_0"}


def quantize(src: Path, dst: Path, quant: str, threads: int | None = None) -> None:
    """`src` (an f32/f16 GGUF) quantized to `quant` at `dst`."""
    from pacos.models.gguf_file import import_llama_cpp, physical_cores

    llama_cpp = import_llama_cpp()
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, FTYPES[quant])
    params.nthread = threads or physical_cores()
    status = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), params)
    if status != 0 or not dst.is_file():
        raise PacosError(f"llama.cpp's quantizer failed on {src} -> {quant} (status {status})")
