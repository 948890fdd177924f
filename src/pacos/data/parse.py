"""One JSON object <-> records, per format: pure functions, no files; a bad object raises RecordError with the reason."""

from __future__ import annotations

from pacos.data.records import ROLES, Conversation, Example, Message, Record

# ShareGPT speakers, with the OpenAI role names people often write there instead.
SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}
SHAREGPT_FROM = {"user": "human", "assistant": "gpt", "system": "system"}

# Per-turn fields other than speaker/text (e.g. axolotl's "weight") are kept here, aligned with the messages.
MESSAGE_EXTRA = "message_extra"


class RecordError(ValueError):
    """Why one record is bad; the caller adds where it is (FILE:LINE or FILE[index])."""


def parse_object(obj, fmt: str, require_output: bool = True) -> list[Record]:
    """The records one JSON object of format `fmt` holds (a self-instruct task holds one per instance).

    `require_output=False` accepts records with nothing to train on yet (inference inputs).
    """
    if not isinstance(obj, dict):
        raise RecordError(f"record is {_type_name(obj)}, not a JSON object")
    if fmt in ("alpaca", "jsonl"):
        return [parse_example(obj, require_output)]
    if fmt == "self-instruct":
        return parse_self_instruct(obj, require_output)
    if fmt == "sharegpt":
        return [parse_conversation(obj, "conversations", "from", "value", require_output)]
    if fmt == "messages":
        return [parse_conversation(obj, "messages", "role", "content", require_output)]
    raise ValueError(f"unknown format {fmt!r}")


def parse_example(obj: dict, require_output: bool = True) -> Example:
    """An Alpaca record: instruction, optional input, output; every other field goes to `extra`."""
    instruction = _text(obj, "instruction")
    input_ = _text(obj, "input", required=False)
    output = _text(obj, "output", required=require_output)
    if not instruction.strip():
        raise RecordError("empty 'instruction'")
    if require_output and not output.strip():
        raise RecordError("empty 'output' (nothing to train on)")
    # `system` becomes the conversation's system message (templates, conversion): it must be usable as one.
    system = _text(obj, "system", required=False)
    if system and not system.strip():
        raise RecordError("blank 'system' (write a system prompt or remove the field)")
    extra = {k: v for k, v in obj.items() if k not in ("instruction", "input", "output")}
    return Example(instruction, input_, output, extra)


def parse_self_instruct(obj: dict, require_output: bool = True) -> list[Example]:
    """A Self-Instruct task: one Example per instance; the task's other fields (id, name, ...) go to each `extra`."""
    instruction = _text(obj, "instruction")
    if not instruction.strip():
        raise RecordError("empty 'instruction'")
    instances = obj.get("instances")
    if not isinstance(instances, list) or not instances:
        found = "missing" if instances is None else "empty" if instances == [] else _type_name(instances)
        raise RecordError(f"no 'instances' ({found}); a self-instruct task needs a list of {{input, output}}")
    task = {k: v for k, v in obj.items() if k not in ("instruction", "instances")}
    examples = []
    for i, instance in enumerate(instances):
        where = f"instances[{i}]"
        if not isinstance(instance, dict):
            raise RecordError(f"{where} is {_type_name(instance)}, not a JSON object")
        input_ = _text(instance, "input", f"{where}.", required=False)
        output = _text(instance, "output", f"{where}.", required=require_output)
        if require_output and not output.strip():
            raise RecordError(f"empty {where}.'output' (nothing to train on)")
        extra = {**task, **{k: v for k, v in instance.items() if k not in ("input", "output")}}
        examples.append(Example(instruction, input_, output, extra))
    return examples


def parse_conversation(obj: dict, key: str, speaker: str, text: str, require_output: bool = True) -> Conversation:
    """A ShareGPT (`conversations`/`from`/`value`) or OpenAI (`messages`/`role`/`content`) chat, checked for shape."""
    turns = obj.get(key)
    if turns is None:
        raise RecordError(f"missing field '{key}'")
    if not isinstance(turns, list):
        raise RecordError(f"field '{key}' is {_type_name(turns)}, expected a list of turns")
    roles = SHAREGPT_ROLES if speaker == "from" else {r: r for r in ROLES}
    messages, message_extra = [], []
    for i, turn in enumerate(turns):
        where = f"{key}[{i}]"
        if not isinstance(turn, dict):
            raise RecordError(f"{where} is {_type_name(turn)}, not a JSON object")
        name = _text(turn, speaker, f"{where}.")
        if name not in roles:
            allowed = ", ".join(repr(r) for r in roles)
            raise RecordError(f"{where}: unknown {speaker} {name!r} (expected one of {allowed})")
        content = _text(turn, text, f"{where}.")
        if not content.strip():
            raise RecordError(f"{where}: empty '{text}'")
        messages.append(Message(roles[name], content))
        message_extra.append({k: v for k, v in turn.items() if k not in (speaker, text)})
    check_turn_order(messages, key, require_output)
    extra = {k: v for k, v in obj.items() if k != key}
    if any(message_extra):
        extra[MESSAGE_EXTRA] = message_extra
    return Conversation(messages, extra)


def check_turn_order(messages: list[Message], key: str = "messages", require_output: bool = True) -> None:
    """System only first, then user/assistant alternating from user, ending with the assistant (the trained turn)."""
    if not messages:
        raise RecordError(f"empty conversation: '{key}' has no turns")
    start = 1 if messages[0].role == "system" else 0
    if start == len(messages):
        raise RecordError("conversation has only a system message; it needs user and assistant turns")
    for i, message in enumerate(messages[start:], start):
        expected = "user" if (i - start) % 2 == 0 else "assistant"
        if message.role == "system":
            raise RecordError(f"{key}[{i}]: a system message may only come first")
        if message.role != expected:
            after = f"after {messages[i - 1].role}" if i > start else "first"
            raise RecordError(
                f"{key}[{i}]: expected {expected} {after}, got {message.role} (turns must alternate user/assistant)"
            )
    if require_output and messages[-1].role != "assistant":
        raise RecordError(f"conversation ends with a {messages[-1].role} turn; the last turn must be the assistant's")


def example_to_object(example: Example) -> dict:
    """An Example as an Alpaca JSON object (extra fields after the three standard ones)."""
    return _join({"instruction": example.instruction, "input": example.input, "output": example.output},
                 example.extra)


def conversation_to_object(conv: Conversation, fmt: str) -> dict:
    """A Conversation as a ShareGPT or OpenAI messages object, per-turn fields put back on their turns."""
    extra = dict(conv.extra)
    message_extra = extra.get(MESSAGE_EXTRA)
    aligned = isinstance(message_extra, list) and len(message_extra) == len(conv.messages)
    if aligned and all(isinstance(e, dict) for e in message_extra):
        del extra[MESSAGE_EXTRA]
    else:  # absent, or no longer aligned with the turns: never drop a turn for it
        message_extra = [{}] * len(conv.messages)
    if fmt == "sharegpt":
        turns = [_join({"from": SHAREGPT_FROM[m.role], "value": m.content}, e, f"conversations[{i}]: ")
                 for i, (m, e) in enumerate(zip(conv.messages, message_extra))]
        return _join({"conversations": turns}, extra)
    turns = [_join({"role": m.role, "content": m.content}, e, f"messages[{i}]: ")
             for i, (m, e) in enumerate(zip(conv.messages, message_extra))]
    return _join({"messages": turns}, extra)


def _join(fields: dict, extra: dict, where: str = "") -> dict:
    """`fields` then `extra`; an extra field named like one of `fields` would overwrite it, so it is an error."""
    clash = next((key for key in extra if key in fields), None)
    if clash is not None:
        raise RecordError(f"{where}extra field {clash!r} has the name of a field this format writes; rename it "
                          "or convert to another format")
    return {**fields, **extra}


def _text(obj: dict, name: str, prefix: str = "", required: bool = True) -> str:
    """The string field `name`: '' when absent and optional; RecordError when missing or not a string."""
    if name not in obj:
        if required:
            raise RecordError(f"missing field {prefix}'{name}'")
        return ""
    value = obj[name]
    if not isinstance(value, str):
        raise RecordError(f"field {prefix}'{name}' is {_type_name(value)}, expected a string")
    return value


def _type_name(value) -> str:
    """How JSON would call the value's type, for messages users read."""
    if value is None:
        return "null"
    names = {bool: "a boolean", int: "a number", float: "a number", str: "a string", list: "a list", dict: "an object"}
    return names.get(type(value), type(value).__name__)
