"""The one in-memory data model: instruction examples and multi-turn conversations."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Union

ROLES = ("system", "user", "assistant")


@dataclass
class Example:
    """An Alpaca-style instruction record; `extra` keeps any other fields (task, id, ...)."""

    instruction: str
    input: str = ""
    output: str = ""
    extra: dict = field(default_factory=dict)


@dataclass
class Message:
    role: str  # one of ROLES
    content: str


@dataclass
class Conversation:
    """A multi-turn chat: an optional leading system message, then user/assistant turns alternating."""

    messages: list[Message]
    extra: dict = field(default_factory=dict)

    @property
    def system(self) -> str | None:
        if self.messages and self.messages[0].role == "system":
            return self.messages[0].content
        return None

    @property
    def turns(self) -> list[Message]:
        """The messages after the system prompt."""
        return self.messages[1:] if self.system is not None else list(self.messages)


Record = Union[Example, Conversation]


def user_text(example: Example) -> str:
    """The user turn an instruction record stands for: instruction, then its input after a blank line."""
    return f"{example.instruction}\n\n{example.input}" if example.input else example.instruction


def example_to_conversation(example: Example) -> Conversation:
    """An instruction record as a one-turn chat; instruction and input are kept apart in `extra` for the way back."""
    extra = dict(example.extra)
    system = extra.pop("system", None)
    messages = [Message("system", system)] if system else []
    messages += [Message("user", user_text(example)), Message("assistant", example.output)]
    if example.input:
        extra["instruction"], extra["input"] = example.instruction, example.input
    return Conversation(messages, extra)


def conversation_to_example(conv: Conversation, where: str = "record") -> Example:
    """A one-turn chat as an instruction record; a multi-turn chat has no Alpaca form, so it is an error."""
    from pacos.errors import DataError

    turns = conv.turns
    if len(turns) != 2 or turns[0].role != "user" or turns[1].role != "assistant":
        raise DataError(
            f"{where}: a conversation with {len(turns)} turns has no Alpaca form (only one user turn "
            "followed by one assistant turn converts); keep it as sharegpt or messages"
        )
    clash = next((key for key in ("output", "system") if key in conv.extra), None)
    if clash is not None:
        raise DataError(f"{where}: the conversation has its own {clash!r} field, which its Alpaca form would "
                        "overwrite; rename the field or keep the record as sharegpt or messages")
    extra = dict(conv.extra)
    # instruction/input kept by example_to_conversation: used only if they still rebuild the user turn.
    instruction, input_ = extra.pop("instruction", None), extra.pop("input", "")
    if not isinstance(instruction, str) or not isinstance(input_, str) or \
            user_text(Example(instruction, input_)) != turns[0].content:
        instruction, input_ = turns[0].content, ""
    if conv.system is not None:
        extra["system"] = conv.system
    return Example(instruction, input_, turns[1].content, extra)
