"""`pacos chat MODEL`: a multi-turn terminal chat that streams tokens, with /commands and history trimming.

`ChatSession` is the core (messages, prompt building with trimming, one streamed reply); the REPL at the
bottom only reads lines and prints. Replies come from the same engine interface every command uses, so
stop strings, sampling and streaming behave identically here, in `pacos serve` and in `pacos infer`.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import asdict, fields
from pathlib import Path

from pacos.data import strict_json
from pacos.data.records import Conversation, Message
from pacos.errors import PacosError
from pacos.infer.params import SamplingParams

HELP = """commands:
  /reset        forget the conversation (the system prompt stays)
  /save FILE    write the conversation as messages JSON
  /load FILE    read a conversation saved by /save (or any {"messages": [...]} file)
  /regen        answer the last message again
  /params [k=v ...]  show or set sampling parameters (e.g. /params temperature=0.7 max_new_tokens=128)
  /exit         leave (Ctrl-D works too)"""


def fit_history(messages: list[Message], prompt_len: Callable[[list[Message]], int], budget: int):
    """The messages with the oldest user/assistant turns dropped until the prompt fits `budget` tokens.

    The system prompt and the last user message are always kept; returns (messages, turns_dropped). If even
    those don't fit, raises PacosError.
    """
    system = [m for m in messages[:1] if m.role == "system"]
    turns = messages[len(system):]
    dropped = 0
    while prompt_len(system + turns) > budget:
        if len(turns) <= 1:
            raise PacosError(f"the message alone takes {prompt_len(system + turns)} tokens, more than the "
                             f"{budget} the context leaves after max_new_tokens; shorten it or lower max_new_tokens")
        turns = turns[2:]  # one user message and the reply to it
        dropped += 1
    return system + turns, dropped


class ChatSession:
    """A conversation with one model: add a user message, stream the reply, regenerate, save, load."""

    def __init__(self, engine, params: SamplingParams, system: str | None = None):
        self.engine, self.template, self.params, self.system = engine, engine.template, params, system
        self.turns: list[Message] = []  # user/assistant, alternating

    @property
    def messages(self) -> list[Message]:
        return ([Message("system", self.system)] if self.system else []) + self.turns

    def prompt_ids(self) -> tuple[list[int], int]:
        """Prompt ids for the next reply, with old turns trimmed to fit; and how many turns were dropped."""
        encode = lambda msgs: self.engine.encode(Conversation(msgs))
        context = self.engine.context_length or 10**9
        kept, dropped = fit_history(self.messages, lambda msgs: len(encode(msgs)),
                                    context - self.params.max_new_tokens)
        return encode(kept), dropped

    def reply(self, text: str, on_delta: Callable[[str], None]) -> tuple[str, int]:
        """Add a user message and stream the answer; returns (answer, turns dropped to fit the context)."""
        self.turns.append(Message("user", text))
        try:
            return self._answer(on_delta)
        except BaseException:
            if self.turns and self.turns[-1].role == "user":
                self.turns.pop()  # a failed turn leaves no half-conversation behind
            raise

    def regenerate(self, on_delta: Callable[[str], None]) -> tuple[str, int]:
        if not self.turns:
            raise PacosError("nothing to regenerate yet")
        if self.turns[-1].role == "assistant":
            self.turns.pop()
        return self._answer(on_delta)

    def _answer(self, on_delta) -> tuple[str, int]:
        self.params.check()
        ids, dropped = self.prompt_ids()
        stream = self.engine.start(ids, self.params, template=self.template)
        answer, finish = "", None
        try:
            for event in stream.events():
                if event.delta:
                    answer += event.delta
                    on_delta(event.delta)
                finish = event
        finally:  # Ctrl-C keeps what was said so far
            if stream.completion_tokens or answer:
                self.turns.append(Message("assistant", answer.rstrip()))
        if finish is not None and finish.finish_reason == "error":
            raise PacosError(finish.error or "generation failed")
        return answer, dropped

    def reset(self) -> None:
        self.turns = []

    def save(self, path: str | Path) -> None:
        data = {"messages": [{"role": m.role, "content": m.content} for m in self.messages]}
        Path(path).write_text(json.dumps(data, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")

    def load(self, path: str | Path) -> None:
        try:
            data = strict_json.loads(Path(path).read_bytes())  # its JSONInputError is a ValueError
        except (OSError, ValueError) as e:
            raise PacosError(f"{path}: can't read a conversation: {e}") from None
        raw = data.get("messages") if isinstance(data, dict) else data
        if not isinstance(raw, list) or not all(isinstance(m, dict) and m.get("role") in ("system", "user", "assistant")
                                                and isinstance(m.get("content"), str) for m in raw):
            raise PacosError(f'{path}: expected {{"messages": [{{"role", "content"}}, ...]}} as written by /save')
        msgs = [Message(m["role"], m["content"]) for m in raw]
        if msgs and msgs[0].role == "system":
            self.system, msgs = msgs[0].content, msgs[1:]
        if any(m.role != ("user" if i % 2 == 0 else "assistant") for i, m in enumerate(msgs)):
            raise PacosError(f"{path}: after the system prompt, user and assistant messages must alternate")
        self.turns = msgs

    def set_params(self, assignments: list[str]) -> None:
        types = {f.name: f.type for f in fields(SamplingParams)}
        new = asdict(self.params)
        for item in assignments:
            key, _, value = item.partition("=")
            key = key.strip().replace("-", "_")
            if key not in types or not value:
                raise PacosError(f"/params {item}: use key=value with key one of {', '.join(types)}")
            try:
                new[key] = None if value == "none" else (int(value) if "int" in str(types[key]) else float(value))
            except ValueError:
                raise PacosError(f"/params {item}: {value!r} is not a number") from None
        candidate = SamplingParams(**new)
        candidate.check()
        self.params = candidate


def run_repl(session: ChatSession, read: Callable[[str], str] = input, out=sys.stdout) -> None:
    """Read lines, answer them, handle /commands, until /exit or end of input."""
    write = lambda text: (out.write(text), out.flush())
    write("pacos chat: type a message, /help for commands, /exit to leave\n")
    while True:
        try:
            line = read("you> ").strip()
        except EOFError:
            write("\n")
            return
        except KeyboardInterrupt:
            write("\n")
            continue
        if not line:
            continue
        command, _, arg = line.partition(" ")
        try:
            if command in ("/exit", "/quit"):
                return
            elif command == "/help":
                write(HELP + "\n")
            elif command == "/reset":
                session.reset()
                write("(conversation cleared)\n")
            elif command == "/save":
                session.save(_need(arg, "/save FILE"))
                write(f"(saved {len(session.messages)} messages to {arg.strip()})\n")
            elif command == "/load":
                session.load(_need(arg, "/load FILE"))
                write(f"(loaded {len(session.turns)} messages from {arg.strip()})\n")
            elif command == "/params":
                if arg.strip():
                    session.set_params(arg.split())
                write("  ".join(f"{k}={v}" for k, v in asdict(session.params).items()) + "\n")
            elif command == "/regen":
                _stream(write, lambda d: session.regenerate(d))
            elif command.startswith("/") and " " not in command and len(command) > 1:
                write(f"unknown command {command}; /help lists them\n")
            else:
                _stream(write, lambda d, text=line: session.reply(text, d))
        except PacosError as e:
            write(f"error: {e}\n")


def _stream(write, answer) -> None:
    write("assistant> ")
    try:
        _, dropped = answer(write)
    except KeyboardInterrupt:
        write(" [stopped]\n")
        return
    write("\n")
    if dropped:
        write(f"(the {dropped} oldest turn(s) no longer fit the context and were left out)\n")


def _need(arg: str, usage: str) -> str:
    if not arg.strip():
        raise PacosError(f"usage: {usage}")
    return arg.strip()


def register(sub) -> None:
    from pacos.infer.cli import add_sampling_args
    from pacos.infer.config import MODEL_HELP

    p = sub.add_parser("chat", help="chat with a model in the terminal (streaming, multi-turn, /commands)")
    p.add_argument("model", metavar="MODEL", help=MODEL_HELP)
    p.add_argument("--system", help="system prompt")
    add_sampling_args(p)
    p.set_defaults(func=_chat)


def _chat(args) -> int:
    from pacos.infer.backends import load_engine
    from pacos.infer.cli import sampling_params
    from pacos.infer.config import EngineOptions, PromptOptions
    from pacos.options import from_args

    params = sampling_params(args)
    with load_engine(args.model, template=from_args(PromptOptions, args).template, kind="conversation",
                     max_batch=1, threads=from_args(EngineOptions, args).threads) as engine:
        run_repl(ChatSession(engine, params, system=args.system))
    return 0
