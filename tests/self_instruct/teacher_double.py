"""A teacher test double: a real HTTP server on loopback speaking OpenAI's completions and chat wire format.

Answers are the realistic numbered task lists, made deterministically from the prompt (so reruns and resumes
see the same answers): real Alpaca instructions, junk that each filter must drop, exact and near duplicates,
sometimes cut at the token limit. Faults (429 with Retry-After, 500, slow answers, dropped connections, junk
bodies, 401) are queued with `fail_next`; a hostile teacher (`always`) answers every request one bad way
(HOSTILE: a web page, no choices, prose, truncated JSON, a trickle of bytes, an endless body, ...).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import random
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

FIXTURES = Path(__file__).resolve().parent / "fixtures"  # small excerpts of public data; see the README there
SEEDS = FIXTURES / "seed_tasks.jsonl"
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


def answer_for(prompt: str, chat: bool) -> tuple[str, str]:
    """(text, finish_reason) for a prompt ending in `N. Instruction:`: the way a teacher writes tasks N..19."""
    rng = random.Random(hashlib.sha256(prompt.encode()).hexdigest())
    if "###" not in prompt:
        return two_stage_answer(prompt, rng), "stop"
    first = int(prompt.rsplit("###\n", 1)[1].split(".", 1)[0])
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
    text = "###\n".join(blocks) + "###\n"
    finish = "stop"
    if rng.random() < 0.2:  # cut mid-task at the token limit
        text, finish = text[: rng.randrange(len(text) // 2, len(text))], "length"
    if chat:
        return ("Here are more tasks:\n\n" if rng.random() < 0.5 else "") + text, finish
    return " " + text.split("Instruction:", 1)[1].lstrip(), finish


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
