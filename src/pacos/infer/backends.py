"""The registry of engines: a name on the command line to an `Engine` loaded on a model."""

from __future__ import annotations

from pacos.errors import PacosError
from pacos.infer.engine import Engine

ENGINES = ("transformers", "vllm")
DEFAULT_ENGINE = "transformers"


def load_engine(model_ref: str, name: str = DEFAULT_ENGINE, *, template: str | None = None,
                kind: str = "conversation", max_batch: int = 16, max_waiting: int = 64) -> Engine:
    """The engine `name` on `model_ref`, with the template resolved for records of `kind` ("instruction" or
    "conversation"): the one given, else the one the model was trained with, else the default."""
    if name not in ENGINES:
        raise PacosError(f"unknown backend {name!r}; choose one of: {', '.join(ENGINES)}")
    if name == "vllm":
        from pacos.infer.vllm_engine import VLLMEngine

        return VLLMEngine(model_ref, template=template, kind=kind, max_batch=max_batch, max_waiting=max_waiting)
    from pacos.infer.hf_engine import TransformersEngine

    return TransformersEngine.load(model_ref, template=template, kind=kind, max_batch=max_batch,
                                   max_waiting=max_waiting)
