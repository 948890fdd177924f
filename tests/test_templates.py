"""The template registry: exact Alpaca strings, conversation rendering, segments and stops."""

import pytest

from pacos.data.records import Conversation, Example, Message
from pacos.errors import PacosError
from pacos.prompting.templates import get_template, render_alpaca_prompt

# Copied by hand from stanford_alpaca train.py PROMPT_DICT.
STANFORD_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides further context. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:"
)
STANFORD_NO_INPUT = (
    "Below is an instruction that describes a task. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Response:"
)


def test_alpaca_prompts_are_byte_identical_to_stanford():
    ex = Example("Translate to French.", "Good morning", "Bonjour")
    assert render_alpaca_prompt(ex) == STANFORD_INPUT.format(instruction=ex.instruction, input=ex.input)
    ex = Example("Name a colour.", "", "Blue")
    assert render_alpaca_prompt(ex) == STANFORD_NO_INPUT.format(instruction=ex.instruction)
    assert render_alpaca_prompt(ex).endswith("### Response:")


def test_alpaca_segments_train_output_then_eos():
    segs = get_template("alpaca").segments(Example("Say hi.", "", "hi"))
    assert [(s.trained, s.eos) for s in segs] == [(False, False), (True, True)]
    assert segs[1].text == "hi"


def _chat():
    return Conversation([Message("system", "Be brief."), Message("user", "hi"), Message("assistant", "yo"),
                         Message("user", "q"), Message("assistant", "a")])


def test_vicuna_matches_fastchat_v1_1():
    segs = get_template("vicuna").segments(_chat())
    text = "".join(s.text + ("</s>" if s.eos else "") for s in segs)
    assert text == "Be brief. USER: hi ASSISTANT: yo</s>USER: q ASSISTANT: a</s>"
    assert [s.text for s in segs if s.trained] == [" yo", " a"]


def test_vicuna_prompt_ends_where_the_answer_starts():
    prompt = get_template("vicuna").prompt(Conversation([Message("user", "hi")]))
    assert prompt.endswith("USER: hi ASSISTANT:")


def test_chatml_segments():
    segs = get_template("chatml").segments(_chat())
    text = "".join(s.text for s in segs)
    assert text == ("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n"
                    "<|im_start|>assistant\nyo<|im_end|>\n<|im_start|>user\nq<|im_end|>\n"
                    "<|im_start|>assistant\na<|im_end|>")
    assert [s.text for s in segs if s.trained] == ["yo<|im_end|>", "a<|im_end|>"]


def test_model_template_uses_tokenizer_chat_template(tiny_tokenizer):
    tmpl = get_template("model", tiny_tokenizer)
    segs = tmpl.segments(_chat())
    assert [s.text for s in segs if s.trained] == ["yo<|im_end|>", "a<|im_end|>"]
    full = tiny_tokenizer.apply_chat_template(
        [{"role": m.role, "content": m.content} for m in _chat().messages], tokenize=False)
    assert "".join(s.text for s in segs) == full.rstrip()


def test_default_templates(tiny_tokenizer):
    assert get_template(None, tiny_tokenizer, "instruction").name == "alpaca"
    assert get_template(None, tiny_tokenizer, "conversation").name == "model"
    assert get_template(None, None, "conversation").name == "vicuna"


def test_bad_template_and_bad_conversation():
    with pytest.raises(PacosError, match="unknown template"):
        get_template("llama9")
    with pytest.raises(PacosError, match="alternate"):
        get_template("vicuna").segments(Conversation([Message("user", "a"), Message("user", "b")]))
