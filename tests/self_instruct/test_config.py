"""SelfInstructConfig.tokenizer: `auto` is rouge_score's tokens for English, unicode for any other language."""

import pytest

from pacos.options import ConfigError
from pacos.self_instruct.config import SelfInstructConfig


@pytest.mark.parametrize("language, given, expected", [
    ("en", "auto", "rouge"), ("zh", "auto", "unicode"), ("fr", "auto", "unicode"),
    ("zh", "rouge", "rouge"), ("en", "unicode", "unicode"),
])
def test_tokenizer_follows_the_language(language, given, expected):
    assert SelfInstructConfig(seed_tasks="s", out="o", language=language, tokenizer=given).tokenizer == expected


def test_unknown_tokenizer_is_a_config_error():
    with pytest.raises(ConfigError, match="tokenizer"):
        SelfInstructConfig(seed_tasks="s", out="o", tokenizer="jieba")


def test_rouge_tokens_on_chinese_seeds_warn_at_start(tmp_path, capsys):
    from teacher_double import ZH_SEEDS

    from pacos.self_instruct.loop import Generation

    Generation(SelfInstructConfig(seed_tasks=ZH_SEEDS, out=tmp_path / "o.jsonl", language="zh", tokenizer="rouge"))
    assert "use --tokenizer unicode" in capsys.readouterr().err
    Generation(SelfInstructConfig(seed_tasks=ZH_SEEDS, out=tmp_path / "p.jsonl", language="zh"))
    assert capsys.readouterr().err == ""
