"""Label masks built from separately tokenized segments: exact positions, truncation, skips."""

import pytest

from pacos.data.records import Conversation, Example, Message
from pacos.prompting.encode import IGNORE_INDEX, SkippedRecord, encode_record


def _ids(tok, text):
    return tok(text, add_special_tokens=False)["input_ids"]


def test_alpaca_labels_cover_exactly_output_and_eos(tiny_tokenizer):
    tok = tiny_tokenizer
    ex = Example("Reverse the word.", "abc", "cba")
    enc = encode_record(ex, tok, "alpaca")
    n_out = len(_ids(tok, "cba")) + 1
    assert enc.input_ids[0] == tok.bos_token_id
    assert enc.labels[:-n_out] == [IGNORE_INDEX] * (len(enc.labels) - n_out)
    assert enc.labels[-n_out:] == _ids(tok, "cba") + [tok.eos_token_id]
    assert enc.labels[-n_out:] == enc.input_ids[-n_out:]
    # The prompt part is exactly the stanford prompt, tokenized alone.
    from pacos.prompting.templates import render_alpaca_prompt

    assert enc.input_ids[1:-n_out] == _ids(tok, render_alpaca_prompt(ex))


def test_train_on_inputs_labels_everything(tiny_tokenizer):
    enc = encode_record(Example("Say hi.", "", "hi"), tiny_tokenizer, "alpaca", train_on_inputs=True)
    assert enc.labels == enc.input_ids


@pytest.mark.parametrize("template,ends", [("vicuna", "</s>"), ("chatml", "<|im_end|>")])
def test_conversation_labels_only_assistant_turns(tiny_tokenizer, template, ends):
    tok = tiny_tokenizer
    conv = Conversation([Message("user", "hi"), Message("assistant", "yo"),
                         Message("user", "why"), Message("assistant", "because")])
    enc = encode_record(conv, tok, template)
    runs, run = [], []
    for i, label in zip(enc.input_ids, enc.labels):
        if label != IGNORE_INDEX:
            run.append(i)
        elif run:
            runs.append(run)
            run = []
    if run:
        runs.append(run)
    decoded = [tok.decode(r) for r in runs]
    assert [d.removesuffix(ends).strip() for d in decoded] == ["yo", "because"]
    assert all(d.endswith(ends) for d in decoded)


def test_truncation_keeps_eos_and_fits(tiny_tokenizer):
    tok = tiny_tokenizer
    ex = Example("Repeat the text.", "x" * 50, "y" * 200)
    enc = encode_record(ex, tok, "alpaca", max_len=64)
    assert enc.truncated and len(enc.input_ids) == 64
    assert enc.input_ids[-1] == tok.eos_token_id and enc.labels[-1] == tok.eos_token_id
    assert enc.input_ids[0] == tok.bos_token_id
    # The response marker survives the prompt's cut: the model still sees where to answer.
    response_marker = _ids(tok, "\n\n### Response:")
    trained_from = next(i for i, label in enumerate(enc.labels) if label != IGNORE_INDEX)
    assert enc.input_ids[trained_from - len(response_marker):trained_from] == response_marker


def test_short_response_is_kept_whole_when_prompt_is_long(tiny_tokenizer):
    tok = tiny_tokenizer
    enc = encode_record(Example("Summarize.", "w " * 200, "ok"), tok, "alpaca", max_len=40)
    trained = [i for i, label in zip(enc.input_ids, enc.labels) if label != IGNORE_INDEX]
    assert trained == _ids(tok, "ok") + [tok.eos_token_id]
    assert len(enc.input_ids) == 40


def test_record_with_no_room_for_response_is_skipped(tiny_tokenizer):
    with pytest.raises(SkippedRecord):
        encode_record(Example("Say something long.", "", "z" * 40), tiny_tokenizer, "alpaca", max_len=1)


def test_conversation_truncation_drops_whole_turns(tiny_tokenizer):
    tok = tiny_tokenizer
    conv = Conversation([Message("user", "a" * 10), Message("assistant", "b" * 10),
                         Message("user", "c" * 10), Message("assistant", "d" * 30)])
    full = encode_record(conv, tok, "chatml", max_len=None)
    enc = encode_record(conv, tok, "chatml", max_len=len(full.input_ids) - 5)
    trained = tok.decode([i for i, label in zip(enc.input_ids, enc.labels) if label != IGNORE_INDEX])
    assert trained == "b" * 10 + "<|im_end|>"
