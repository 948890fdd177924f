"""A tokenizer built offline for the preset models: characters, byte fallback, template boilerplate as tokens.

Real users bring a hub model's tokenizer. Our offline presets need one that is made locally, is fast to
learn with, and behaves like a LLaMA tokenizer (BOS added, EOS `</s>`, no pad token, byte fallback). Every
character is one token, so tiny models can learn character-level tasks (reverse, uppercase, sort), and the
fixed template boilerplate of the registry is one token each so sequences stay short.
"""

from __future__ import annotations

from pacos.prompting.templates import (
    ALPACA_PROMPT_INPUT,
    ALPACA_PROMPT_NO_INPUT,
    VICUNA_SYSTEM,
)

# ChatML in Jinja, as hub chat models ship it; lets `--template model` work on the presets.
CHATML_JINJA = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def boilerplate_tokens() -> list[str]:
    """Template strings that become single tokens; none can occur inside ordinary record text."""
    preamble_input, _ = ALPACA_PROMPT_INPUT.split("{instruction}")
    preamble_no_input, _ = ALPACA_PROMPT_NO_INPUT.split("{instruction}")
    return [
        preamble_input,
        preamble_no_input,
        "\n\n### Input:\n",
        "\n\n### Response:",
        VICUNA_SYSTEM,
        "USER:",
        "ASSISTANT:",
        "<|im_start|>",
        "<|im_end|>",
    ]


def build_char_tokenizer():
    """A transformers fast tokenizer: <unk>/<s>/</s>, 256 byte tokens, printable ASCII, boilerplate tokens."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, processors
    from transformers import PreTrainedTokenizerFast

    specials = ["<unk>", "<s>", "</s>"]
    vocab = {t: i for i, t in enumerate(specials)}
    for b in range(256):
        vocab[f"<0x{b:02X}>"] = len(vocab)
    for ch in [chr(i) for i in range(32, 127)] + ["\n", "\t"]:
        vocab[ch] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>", byte_fallback=True))
    tok.decoder = decoders.Sequence([decoders.ByteFallback(), decoders.Fuse()])
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in specials])
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in boilerplate_tokens()])
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", vocab["<s>"])]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>", model_max_length=2048
    )
    fast.chat_template = CHATML_JINJA
    return fast
