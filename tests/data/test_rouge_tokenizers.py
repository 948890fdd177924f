"""The unicode tokenizer is rouge_score's on ASCII, takes CJK characters one by one, and `auto` picks it for
non-English data; `rouge` warns when it leaves most records without tokens."""

import json
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st
from rouge_score import rouge_scorer

from pacos.data.rouge_tokenizers import (
    rouge_tokens, sparse_rouge_warning, tokenizer_for_language, tokenizer_for_texts, unicode_tokens,
)

SCORER = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
ZH = [json.loads(line) for line in (Path(__file__).parent / "fixtures" / "zh_instructions.jsonl").open()]


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet=st.characters(max_codepoint=127), max_size=80))
def test_unicode_tokens_are_rouge_scores_on_ascii(text):
    assert unicode_tokens(text) == SCORER._tokenizer.tokenize(text) == rouge_tokens(text)


def test_cjk_characters_are_tokens_and_other_scripts_are_words():
    assert rouge_tokens("列出5种不同的说服性写作技巧。") == ["5"]  # the case: all that rouge_score keeps
    assert unicode_tokens("列出5种不同的说服性写作技巧。") == list("列出5种不同的说服性写作技巧")
    assert unicode_tokens("2020年东京奥运会") == ["2020", "年", "东", "京", "奥", "运", "会"]
    assert unicode_tokens("東京タワーはどこ？𠀋") == list("東京タワーはどこ𠀋")  # kana, extension B
    assert unicode_tokens("한국어 문장을 번역하세요.") == ["한국어", "문장을", "번역하세요"]  # Hangul: words
    assert unicode_tokens("नमस्ते दुनिया") == ["नमस्ते", "दुनिया"]  # combining vowel signs stay in the word
    assert unicode_tokens("Ｃafé_au-lait ①ＡＢＣ") == ["café", "au", "lait", "1abc"]  # NFKC, _ splits as in rouge
    assert unicode_tokens("cafe\u0301 Straße İstanbul") == ["café", "straße", "i̇stanbul"]


def test_auto_is_unicode_for_mostly_non_ascii_data_and_other_languages():
    zh = [r["instruction"] for r in ZH]
    en = ["Give three tips for staying healthy.", "Describe a café in Paris.", "Name 3 rivers."]
    assert tokenizer_for_texts("auto", zh) == "unicode"
    assert tokenizer_for_texts("auto", en) == "rouge"
    assert tokenizer_for_texts("auto", en * 2 + zh[:5]) == "rouge"  # a minority of Chinese records
    assert tokenizer_for_texts("rouge", zh) == "rouge" and tokenizer_for_texts("auto", []) == "rouge"
    assert tokenizer_for_language("auto", "en") == "rouge"
    assert tokenizer_for_language("auto", "zh") == tokenizer_for_language("auto", "fr") == "unicode"
    assert tokenizer_for_language("rouge", "zh") == "rouge"


def test_rouge_warns_when_most_records_lose_their_tokens():
    zh = [r["instruction"] for r in ZH]
    warning = sparse_rouge_warning(zh)
    assert warning and "--tokenizer unicode" in warning and f"of {len(zh)} records" in warning
    # English one-word instructions are not lost tokens: unicode finds no more than rouge there.
    assert sparse_rouge_warning(["Summarize.", "Translate!", "Give three tips."]) is None
    assert sparse_rouge_warning(["Give three tips."] * 8 + zh[:2]) is None  # 20% is not more than 20%
    assert sparse_rouge_warning([]) is None
