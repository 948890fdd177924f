"""Settings of a remote OpenAI-compatible model: what every remote role shares, and each role's own.

A role (the teacher of self-instruct; the judge of `pacos eval judge` and `pacos data score`) is a subclass of
RemoteConfig that adds `url` and `model` with its own flags (`--teacher-url`, `--judge-url`) and what it sends;
the transport settings (key, concurrency, deadline, size cap, retries) are written once, here, and keep the same
flags in every command.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import ClassVar

from pacos.options import check_fields, flag_of, option

OPENAI_URL = "https://api.openai.com/v1"
API_KEY_ENV = "OPENAI_API_KEY"


@dataclass
class RemoteConfig:
    """The transport settings; a subclass adds `url` and `model` (and names its ROLE for messages)."""

    ROLE: ClassVar[str] = "server"

    api_key: str | None = option(None, f"API key (default: ${API_KEY_ENV})")
    concurrency: int = option(8, "requests in flight", ge=1)
    requests_per_minute: float = option(0.0, "request starts per minute; 0: no limit", ge=0)
    timeout: float = option(120.0, "seconds for one whole attempt, body included; then it is retried", gt=0)
    # Larger bodies are refused unread; a 5 x 3072-token answer is ~100 KB.
    max_response_bytes: int = option(4 * 2**20, "larger responses are refused unread and count as bad answers "
                                                "(default 4 MiB)", ge=1)
    max_retries: int = option(8, "retries of a failing request", ge=0)
    backoff_base: float = option(1.0, "seconds before the first retry (at most; doubles per attempt)", ge=0)
    backoff_cap: float = option(60.0, "longest wait between retries, in seconds", ge=0)

    def __post_init__(self) -> None:
        check_fields(self)

    def key(self) -> str | None:
        """The API key: --api-key, else the environment's."""
        return self.api_key or os.environ.get(API_KEY_ENV) or None

    def flag(self, name: str) -> str:
        """The CLI flag of one of this config's fields, for messages (`--teacher-url`, `--judge-model`)."""
        return flag_of(self, name)


@dataclass
class TeacherConfig(RemoteConfig):
    ROLE: ClassVar[str] = "teacher"

    url: str = option(OPENAI_URL, "OpenAI-compatible base URL", flag="--teacher-url", nonempty=True)
    model: str = option("gpt-3.5-turbo-instruct", "model name", flag="--teacher-model", nonempty=True)
    api: str = option("completions", "endpoint", choices=("completions", "chat"))
    temperature: float = option(1.0, "sampling temperature", ge=0)
    top_p: float = option(1.0, "nucleus sampling mass", ge=0, le=1)
    max_tokens: int = option(3072, "tokens per answer", ge=1)


@dataclass(kw_only=True)
class JudgeConfig(RemoteConfig):
    ROLE: ClassVar[str] = "judge"

    url: str = option(OPENAI_URL, "OpenAI-compatible base URL of the judge", flag="--judge-url", nonempty=True)
    model: str = option(help="the judge model, e.g. gpt-4o (part of every cache key)", flag="--judge-model",
                        nonempty=True)
    temperature: float = option(0.0, "sampling temperature of the judge", ge=0)
    max_tokens: int = option(1024, "tokens of one judgement (explanation and verdict)", ge=1)
    logprobs: bool = option(False, "ask for the verdict token's log probabilities: a continuous preference "
                                   "(pairwise) as AlpacaEval 2 computes it")
