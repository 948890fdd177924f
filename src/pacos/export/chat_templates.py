"""pacos's templates as Jinja chat templates, written into GGUF files as `tokenizer.chat_template`.

llama.cpp's own tools (llama-cli, llama-server) prompt a model through that Jinja; a model fine-tuned with
pacos's Alpaca or Vicuna template must get the same text there as in pacos, so the file carries the Jinja of
the template it was trained with (tests render both and compare). A model trained with `--template model`,
or not trained by pacos, keeps the tokenizer's own chat template.
"""

from __future__ import annotations

from pacos.prompting.templates import (
    ALPACA_PROMPT_INPUT,
    ALPACA_PROMPT_NO_INPUT,
    VICUNA_SYSTEM,
)


def _literal(text: str) -> str:
    """A Jinja string literal."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n") + "'"


def _alpaca() -> str:
    # Each user turn is one Alpaca prompt; earlier turns are its input ("User: ...\nAssistant: ..."), as in
    # pacos.prompting.templates.AlpacaTemplate.
    with_input_head, rest = ALPACA_PROMPT_INPUT.split("{instruction}")
    between, tail = rest.split("{input}")
    no_input_head, no_input_tail = ALPACA_PROMPT_NO_INPUT.split("{instruction}")
    return (
        "{%- set ns = namespace(history='', user='') -%}"
        "{%- for message in messages if message['role'] != 'system' -%}"
        "{%- if message['role'] == 'user' -%}"
        "{%- if ns.history -%}"
        f"{{{{ {_literal(with_input_head)} + message['content'] + {_literal(between)} + ns.history + "
        f"{_literal(tail)} }}}}"
        "{%- else -%}"
        f"{{{{ {_literal(no_input_head)} + message['content'] + {_literal(no_input_tail)} }}}}"
        "{%- endif -%}"
        "{%- set ns.user = message['content'] -%}"
        "{%- else -%}"
        "{{ message['content'] + eos_token }}"
        "{%- set ns.history = ns.history + ('\\n' if ns.history else '') + 'User: ' + ns.user + "
        "'\\nAssistant: ' + message['content'] -%}"
        "{%- endif -%}"
        "{%- endfor -%}"
    )


def _vicuna() -> str:
    return (
        "{%- if messages and messages[0]['role'] == 'system' -%}{{ messages[0]['content'] + ' ' }}"
        f"{{%- else -%}}{{{{ {_literal(VICUNA_SYSTEM + ' ')} }}}}{{%- endif -%}}"
        "{%- for message in messages if message['role'] != 'system' -%}"
        "{%- if message['role'] == 'user' -%}{{ 'USER: ' + message['content'] + ' ASSISTANT:' }}"
        "{%- else -%}{{ ' ' + message['content'] + eos_token }}{%- endif -%}"
        "{%- endfor -%}"
    )


def _chatml() -> str:
    return (
        "{%- for message in messages -%}"
        "{%- if message['role'] == 'system' -%}{{ '<|im_start|>system\\n' + message['content'] + '<|im_end|>\\n' }}"
        "{%- elif message['role'] == 'user' -%}"
        "{{ '<|im_start|>user\\n' + message['content'] + '<|im_end|>\\n<|im_start|>assistant\\n' }}"
        "{%- else -%}{{ message['content'] + '<|im_end|>' }}"
        "{%- if not loop.last -%}{{ '\\n' }}{%- endif -%}"
        "{%- endif -%}"
        "{%- endfor -%}"
    )


JINJA = {"alpaca": _alpaca, "vicuna": _vicuna, "chatml": _chatml}


def gguf_chat_template(template_name: str | None, tokenizer) -> str | None:
    """The Jinja to write for a model trained with `template_name` (None: not trained by pacos)."""
    if template_name in JINJA:
        return JINJA[template_name]()
    return getattr(tokenizer, "chat_template", None) or None
