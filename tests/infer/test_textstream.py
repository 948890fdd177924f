"""Streaming text: stop strings split across tokens are cut and never shown; partial UTF-8 is held back."""

from hypothesis import given, settings
from hypothesis import strategies as st

from pacos.infer.textstream import IncrementalDecoder, StopMatcher, backend_decoder


def feed(matcher, pieces):
    return [matcher.push(p) for p in pieces]


def test_stop_split_over_pieces_is_never_released():
    m = StopMatcher(["###"])
    out = feed(m, ["Hello", " #", "#", "# more"])
    assert "".join(out) == "Hello "
    assert out[1] == " " and out[2] == ""  # "#" and "##" were held back as a possible stop start
    assert m.stopped == "###" and m.push("ignored") == ""


def test_held_back_text_is_released_when_it_turns_out_not_to_be_a_stop():
    m = StopMatcher(["</end>"])
    assert feed(m, ["a</e", "x", "b"]) == ["a", "</ex", "b"]
    assert m.stopped is None and m.flush() == ""


def test_flush_releases_the_tail_at_the_end():
    m = StopMatcher(["STOP"])
    assert m.push("abc ST") == "abc "
    assert m.flush() == "ST" and m.text == "abc ST"


def test_earliest_stop_wins_and_leading_whitespace_can_be_stripped():
    m = StopMatcher(["B", "A"], strip=True)
    assert feed(m, ["\n ", " xyA", "B"]) == ["", "xy", ""]
    assert m.stopped == "A" and m.text == "xy"


def test_decoder_waits_for_a_complete_utf8_character(tiny_tokenizer):
    ids = tiny_tokenizer("é ok", add_special_tokens=False)["input_ids"]
    assert len(ids) > len("é ok")  # é is two byte-fallback tokens in the char tokenizer
    dec = IncrementalDecoder(tiny_tokenizer)
    deltas = [dec.push(i) for i in ids]
    assert deltas[0] == "" and deltas[1] == "é"
    assert "".join(deltas) == "é ok"


@settings(max_examples=60, deadline=None)
@given(ids=st.lists(st.integers(min_value=0, max_value=511), max_size=24), skip=st.booleans())
def test_backend_decoder_equals_the_tokenizers_decode(tiny_tokenizer, ids, skip):
    assert backend_decoder(tiny_tokenizer, skip)(ids) == tiny_tokenizer.decode(ids, skip_special_tokens=skip)


def test_a_tokenizer_that_cleans_up_spaces_keeps_transformers_decode(tiny_tokenizer, monkeypatch):
    ids = tiny_tokenizer("a , b .", add_special_tokens=False)["input_ids"]
    monkeypatch.setattr(tiny_tokenizer, "clean_up_tokenization_spaces", True)
    monkeypatch.setattr(tiny_tokenizer, "clean_up_tokenization_spaces_for_bpe_even_though_it_will_corrupt_output",
                        True, raising=False)
    cleaned = tiny_tokenizer.decode(ids, skip_special_tokens=True)
    assert cleaned == "a, b."  # transformers' clean-up, which the Rust decoder alone does not do
    assert backend_decoder(tiny_tokenizer)(ids) == cleaned
