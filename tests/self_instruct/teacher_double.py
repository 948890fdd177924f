"""A teacher test double: a real HTTP server on loopback speaking OpenAI's completions and chat wire format.

Answers are the realistic numbered task lists, made deterministically from the prompt (so reruns and resumes
see the same answers): real Alpaca instructions, junk that each filter must drop, exact and near duplicates,
sometimes cut at the token limit; a Chinese prompt (`--language zh`) gets the same in Chinese (ZH_TASKS,
ZH_JUNK). Faults (429 with Retry-After, 500, slow answers, dropped connections, junk bodies, 401) are queued with `fail_next`; a hostile teacher (`always`) answers every request one bad way
(HOSTILE: a web page, no choices, prose, truncated JSON, a trickle of bytes, an endless body, ...).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import random
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

FIXTURES = Path(__file__).resolve().parent / "fixtures"  # small excerpts of public data; see the README there
SEEDS = FIXTURES / "seed_tasks.jsonl"
ZH_SEEDS = FIXTURES / "seed_tasks_zh.jsonl"  # written for pacos, see the README there
REAL = json.loads((FIXTURES / "alpaca_sample.json").read_text())

# (reason the filters must give, instruction, output)
JUNK = [
    ("too_short", "Tell a joke.", "Why did the chicken cross the road?"),
    ("too_long", "Explain " + "why this matters a lot " * 40, "Because."),
    ("blacklisted", "Describe the image of a sunset over the sea.", "It is orange."),
    ("blacklisted", "Create a flowchart for making tea at home.", "Boil water, steep, pour."),
    ("write_a_program", "Write a program that prints the first ten primes.", "print(2, 3, 5)"),
    ("starts_with_punctuation", "- List three primary colours of paint.", "Red, yellow, blue."),
    ("non_ascii_start", "¿Cuál es la capital de Francia y por qué?", "París."),
    ("empty_output", "Name three famous painters from Spain.", ""),
]


# A Chinese prompt (`--language zh`) is answered in Chinese, from these.
# (instruction, input, output): distinct Chinese tasks; several share a digit or a few characters.
ZH_TASKS = [
    ("列出3种适合在阳台种植的蔬菜。", "", "番茄、生菜和小葱。"),
    ("给我3条提高睡眠质量的建议。", "", "固定作息时间，睡前一小时不看手机，保持卧室安静偏凉。"),
    ("用3句话概括《西游记》的主要情节。", "", "唐僧奉命西天取经，收了孙悟空、猪八戒和沙僧为徒。一路上他们降妖除魔，历经八十一难。最终取得真经，修成正果。"),
    ("一个班有45名学生，女生占五分之二，男生有多少人？", "", "女生18人，男生27人。"),
    ("把下面这段话翻译成英文。", "今天的会议推迟到下午三点。", "Today's meeting has been postponed to 3 p.m."),
    ("判断下面这句话表达的情绪是积极还是消极。", "这家餐厅的服务太差了，再也不来了。", "消极"),
    ("为一家新开的咖啡馆想一句宣传口号。", "", "一杯咖啡，一段慢时光。"),
    ("解释什么是通货膨胀，并举一个生活中的例子。", "", "通货膨胀是物价普遍持续上涨、货币购买力下降。比如十年前一碗面五元，现在要十五元。"),
    ("给一位即将退休的老同事写一段祝福语。", "", "感谢您多年的指导与陪伴，祝您退休生活健康快乐，常回来看看！"),
    ("比较高铁和飞机在长途出行中的优缺点。", "", "高铁准点、进站方便、可用手机；飞机速度快，适合一千五百公里以上的行程，但安检和候机耗时。"),
    ("下面句子里有一个错别字，请指出来。", "他做事一向很认证，从不马虎。", "“认证”应为“认真”。"),
    ("如何向一个五岁的孩子解释天空为什么是蓝色的？", "", "阳光里有很多颜色，蓝色的光最容易被空气弹来弹去，所以我们抬头看到的天空就是蓝色的。"),
    ("把厘米、千米、米、毫米按从小到大的顺序排列。", "", "毫米、厘米、米、千米。"),
    ("秋天树叶为什么会变黄？", "", "天气变冷后叶绿素分解，原本被遮住的黄色素显露出来。"),
    ("根据描述猜一猜这是什么动物。", "它有长长的鼻子和大大的耳朵，生活在非洲和亚洲。", "大象"),
    ("请用“虽然……但是……”造一个句子。", "", "虽然外面下着雨，但是我们还是去了公园。"),
    ("总结这段新闻的要点。", "本市将于下月起在五条主干道增设公交专用道，早晚高峰时段社会车辆不得占用，违者将被罚款。", "下月起五条主干道设公交专用道，高峰期占用将被罚款。"),
    ("推荐5本适合大学新生阅读的书，并各用一句话说明理由。", "", "《活着》：理解生命的韧性；《人类简史》：打开视野；《苏菲的世界》：哲学入门；《自控力》：管理自己；《乡土中国》：认识社会。"),
    ("写一封简短的邮件，向客户说明发货延迟的原因。", "", "尊敬的客户：因近期暴雨导致物流中断，您的订单将延迟两天发出，敬请谅解。"),
    ("面试时被问到“你最大的缺点是什么”，应该怎么回答？", "", "说一个真实但不致命的缺点，并讲清楚你正在如何改进。"),
    ("把这句古文改写成现代汉语。", "学而时习之，不亦说乎？", "学了又按时温习，不也很愉快吗？"),
    ("设计一个适合三口之家的周末出游计划。", "", "周六上午去郊野公园野餐，下午逛科技馆；周日在家附近骑车，晚上一起做饭。"),
    ("长方形的长是8厘米，宽是5厘米，面积是多少？", "", "40平方厘米。"),
    ("分析网购流行对实体商店带来的影响。", "", "实体店客流减少、租金压力增大，但也促使它们转向体验式消费和线上线下结合。"),
    ("请给这篇短文拟一个吸引人的标题。", "小区里的流浪猫越来越多，几位退休老人自发组织喂养、绝育和领养，三年来为八十多只猫找到了家。", "三年，八十只猫的回家路"),
    ("什么是光合作用？请简要说明。", "", "植物利用光能，把二氧化碳和水转化为有机物并释放氧气的过程。"),
    ("为刚开始学跑步的人制定一份两周训练安排。", "", "第一周隔天慢跑加快走各十五分钟；第二周隔天连续慢跑二十分钟，其余日子拉伸。"),
    ("用一个成语形容做事非常认真，并解释它的意思。", "", "一丝不苟：连一根丝都不马虎，形容做事认真细致。"),
    ("判断下列数字中哪些是质数：2、9、11、15、17。", "", "2、11、17"),
    ("改写这句话，使语气更委婉。", "你的方案根本行不通。", "这个方案可能还有一些地方需要再斟酌。"),
    ("介绍春节期间的几种传统习俗。", "", "贴春联、吃年夜饭、守岁、放鞭炮、拜年和发红包。"),
    ("如果你是导游，怎样向外国游客介绍长城？", "", "长城是两千多年间修建的防御工程，绵延两万多公里，是中华民族坚韧的象征。"),
    ("这句英语谚语用中文怎么说？", "Practice makes perfect.", "熟能生巧。"),
    ("写一首描写江南春雨的现代诗。", "", "雨落在青石板上，\n像谁在轻轻叩门，\n乌篷船摇过小桥，\n把春天摇进了水乡。"),
    ("给下面的句子加上合适的标点符号。", "你今天去哪里了我找了你一下午", "你今天去哪里了？我找了你一下午。"),
    ("谈谈你对“远亲不如近邻”这句俗语的理解。", "", "遇到急事时，住得近的邻居往往比远方的亲戚更能及时帮忙，提醒我们要和邻里和睦相处。"),
    ("在家里怎样节约用水？给出几条实用的办法。", "", "洗菜水用来浇花，刷牙时关水龙头，马桶水箱里放一瓶水，尽量淋浴。"),
    ("为一款智能手表写一段产品介绍。", "", "轻薄机身，续航十天，心率、睡眠和血氧全天监测，来电消息抬腕即看。"),
    ("中国古代的四大发明分别是什么？", "", "造纸术、印刷术、火药和指南针。"),
    ("小红每天存2元，存满100元需要多少天？", "", "50天。"),
]

ZH_JUNK = [
    ("too_short", "讲个笑话。", "为什么小明上课总是带着梯子？因为他想上高中。"),
    ("too_long", "请解释" + "为什么这件事很重要" * 34, "因为它很重要。"),
    ("blacklisted", "描述这张图片里的日落景色。", "天边一片橙红。"),
    ("blacklisted", "为泡茶的步骤画一张流程图。", "烧水、温杯、泡茶、倒茶。"),
    ("write_a_program", "编写一个程序，打印前十个质数。", "print(2, 3, 5)"),
    ("starts_with_punctuation", "——列出三种常见的颜色。", "红、黄、蓝。"),
    ("wrong_language", "Name three famous rivers in Asia.", "The Yangtze, the Ganges and the Mekong."),
    ("empty_output", "说出三位著名的中国诗人。", ""),
]


def task_block(number: int, instruction: str, input_: str, output: str) -> str:
    return (f"{number}. Instruction: {instruction}\n{number}. Input:\n{input_ or '<noinput>'}\n"
            f"{number}. Output:\n{output}\n")


def two_stage_answer(prompt: str, rng: random.Random) -> str:
    """Answers to the `--pipeline self-instruct` prompts: task lists, Yes/No, and instances."""
    if prompt.startswith("Come up with a series of tasks"):
        first = int(prompt.rsplit("Task ", 1)[1].split(":")[0])
        picks = [rng.choice(JUNK)[1] if rng.random() < 0.2 else rng.choice(REAL)["instruction"] for _ in range(6)]
        return " " + "\n".join(f"Task {first + i}: {text}" for i, text in enumerate(picks)).split(": ", 1)[1]
    if prompt.endswith("Is it classification?"):
        return " Yes" if rng.random() < 0.3 else " No"
    if prompt.endswith("Class label:"):
        return " Positive\nInput: I loved every minute of it."
    return rng.choice([" <noinput>\nOutput: Here is a helpful answer.", " Some text to work on.\nOutput: Done.",
                       " no output label here"])


def chinese_block(number: int, instruction: str, input_: str, output: str, rng: random.Random) -> str:
    """A task as a Chinese teacher writes it: mostly the prompt's `N. 指令：`, sometimes `N、指令:`."""
    dot, colon = (". ", "：") if rng.random() < 0.7 else ("、", ":")
    return (f"{number}{dot}指令{colon}{instruction}\n{number}{dot}输入{colon}\n{input_ or '<无输入>'}\n"
            f"{number}{dot}输出{colon}\n{output}\n")


def chinese_tasks(first: int, rng: random.Random) -> list[tuple[str, str, str]]:
    """Tasks first..19 in Chinese: ZH_TASKS, junk, and near duplicates (one character dropped) of a ZH_TASKS one."""
    tasks = []
    for _ in range(first, 20):
        roll = rng.random()
        if roll < 0.15:
            _, instruction, output = rng.choice(ZH_JUNK)
            tasks.append((instruction, "", output))
        elif roll < 0.25 and tasks and tasks[-1] in ZH_TASKS:
            text = tasks[-1][0]
            cut = rng.randrange(len(text) - 1)
            tasks.append((text[:cut] + text[cut + 1:], "", tasks[-1][2]))
        else:
            tasks.append(rng.choice(ZH_TASKS))
    return tasks


def english_blocks(first: int, rng: random.Random) -> list[str]:
    """Tasks first..19: real Alpaca ones, junk, near duplicates (one word dropped), sometimes a malformed block."""
    tasks = []
    for _ in range(first, 20):
        roll = rng.random()
        if roll < 0.15:
            _, instruction, output = rng.choice(JUNK)
            tasks.append((instruction, "", output))
        elif roll < 0.25 and tasks:  # near duplicate of an earlier task of this answer: one word dropped
            words = tasks[-1][0].split()
            del words[rng.randrange(len(words))]
            tasks.append((" ".join(words), "", tasks[-1][2] or "Sure."))
        else:
            r = rng.choice(REAL)
            tasks.append((" ".join(r["instruction"].split()), r["input"].strip(), r["output"].strip()))
    blocks = [task_block(first + i, *task) for i, task in enumerate(tasks)]
    if rng.random() < 0.1:
        blocks.insert(1, f"{first + 1}. Instruction: Give an example\nsomething went wrong here\n")
    return blocks


def answer_for(prompt: str, chat: bool) -> tuple[str, str]:
    """(text, finish_reason) for a prompt ending in `N. Instruction:` (or `N. 指令：`): the way a teacher writes
    tasks N..19."""
    rng = random.Random(hashlib.sha256(prompt.encode()).hexdigest())
    if "###" not in prompt:
        return two_stage_answer(prompt, rng), "stop"
    first = int(prompt.rsplit("###\n", 1)[1].split(".", 1)[0])
    chinese = prompt.endswith("指令：")
    if chinese:
        blocks = [chinese_block(first + i, *task, rng) for i, task in enumerate(chinese_tasks(first, rng))]
    else:
        blocks = english_blocks(first, rng)
    text = "###\n".join(blocks) + "###\n"
    finish = "stop"
    if rng.random() < 0.2:  # cut mid-task at the token limit
        text, finish = text[: rng.randrange(len(text) // 2, len(text))], "length"
    if chat:
        preamble = "好的，以下是更多任务：\n\n" if chinese else "Here are more tasks:\n\n"
        return (preamble if rng.random() < 0.5 else "") + text, finish
    return " " + re.split("(?:Instruction|指令)[:：]", text, maxsplit=1)[1].lstrip(), finish


# Ways a 200 answer can be useless; each a fault name for `fail_next` or `always`.
HOSTILE = ("html", "choices_empty", "choices_null", "prose", "truncated", "not_object", "long_prose", "gzip",
           "huge", "huge_declared", "trickle")
PROSE = "I am sorry, but as a language model I would rather talk about the weather today."


class TeacherDouble:
    def __init__(self, api_key: str | None = None, model: str = "teacher-double", delay: float = 0.0):
        self.api_key, self.model, self.delay = api_key, model, delay
        self.faults: list[str] = []
        self.always: str | None = None  # the fault of every request with none queued
        self.trickle_interval = 0.4  # seconds between the bytes of a "trickle" answer
        self.huge_sent = 0  # bytes of "huge" bodies actually written before the client hung up
        self.closed = threading.Event()
        self.requests: list[dict] = []
        self.in_flight = self.max_in_flight = 0
        self.answer = answer_for
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.server.handle_error = lambda request, address: None  # clients hanging up mid-request are expected
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()  # quick close

    def fail_next(self, *faults: str) -> None:
        """Queue faults: "429", "429ms", "500", "slow", "drop", "junk"; each serves one request."""
        with self.lock:
            self.faults += faults

    def close(self) -> None:
        self.closed.set()
        self.server.shutdown()
        self.server.server_close()

    def _handler(self):
        double = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                with double.lock:
                    double.in_flight += 1
                    double.max_in_flight = max(double.max_in_flight, double.in_flight)
                try:
                    self._answer()
                finally:
                    with double.lock:
                        double.in_flight -= 1

            def _answer(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with double.lock:
                    double.requests.append({"path": self.path, "body": body, "time": time.monotonic()})
                    fault = double.faults.pop(0) if double.faults else double.always
                if double.api_key and self.headers.get("Authorization") != f"Bearer {double.api_key}":
                    return self._json(401, {"error": {"message": "Incorrect API key provided", "type":
                                                      "invalid_request_error", "code": "invalid_api_key"}})
                if body.get("model") != double.model:
                    return self._json(404, {"error": {"message": f"model {body.get('model')} not found"}})
                if fault in ("429", "429ms"):
                    header = {"retry-after": "0.2"} if fault == "429" else {"retry-after-ms": "150"}
                    return self._json(429, {"error": {"message": "Rate limit reached"}}, header)
                if fault == "500":
                    return self._json(500, {"error": {"message": "The server had an error"}})
                if fault == "drop":
                    self.connection.shutdown(2)  # close without answering
                    self.close_connection = True
                    return
                if fault == "slow":
                    time.sleep(3)
                if fault in ("junk", "html"):
                    return self._raw(200, b"<html>gateway says hi</html>", "text/html")
                if fault == "huge":
                    return self._endless()
                if double.delay:
                    time.sleep(double.delay)
                response = self._response(body, PROSE * 4000 if fault == "long_prose" else PROSE if fault == "prose"
                                          else None)
                if fault in HOSTILE:
                    return self._hostile(fault, response)
                self._json(200, response)

            def _response(self, body, same_text=None):
                """A well-formed answer to the request: the double's own tasks, or `same_text` for every prompt."""
                chat = self.path.endswith("/chat/completions")
                prompts = [body["messages"][-1]["content"]] if chat else body["prompt"]
                prompts = [prompts] if isinstance(prompts, str) else prompts
                choices = []
                for i, prompt in enumerate(prompts):
                    text, finish = double.answer(prompt, chat) if same_text is None else (same_text, "stop")
                    choice = {"index": i, "finish_reason": finish}
                    choice.update({"message": {"role": "assistant", "content": text}} if chat else
                                  {"text": text, "logprobs": None})
                    choices.append(choice)
                usage = {"prompt_tokens": sum(len(p.split()) for p in prompts),
                         "completion_tokens": sum(len(c.get("text", c.get("message", {}).get("content", "")).split())
                                                  for c in choices)}
                usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
                return {"id": "cmpl-1", "object": "chat.completion" if chat else "text_completion",
                        "created": int(time.time()), "model": double.model, "choices": choices, "usage": usage}

            def _hostile(self, fault, response):
                data = json.dumps(response).encode()
                if fault in ("choices_empty", "choices_null"):
                    return self._json(200, {**response, "choices": [] if fault == "choices_empty" else None})
                if fault == "truncated":
                    return self._raw(200, data[: len(data) // 2], "application/json")
                if fault == "not_object":
                    return self._json(200, [response])
                if fault == "gzip":
                    return self._raw(200, gzip.compress(data), "application/json", {"Content-Encoding": "gzip"})
                if fault == "huge_declared":  # says 100 GB up front, sends a little
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(100 * 2**30))
                    self.end_headers()
                    self.wfile.write(data)
                    self.close_connection = True
                    return
                if fault == "trickle":  # a whole, valid answer, one byte at a time
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    for i in range(len(data)):
                        if double.closed.wait(double.trickle_interval):
                            break
                        self.wfile.write(data[i:i + 1])
                        self.wfile.flush()
                    self.close_connection = True
                    return
                self._json(200, response)  # prose, long_prose: valid JSON, useless text

            def _endless(self):
                """A JSON body without a length, sent in chunks for as long as the client reads (up to 1 GiB)."""
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                chunk = b" " * 65536
                self.close_connection = True
                try:
                    self.wfile.write(b"%x\r\n%s\r\n" % (2, b'{"'))
                    for _ in range(2**30 // len(chunk)):
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                        with double.lock:
                            double.huge_sent += len(chunk)
                except OSError:  # the client hung up: what it should do
                    pass

            def _json(self, status, obj, headers=None):
                self._raw(status, json.dumps(obj).encode(), "application/json", headers)

            def _raw(self, status, data, content_type, headers=None):
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

        return Handler
