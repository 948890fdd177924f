"""The one registry of prompt/chat templates: how records become text segments, what is trained, where to stop.

Every stage (training, preview, inference, chat, serving) renders through this module, so what a model
is trained on and what it is prompted with at inference are the same strings by construction.

A template turns a record into `Segment`s. A segment is tokenized on its own (never by guessing where a
prefix ends in a joint tokenization), `trained` says whether its tokens carry loss, and `eos` appends
the tokenizer's EOS id after it (also trained), so the model learns to stop.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from pacos.data.records import Conversation, Example, Message, example_to_conversation
from pacos.errors import PacosError

# stanford_alpaca train.py PROMPT_DICT, byte for byte (nothing follows "### Response:").
ALPACA_PROMPT_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides further context. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:"
)
ALPACA_PROMPT_NO_INPUT = (
    "Below is an instruction that describes a task. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Response:"
)

# FastChat vicuna_v1.1: system + " " + "USER: msg ASSISTANT: reply</s>USER: ..."
VICUNA_SYSTEM = (
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions."
)

TEMPLATE_NAMES = ("alpaca", "vicuna", "chatml", "model")


@dataclass(frozen=True)
class Segment:
    text: str
    trained: bool
    eos: bool = False  # append the tokenizer's EOS id after the text (trained iff the segment is)


class Template:
    """Base: renders records into segments; `prompt_segments` stops where the model must answer."""

    name: str = ""
    stop_strings: tuple[str, ...] = ()
    # Text that ends an assistant turn besides the EOS token (e.g. ChatML's <|im_end|>); a generation
    # stop token when the tokenizer has it as one token.
    turn_end: str = ""

    def segments(self, record: Example | Conversation) -> list[Segment]:
        conv = _as_conversation(record)
        _check_conversation(conv)
        return self.render(conv, answer_last=True)

    def prompt_segments(self, record: Example | Conversation) -> list[Segment]:
        """Segments up to the point where the next assistant answer begins (for generation)."""
        conv = _as_conversation(record)
        if conv.turns and conv.turns[-1].role == "assistant":
            conv = Conversation(conv.messages[:-1], conv.extra)
        if not conv.turns or conv.turns[-1].role != "user":
            raise PacosError("a prompt must end with a user turn")
        return self.render(conv, answer_last=False)

    def prompt(self, record: Example | Conversation) -> str:
        return "".join(s.text for s in self.prompt_segments(record))

    def render(self, conv: Conversation, answer_last: bool) -> list[Segment]:
        raise NotImplementedError


class AlpacaTemplate(Template):
    name = "alpaca"
    # A model that never learnt EOS runs on into a new "### Instruction:" block; stop there.
    stop_strings = ("### Instruction:", "### Response:", "### Input:")

    def segments(self, record):
        if isinstance(record, Example):
            return [Segment(render_alpaca_prompt(record), False), Segment(record.output, True, eos=True)]
        return super().segments(record)

    def prompt_segments(self, record):
        if isinstance(record, Example):
            return [Segment(render_alpaca_prompt(record), False)]
        return super().prompt_segments(record)

    def render(self, conv: Conversation, answer_last: bool) -> list[Segment]:
        # A chat with an instruction model: each user turn is one Alpaca prompt; earlier turns are given as
        # the input so the model sees the running history (Alpaca itself is single-turn).
        segments: list[Segment] = []
        history: list[str] = []
        turns = conv.turns
        for i in range(0, len(turns), 2):
            user = turns[i].content
            context = "\n".join(history)
            segments.append(Segment(render_alpaca_prompt(Example(user, context)), False))
            if i + 1 < len(turns):
                reply = turns[i + 1].content
                segments.append(Segment(reply, True, eos=True))
                history += [f"User: {user}", f"Assistant: {reply}"]
        return segments


class VicunaTemplate(Template):
    name = "vicuna"
    stop_strings = ("USER:", "</s>")

    def render(self, conv: Conversation, answer_last: bool) -> list[Segment]:
        system = conv.system if conv.system is not None else VICUNA_SYSTEM
        text = system + " "
        segments: list[Segment] = []
        for msg in conv.turns:
            if msg.role == "user":
                text += f"USER: {msg.content} ASSISTANT:"
            else:
                segments.append(Segment(text, False))
                # The reply's leading space belongs to the reply: generation starts right after "ASSISTANT:".
                segments.append(Segment(" " + msg.content, True, eos=True))
                text = ""
        if text:
            segments.append(Segment(text, False))
        return segments


class ChatMLTemplate(Template):
    name = "chatml"
    stop_strings = ("<|im_end|>", "<|im_start|>")
    turn_end = "<|im_end|>"

    def render(self, conv: Conversation, answer_last: bool) -> list[Segment]:
        text = f"<|im_start|>system\n{conv.system}<|im_end|>\n" if conv.system is not None else ""
        segments: list[Segment] = []
        for msg in conv.turns:
            if msg.role == "user":
                text += f"<|im_start|>user\n{msg.content}<|im_end|>\n<|im_start|>assistant\n"
            else:
                segments.append(Segment(text, False))
                segments.append(Segment(msg.content + "<|im_end|>", True))
                text = "\n"
        if text and (text != "\n" or not answer_last):
            segments.append(Segment(text, False))
        return segments


class ModelTemplate(Template):
    """The tokenizer's own `chat_template`, split into segments by rendering growing prefixes of the chat."""

    name = "model"

    def __init__(self, tokenizer):
        if not getattr(tokenizer, "chat_template", None):
            raise PacosError(
                "template 'model': this tokenizer has no chat_template; use --template alpaca, vicuna or chatml"
            )
        self.tokenizer = tokenizer
        eos = tokenizer.eos_token
        self.stop_strings = (eos,) if eos else ()

    def _render(self, messages: list[Message], add_generation_prompt: bool) -> str:
        chat = [{"role": m.role, "content": m.content} for m in messages]
        return self.tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=add_generation_prompt)

    def render(self, conv: Conversation, answer_last: bool) -> list[Segment]:
        segments: list[Segment] = []
        done = ""  # text already assigned to segments
        msgs = conv.messages
        for i, msg in enumerate(msgs):
            if msg.role != "assistant":
                continue
            before = self._render(msgs[:i], add_generation_prompt=True)
            after = self._render(msgs[: i + 1], add_generation_prompt=False)
            if not (before.startswith(done) and after.startswith(before)):
                raise PacosError(
                    "template 'model': the tokenizer's chat_template does not render conversations "
                    "incrementally, so turns can't be masked exactly; use --template chatml or vicuna"
                )
            reply = after[len(before):]
            # Whitespace after the end-of-turn marker belongs to the next prompt, not the answer.
            stripped = reply.rstrip()
            segments.append(Segment(before[len(done):], False))
            segments.append(Segment(stripped, True))
            done = before + stripped
        if not answer_last or not msgs or msgs[-1].role != "assistant":
            full = self._render(msgs, add_generation_prompt=True)
            if not full.startswith(done):
                raise PacosError("template 'model': chat_template is not incremental; use --template chatml")
            if full[len(done):]:
                segments.append(Segment(full[len(done):], False))
        return segments


_TEMPLATES = {"alpaca": AlpacaTemplate, "vicuna": VicunaTemplate, "chatml": ChatMLTemplate}


def render_alpaca_prompt(example: Example) -> str:
    """The exact stanford_alpaca prompt for an instruction record (with-input or no-input variant)."""
    if example.input:
        return ALPACA_PROMPT_INPUT.format(instruction=example.instruction, input=example.input)
    return ALPACA_PROMPT_NO_INPUT.format(instruction=example.instruction)


def get_template(name: str | None, tokenizer=None, record_kind: str = "instruction") -> Template:
    """A template by name; None picks the default: alpaca for instructions, the model's own (else vicuna) for chats."""
    if name is None:
        name = default_template_name(record_kind, tokenizer)
    if name == "model":
        if tokenizer is None:
            raise PacosError("template 'model' needs the model's tokenizer")
        return ModelTemplate(tokenizer)
    if name not in _TEMPLATES:
        raise PacosError(f"unknown template {name!r}; choose one of: {', '.join(TEMPLATE_NAMES)}")
    return _TEMPLATES[name]()


def default_template_name(record_kind: str, tokenizer=None) -> str:
    if record_kind == "instruction":
        return "alpaca"
    return "model" if tokenizer is not None and getattr(tokenizer, "chat_template", None) else "vicuna"


def record_kind(records) -> str:
    """'conversation' if any record is a multi-turn chat, else 'instruction'."""
    return "conversation" if any(isinstance(r, Conversation) for r in records) else "instruction"


def _as_conversation(record: Example | Conversation) -> Conversation:
    return example_to_conversation(record) if isinstance(record, Example) else record


def _check_conversation(conv: Conversation) -> None:
    roles = [m.role for m in conv.turns]
    if not roles or roles[-1] != "assistant" or any(
        r != ("user" if i % 2 == 0 else "assistant") for i, r in enumerate(roles)
    ):
        raise PacosError("a training conversation must alternate user/assistant turns and end with the assistant")


def trained_template_name(model_ref: str | Path) -> str | None:
    """The template a pacos-trained model was fine-tuned with (recorded beside its weights, or in the metadata
    of a GGUF file `pacos export` wrote)."""
    from pacos.models.gguf_file import gguf_template_name, is_gguf

    if is_gguf(model_ref):
        return gguf_template_name(model_ref)
    run = Path(model_ref) / "pacos_train.json"
    if run.is_file():
        return json.loads(run.read_text()).get("template")
    return None


def resolve_template(model_ref, tokenizer, kind: str, name: str | None) -> Template:
    """Explicit name, else the one the model was trained with, else the default for records of `kind`
    ("instruction" or "conversation", see `record_kind`)."""
    return get_template(name or trained_template_name(model_ref), tokenizer, kind)
