"""The languages `pacos self-instruct --language` writes tasks in: each one's prompt, task labels and filter rules.

English and Chinese have prompts of their own. Any code of FALLBACK_NAMES gets the English prompt with its
language requirement changed to that language, and only the filters that do not depend on knowing it.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from pacos.options import ConfigError

# The teacher lists tasks up to number 20; the prompt's examples take the first numbers, so stopping when
# it starts task 20 bounds the answer (Alpaca stops on "20." the same way).
LAST_TASK = 20
NO_INPUT = "<noinput>"

ENGLISH_REQUIREMENTS = f"""\
Write a list of {LAST_TASK} varied task instructions. They will be given to a language model, and the \
model's completions will be judged.

Requirements:
1. Do not repeat a verb across instructions: vary the wording as much as possible.
2. Vary the language too: mix questions with imperative instructions.
3. Vary the task types: open-ended generation, classification, editing, rewriting, brainstorming, \
open and closed question answering, reasoning, coding, math and more.
4. Each instruction must be something a text-only language model can do: nothing that needs to see, \
hear or produce images, audio or video, or to act in the world (no reminders, no purchases).
5. {{language_rule}}
6. Keep each instruction to one or two sentences, imperative or a question.
7. Give an input for an instruction when it needs one: a concrete, realistic example of at most 100 \
words (not a placeholder). Many instructions need no input: write "{NO_INPUT}" for them.
8. The output must be a good answer to the instruction with its input, under 100 words.

List of {LAST_TASK} tasks:
"""

# Alpaca's prompt.txt, its nine requirements one by one, in pacos's own Chinese wording. 100 English words
# become 200 characters (about two characters per English word).
CHINESE_NO_INPUT = "<无输入>"
CHINESE_REQUIREMENTS = f"""\
请写出{LAST_TASK}条各不相同的任务指令。这些指令会交给一个语言模型去完成，我们将评判它完成得好不好。

要求如下：
1. 尽量不要在不同的指令里重复使用同一个动词，让指令尽可能多样。
2. 指令的句式也要多样，例如把疑问句和祈使句混合使用。
3. 任务类型要多样，例如开放式生成、分类、编辑、改写、头脑风暴、开放式问答、封闭式问答、推理、编程、数学等。
4. 指令必须是只能处理文字的语言模型能够完成的。例如，不要让它看图、听声音或生成图片、音频、视频；\
也不要让它在现实中做事，比如“明天早上五点叫醒我”或“帮我设一个提醒”，因为它无法执行任何动作。
5. 指令、输入和输出都用简体中文书写。
6. 每条指令一到两句话，可以是祈使句，也可以是疑问句。
7. 需要输入的指令要配一个合适的输入：给出具体、真实的内容，不要用简单的占位符；\
输入要有足够的内容让任务有一定难度，但最好不超过200字。
8. 并非每条指令都需要输入。例如问常识的指令（“世界上最高的山峰是哪座？”）不需要具体的上下文，\
这时在输入处写“{CHINESE_NO_INPUT}”。
9. 输出应当是对指令和输入的恰当回答，不超过200字。

{LAST_TASK}个任务：
"""

# Codes with no prompt of their own, and the name the English prompt gives each. Only languages written with
# spaces between words (so Alpaca's word limits hold) or, for Japanese, with CJK characters.
FALLBACK_NAMES = {
    "ar": "Arabic", "bg": "Bulgarian", "ca": "Catalan", "cs": "Czech", "da": "Danish", "de": "German",
    "el": "Greek", "es": "Spanish", "fa": "Persian", "fi": "Finnish", "fr": "French", "he": "Hebrew",
    "hi": "Hindi", "hu": "Hungarian", "id": "Indonesian", "it": "Italian", "ja": "Japanese", "ko": "Korean",
    "nl": "Dutch", "no": "Norwegian", "pl": "Polish", "pt": "Portuguese", "ro": "Romanian", "ru": "Russian",
    "sk": "Slovak", "sv": "Swedish", "sw": "Swahili", "tr": "Turkish", "uk": "Ukrainian", "vi": "Vietnamese",
}

# stanford_alpaca's blacklist, matched as whole words in any case, as Alpaca does.
ENGLISH_BLACKLIST = (
    "image", "images", "graph", "graphs", "picture", "pictures", "file", "files", "map", "maps",
    "draw", "plot", "go to", "video", "audio", "music", "flowchart", "diagram",
)
_ENGLISH_WORDS = "|".join(re.escape(w) for w in ENGLISH_BLACKLIST)

# The same list in Chinese. Chinese has no word boundaries, so a term is a substring, and some would match
# inside ordinary words: 图 ends 试图/企图/意图/力图/妄图/贪图 ("try", "intend", ...) and starts 图书 (books) and
# 图案 (pattern), so "试图表达" must not hit 图表, nor "本地图书馆" 地图; 画 is also in 刻画/描画/勾画 (portray,
# in words), 笔画 (strokes), 动画/漫画 (animation, comics), so only drawing verbs (画出, 画一, 画个, ...) count,
# and not 画 alone (画家, painter, is a fine topic). 绘画 (painting, the art) is not listed.
_NOT_AFTER_TU = "(?<![试企意力妄贪])"  # before a term starting with 图
_NOT_BEFORE_TU = "(?![书案])"  # after a term ending with 图
_NOT_AFTER_HUA = "(?<![刻描勾策谋笔动漫])"  # before a drawing verb
CHINESE_BLACKLIST = (
    rf"{_NOT_AFTER_TU}图片", rf"{_NOT_AFTER_TU}图像", "照片", "插图", "截图",  # image, picture
    rf"{_NOT_AFTER_TU}图表", rf"{_NOT_AFTER_TU}图形", rf"(?:柱状|饼|折线|散点|曲线){_NOT_BEFORE_TU}图",  # graph
    "文件",  # file
    rf"地图{_NOT_BEFORE_TU}",  # map
    "绘制", "绘图", rf"{_NOT_AFTER_HUA}画(?:出|一|个|张|幅|图)",  # draw, plot
    "前往",  # go to
    "视频", "录像", "音频", "录音", "音乐",  # video, audio, music
    rf"流程图{_NOT_BEFORE_TU}", rf"(?:示意|结构|思维导)图{_NOT_BEFORE_TU}", rf"{_NOT_AFTER_TU}图示",  # flowchart, diagram
)

# Instructions Alpaca drops for asking for a whole program: "Write a program..." at the start; in Chinese
# 编写/写/编 (一个/一段) 程序, but not 程序员 (a programmer) or 程序猿.
_CHINESE_PROGRAM = re.compile(r"^(?:请你?)?(?:编写|写|编)(?:一个|一段|个|段)?(?:小)?程序(?![员猿])")

# Punctuation opening an instruction marks a list bullet or debris (Alpaca: string.punctuation). Outside
# English, any Unicode punctuation or symbol counts, full-width forms included, except the marks that open
# a title or a quotation there (《静夜思》…, “…”, ¿Qué…?, «…»).
ALPACA_PUNCTUATION = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"
CHINESE_OPENING_MARKS = "《「『“‘"
OPENING_MARKS = CHINESE_OPENING_MARKS + "¿¡«„‚"  # a fallback language's, whichever it is

_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"  # kana, CJK ideographs (ext. A, unified, compat.)
# One length unit per CJK character, and per run of other letters or digits (a Latin word or a number).
_CJK_UNITS = re.compile(rf"[{_CJK}]|[^\W{_CJK}]+")
_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


@dataclass(frozen=True)
class Language:
    """How tasks are asked for and screened in one language."""

    code: str
    name: str
    prompt: str  # the prompt's id, recorded in the raw log
    requirements: str
    labels: tuple[str, str, str] = ("Instruction", "Input", "Output")
    colon: str = ": "  # after a label in the prompt
    numbering: tuple[str, ...] = (".",)  # after a task number: the prompt's, then others teachers write
    no_input: str = NO_INPUT
    unit: str = "words"  # what the length limits count: "words" (whitespace-split) or "characters"
    min_length: int = 4  # Alpaca: more than 3 words
    max_length: int = 150
    blacklist: re.Pattern | None = None
    program: re.Pattern | None = None  # the "Write a program" filter
    ascii_start: bool = False  # Alpaca's first-character-is-ASCII rule
    script: re.Pattern | None = None  # an instruction without this script is in another language
    # Punctuation an instruction may start with, testing any Unicode punctuation; None: Alpaca's test alone.
    opening_marks: str | None = OPENING_MARKS

    def length(self, text: str) -> int:
        return len(text.split()) if self.unit == "words" else len(_CJK_UNITS.findall(text))

    def starts_with_punctuation(self, text: str) -> bool:
        first = text[0]
        if first in ALPACA_PUNCTUATION:
            return True
        if self.opening_marks is None or first in self.opening_marks:
            return False
        return unicodedata.category(first)[0] in "PS"

    @property
    def stop_sequences(self) -> list[str]:
        """Where the answer stops: at task LAST_TASK (at most 4 strings, OpenAI's limit)."""
        first, *others = self.numbering
        return [f"\n{LAST_TASK}{first}", f"{LAST_TASK}{first} {self.labels[0]}{self.colon.strip()}",
                *(f"\n{LAST_TASK}{dot}" for dot in others)]


def _words(pattern: str, boundary: str = r"\b") -> re.Pattern:
    return re.compile(f"{boundary}(?:{pattern}){boundary}", re.I)


ENGLISH = Language(
    "en", "English", "pacos-en-1", ENGLISH_REQUIREMENTS.format(language_rule="Write the instructions in English."),
    blacklist=_words(_ENGLISH_WORDS), program=re.compile("write a program", re.I), ascii_start=True,
    opening_marks=None,
)
CHINESE = Language(
    "zh", "Chinese", "pacos-zh-1", CHINESE_REQUIREMENTS, labels=("指令", "输入", "输出"), colon="：",
    numbering=(".", "、", "．"), no_input=CHINESE_NO_INPUT, unit="characters",
    # Alpaca's 4..150 words at 1.5-2 characters per English word: 6..300 (a "Tell a joke." is 讲个笑话, 4).
    min_length=6, max_length=300,
    # English terms in a Chinese sentence count too; CJK characters are word characters to \b, so the
    # English words are bounded by ASCII word characters instead.
    blacklist=re.compile("|".join(CHINESE_BLACKLIST)
                         + f"|(?<![A-Za-z0-9_])(?:{_ENGLISH_WORDS})(?![A-Za-z0-9_])", re.I),
    program=_CHINESE_PROGRAM, script=_HAN, opening_marks=CHINESE_OPENING_MARKS,
)
PROMPTED = {language.code: language for language in (ENGLISH, CHINESE)}


def fallback(code: str, name: str) -> Language:
    """The English prompt asking for `name`, Alpaca's blacklist, word limits (characters for Japanese)."""
    rule = (f"Write the instructions, inputs and outputs in {name}; keep the labels (Instruction, Input, "
            "Output) in English.")
    chars = {"unit": "characters", "min_length": CHINESE.min_length, "max_length": CHINESE.max_length}
    return Language(code, name, f"pacos-en-1+{code}", ENGLISH_REQUIREMENTS.format(language_rule=rule),
                    blacklist=_words(_ENGLISH_WORDS), **(chars if code == "ja" else {}))


def get_language(code: str) -> Language:
    """The Language of a `--language` code (case-insensitive), or a ConfigError listing the codes."""
    key = code.strip().lower()
    if key in PROMPTED:
        return PROMPTED[key]
    if key in FALLBACK_NAMES:
        return fallback(key, FALLBACK_NAMES[key])
    raise ConfigError(f"--language {code!r} is not supported: use {', '.join(PROMPTED)} (own prompts) or "
                      f"{', '.join(FALLBACK_NAMES)} (the English prompt asking for that language)")


def no_input_markers() -> set[str]:
    """What an input may say to mean "none", in any language, lowercased."""
    return {language.no_input.lower() for language in PROMPTED.values()} | {"无输入", "无"}


def number_marks() -> set[str]:
    """Every language's marks after a task number (`.`, `、`, `．`): the parser reads any of them."""
    return {mark for language in PROMPTED.values() for mark in language.numbering}


def task_labels() -> tuple[set[str], set[str], set[str]]:
    """Every language's instruction, input and output labels: the parser reads any of them."""
    return tuple({language.labels[i] for language in PROMPTED.values()} for i in range(3))
