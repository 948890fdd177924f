"""The registry of engines: a name on the command line to an `Engine` loaded on a model.

A GGUF file is run by llama.cpp whatever the default; the other backends load model directories and hub ids.
"""

from __future__ import annotations

from pacos.errors import PacosError
from pacos.infer.engine import Engine

ENGINES = ("transformers", "vllm", "llama.cpp")
DEFAULT_ENGINE = "transformers"
GGUF_ENGINE = "llama.cpp"


def engine_for(model_ref, name: str | None = None) -> str:
    """The backend that runs `model_ref`: `name` when given (a one-line error if it can't), else llama.cpp for a
    GGUF file and the default for anything else."""
    from pacos.models.gguf_file import is_gguf

    gguf = is_gguf(model_ref)
    if name is None:
        return GGUF_ENGINE if gguf else DEFAULT_ENGINE
    if name not in ENGINES:
        raise PacosError(f"unknown backend {name!r}; choose one of: {', '.join(ENGINES)}")
    if gguf and name != GGUF_ENGINE:
        raise PacosError(f"{model_ref} is a GGUF file, which the {name} backend does not load; leave out --backend "
                         f"({GGUF_ENGINE} runs GGUF files) or give the model's directory")
    if name == GGUF_ENGINE and not gguf:
        raise PacosError(f"the {GGUF_ENGINE} backend runs GGUF files and {model_ref} is not one; export it first "
                         f"(pacos export {model_ref} --out MODEL.gguf) or leave out --backend")
    return name


def load_engine(model_ref: str, name: str | None = None, *, template: str | None = None,
                kind: str = "conversation", max_batch: int = 16, max_waiting: int = 64,
                threads: int | None = None) -> Engine:
    """The engine `name` (default: the one for the model, see `engine_for`) on `model_ref`, with the template
    resolved for records of `kind` ("instruction" or "conversation"): the one given, else the one the model was
    trained with, else the default. `threads`: CPU threads (llama.cpp's, or torch's)."""
    name = engine_for(model_ref, name)
    if name != GGUF_ENGINE:
        from pacos.models.loading import check_model_ref

        check_model_ref(model_ref)  # a missing directory: one line before torch and transformers load (seconds)
    if name == "vllm":
        from pacos.infer.vllm_engine import VLLMEngine

        return VLLMEngine(model_ref, template=template, kind=kind, max_batch=max_batch, max_waiting=max_waiting)
    if name == GGUF_ENGINE:
        from pacos.infer.llamacpp_engine import LlamaCppEngine

        return LlamaCppEngine(model_ref, template=template, kind=kind, max_batch=max_batch, max_waiting=max_waiting,
                              threads=threads)
    from pacos.infer.hf_engine import TransformersEngine

    return TransformersEngine.load(model_ref, template=template, kind=kind, max_batch=max_batch,
                                   max_waiting=max_waiting, threads=threads)
