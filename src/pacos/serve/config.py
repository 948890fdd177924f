"""The settings of `pacos serve`, written once: defaults, help and checks here; the CLI is generated."""

from __future__ import annotations

from dataclasses import dataclass

from pacos.infer.backends import ENGINES
from pacos.infer.config import EngineOptions
from pacos.options import ConfigError, check_fields, option
from pacos.prompting.templates import TEMPLATE_NAMES


@dataclass
class ServeConfig:
    host: str = option("127.0.0.1", "address to bind (loopback only by default)", nonempty=True)
    port: int = option(8000, "TCP port (0: any free one)", ge=0, le=65535)
    api_key: str | None = option(None, "require 'Authorization: Bearer KEY' on /v1/* and /feedback")
    served_name: str | None = option(None, "the model name clients ask for (default: the model directory's name)")
    backend: str | None = option(None, "generation engine (default: llama.cpp for a .gguf file, else "
                                       "transformers)", choices=ENGINES)
    template: str | None = option(None, "chat template; default: the one the model was trained with, else the "
                                        "model's own", choices=TEMPLATE_NAMES)
    max_batch: int = option(16, "sequences decoded together in each step", ge=1)
    max_queue: int = option(64, "waiting sequences before answering 503", ge=0)
    engine: EngineOptions = option(default_factory=EngineOptions, help="how the engine computes")  # noqa: RUF009
    max_choices_per_request: int | None = option(
        None, "most choices (n x prompts) one request may ask for, so no client takes every slot "
              "(default: --max-batch)", ge=1, metavar="N")
    allow_origin: tuple[str, ...] = option(
        (), "web origins (e.g. https://app.example, comma-separated or repeated) whose pages may also call this "
            "server (by default only the server's own page may)", metavar="ORIGIN")
    feedback_db: str | None = option(None, "SQLite file for votes (default: feedback.sqlite3 in the user data "
                                           "dir)", path=True)
    feedback: bool = option(True, "don't store votes from the web page")

    def __post_init__(self):
        check_fields(self)
        for origin in self.allow_origin:
            if not origin.startswith(("http://", "https://")) or origin.count("/") != 2:
                raise ConfigError(f"--allow-origin {origin}: give an origin, scheme://host[:port] (no path), "
                                  "e.g. https://app.example")

    @property
    def max_choices(self) -> int:
        return self.max_batch if self.max_choices_per_request is None else self.max_choices_per_request
