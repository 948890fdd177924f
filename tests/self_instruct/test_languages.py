"""--language: the Chinese prompt, parsing Chinese numbering and labels, and each filter's Chinese version."""

import pytest

from pacos.options import ConfigError
from pacos.self_instruct.filters import rejection_reason
from pacos.self_instruct.languages import CHINESE, ENGLISH, get_language
from pacos.self_instruct.parse import Candidate, parse_answer
from pacos.self_instruct.prompt import SeedTask, build_prompt


def zh(instruction, output="好的。"):
    return rejection_reason(Candidate(instruction, "", output), CHINESE)


def test_chinese_prompt_has_nine_requirements_and_chinese_labels():
    prompt = build_prompt([SeedTask("把下面的句子翻译成英文：", "我爱北京。", "I love Beijing."),
                           SeedTask("世界上最高的山峰是哪座？", "", "珠穆朗玛峰。")], CHINESE)
    assert prompt.startswith(CHINESE.requirements)
    assert all(f"\n{n}. " in CHINESE.requirements for n in range(1, 10))
    assert "简体中文" in CHINESE.requirements and "<无输入>" in CHINESE.requirements
    assert prompt.endswith(
        "###\n1. 指令：把下面的句子翻译成英文\n1. 输入：\n我爱北京。\n1. 输出：\nI love Beijing.\n"
        "###\n2. 指令：世界上最高的山峰是哪座？\n2. 输入：\n<无输入>\n2. 输出：\n珠穆朗玛峰。\n###\n3. 指令：")
    assert "20. 指令：" in CHINESE.stop_sequences and len(CHINESE.stop_sequences) <= 4


def test_codes_fall_back_to_the_english_prompt_or_fail_in_one_line():
    french = get_language("FR")
    assert french.prompt == "pacos-en-1+fr" and "inputs and outputs in French" in french.requirements
    assert "Write the instructions in English." in ENGLISH.requirements
    assert "Write the instructions in English." not in french.requirements
    assert rejection_reason(Candidate("Décris cette image en détail.", "", "ok"), french) == "blacklisted"
    assert rejection_reason(Candidate("¿Cuál es la capital de Francia?", "", "París."), get_language("es")) is None
    assert get_language("ja").unit == "characters"
    with pytest.raises(ConfigError, match=r"--language 'xx' is not supported: use en, zh .* fr") as error:
        get_language("xx")
    assert "\n" not in str(error.value)


CHINESE_COMPLETION = """写一首关于秋天的五言绝句。
4. 输入：
<无输入>
4. 输出：
秋风吹落叶，归雁过南楼。
###
5、指令: 把下面的句子改写成更正式的说法。
5、输入:
这事儿我办不了。
5、输出:
此事我恐怕无法胜任。
###
6．指令：判断这条评论是好评还是差评。
6．输入：无
6．输出：差评
###
7. 指令：解释"""


def test_chinese_numbering_full_width_colons_and_labels_parse():
    parsed = parse_answer(CHINESE_COMPLETION, 4, "stop")
    assert parsed.candidates == [
        Candidate("写一首关于秋天的五言绝句。", "", "秋风吹落叶，归雁过南楼。"),
        Candidate("把下面的句子改写成更正式的说法。", "这事儿我办不了。", "此事我恐怕无法胜任。"),
        Candidate("判断这条评论是好评还是差评。", "", "差评"),
    ]
    assert parsed.malformed == 1  # the cut last block
    chat = "好的，以下是更多任务：\n\n4. 指令：" + CHINESE_COMPLETION
    assert [c.instruction for c in parse_answer(chat, 4, "length").candidates] == [
        "写一首关于秋天的五言绝句。", "把下面的句子改写成更正式的说法。", "判断这条评论是好评还是差评。"]


@pytest.mark.parametrize("reason, instruction", [
    ("too_short", "讲个笑话。"),  # 4 characters, as "Tell a joke." is 3 words
    ("too_long", "请解释" + "为什么这件事很重要" * 34),
    ("blacklisted", "描述这张图片里的日落景色。"),
    ("blacklisted", "根据下面的数据画出一张柱状图。"),
    ("blacklisted", "为泡茶的步骤制作一个流程图。"),
    ("blacklisted", "推荐一首适合跑步时听的音乐。"),
    ("blacklisted", "帮我查一下从北京到上海的地图路线。"),
    ("blacklisted", "把这个视频的内容总结一下。"),
    ("blacklisted", "打开桌面上的文件并读出第一行。"),
    ("blacklisted", "描述一下这张image的主要内容。"),  # an English term inside Chinese text
    ("write_a_program", "编写一个程序，打印前十个质数。"),
    ("write_a_program", "请写一段程序计算两个数的最大公约数。"),
    ("starts_with_punctuation", "——列出三种常见的颜色。"),
    ("starts_with_punctuation", "：列出三种常见的颜色。"),
    ("starts_with_punctuation", "（一）列出三种常见的颜色。"),
    ("starts_with_punctuation", "- 列出三种常见的颜色。"),
    ("wrong_language", "Name three famous rivers in Asia."),
])
def test_each_filter_has_a_chinese_version(reason, instruction):
    assert zh(instruction) == reason


@pytest.mark.parametrize("instruction", [
    "他试图表达什么样的情感？请分析下面这段话。",  # 试图 + 表达, not 图表
    "这个人物企图示好的方式有哪些？",  # 企图 + 示, not 图示
    "这句话的意图像是在讽刺谁？",  # 意图 + 像, not 图像
    "推荐几家本地图书馆并说明理由。",  # 本地 + 图书馆, not 地图
    "制定一个为期一周的学习计划。",  # 计划: 划, not 画
    "写一段关于画家梵高的简短介绍。",  # 画家 is a topic, not a drawing
    "这段文字是如何刻画出人物性格的？",  # 刻画 portrays in words
    "“永”字的笔画一共有几笔？",  # 笔画 strokes; a quotation mark may open the instruction
    "《静夜思》表达了诗人怎样的情感？",  # so may a title mark
    "写一个程序员的自我介绍，不超过一百字。",  # 程序员 is a person, not "write a program"
    "用Python写一个判断回文的函数。",  # a function, as Alpaca keeps "Write a function"
    "列出3种常见的水果。",
    "翻译成英文：今天天气很好。",
])
def test_chinese_look_alikes_pass(instruction):
    assert zh(instruction) is None


def test_english_filters_are_alpacas_exactly():
    assert ENGLISH.min_length == 4 and ENGLISH.max_length == 150 and ENGLISH.unit == "words"
    assert rejection_reason(Candidate("¿Cuál es la capital de Francia y por qué?", "", "París.")) == "non_ascii_start"
    assert rejection_reason(Candidate("“Quoted” words start this instruction here.", "", "ok")) == "non_ascii_start"
    assert rejection_reason(Candidate("写一首关于秋天的五言绝句。", "", "ok")) == "too_short"  # no spaces: one word
