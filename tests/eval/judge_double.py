"""A judge test double: a real HTTP server on loopback speaking OpenAI's chat completions wire format.

Verdicts are made deterministically from the prompt: the answer holding MARKER wins, else the longer one, equal
lengths tie; a question holding BIASED is always given to the answer shown first (a position-biased judge, so
the two orders disagree). Ratings: 9 for an answer holding MARKER (or the reference, in reference prompts),
else 1 + its length % 7. With `logprobs` asked, the verdict token comes with top_logprobs. Faults are queued
with `fail_next` (each serves one request) or set for every request with `always`: "500", "429" (Retry-After),
"garbage" (a web page), "unparseable" (no verdict), "ambiguous" ([[A]] and [[B]]), "huge" (a body past any cap),
"nan" (NaN logprobs), "slow".

Quality scores (`pacos data score`'s prompt): the reply is `Score: X` for a response holding `<score=X>` (X
any text, so a test can make the judge say 7, -1 or NaN), else `Score: 3`, then a line of reason.

`JudgeDouble(bias=(length_scale, position_logit))` is a judge with a known length and position bias instead:
P(A wins) = expit((len(A) - len(B)) / length_scale + position_logit), its verdict the likelier letter and its
top_logprobs those probabilities (a small one for the tie), so two equally good answers get a preference that
depends on their lengths and on the order they are shown in, and on nothing else.
"""

from __future__ import annotations

import json
import math
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MARKER = "<best>"
SCORE_MARK = re.compile(r"<score=([^>]*)>")
BIASED = "<biased>"
LETTER_P = {"chosen": 0.7, "other": 0.2, "third": 0.1}


def _between(text: str, start: str, end: str) -> str:
    a = text.index(start) + len(start)
    return text[a:text.index(end, a)]


def shown_answers(user: str) -> tuple[str, str]:
    """(A, B) as the judge saw them: the two answers, or the last answers of the two conversations."""
    if "[Assistant A's answer]" in user:
        return (_between(user, "[Assistant A's answer]\n", "\n[End of assistant A's answer]"),
                _between(user, "[Assistant B's answer]\n", "\n[End of assistant B's answer]"))
    a = _between(user, "[Conversation with assistant A]\n", "\n[End of conversation with assistant A]")
    b = _between(user, "[Conversation with assistant B]\n", "\n[End of conversation with assistant B]")
    return a.rsplit("### Assistant A:\n", 1)[1], b.rsplit("### Assistant B:\n", 1)[1]


def verdict_letter(user: str) -> str:
    if BIASED in user:
        return "A"
    a, b = shown_answers(user)
    if (MARKER in a) != (MARKER in b):
        return "A" if MARKER in a else "B"
    return "A" if len(a) > len(b) else "B" if len(b) > len(a) else "C"


def rating_of(user: str) -> int:
    answer = user.rsplit("### Assistant:\n", 1)[1].split("\n[End of conversation]")[0] if "[Conversation]" in user else \
        _between(user, "[Assistant's answer]\n", "\n[End of assistant's answer]")
    if "[Reference answer" in user:
        reference = user.split("[Reference answer", 1)[1].split("]\n", 1)[1]
        reference = reference.split("\n[End of reference answer]")[0]
        return 9 if reference.strip() in answer else 2
    return 9 if MARKER in answer else 1 + len(answer) % 7


class JudgeDouble:
    def __init__(self, model: str = "judge-double", delay: float = 0.0, bias: tuple[float, float] | None = None):
        self.model, self.delay, self.bias = model, delay, bias
        self.faults: list[str] = []
        self.always: str | None = None
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), ChatHandler)
        self.server.double = self
        self.server.daemon_threads = True
        self.server.handle_error = lambda request, address: None
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def fail_next(self, *faults: str) -> None:
        with self.lock:
            self.faults += faults

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def answer(self, body: dict, fault: str | None) -> tuple[str, list | None]:
        """(text, logprobs content or None) for a chat request."""
        user = body["messages"][-1]["content"]
        pairwise = "[[A]]" in body["messages"][0]["content"]
        if fault == "unparseable":
            return "Both answers have merits; I cannot decide.", None
        if fault == "ambiguous":
            return "Assistant A [[A]] is longer, but assistant B [[B]] is right.", None
        if "\n[End of response]" in user:
            mark = SCORE_MARK.search(user.rsplit("[Response]\n", 1)[1])
            value = mark.group(1) if mark else "3"
            return f"Score: {value}\nThe response carries the mark {value}.", None
        probs = list(LETTER_P.values())
        if pairwise and self.bias:
            a, b = shown_answers(user)
            p_a = 1 / (1 + math.exp(-((len(a) - len(b)) / self.bias[0] + self.bias[1])))
            verdict = "A" if p_a >= 0.5 else "B"
            probs = [0.98 * max(p_a, 1 - p_a), 0.98 * min(p_a, 1 - p_a), 0.02]
        else:
            verdict = verdict_letter(user) if pairwise else str(rating_of(user))
        explanation = "Having compared them carefully, my verdict: " if pairwise else "Rating: "
        text = f"{explanation}[[{verdict}]]"
        if not body.get("logprobs"):
            return text, None
        alternatives = [verdict] + [x for x in "ABC" if x != verdict] if pairwise else [verdict]
        top = [{"token": x, "logprob": math.log(p), "bytes": None} for x, p in zip(alternatives, probs)]
        if fault == "nan":
            top[0]["logprob"] = math.nan
        tokens = [(explanation, -0.01, []), ("[[", -0.001, []), (verdict, top[0]["logprob"], top), ("]]", -0.001, [])]
        return text, [{"token": t, "logprob": lp, "bytes": None, "top_logprobs": alts} for t, lp, alts in tokens]


class ChatHandler(BaseHTTPRequestHandler):
    """One chat completions request, answered as the server's JudgeDouble says."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # quiet
        return

    def do_POST(self):
        double = self.server.double
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with double.lock:
            double.requests.append(body)
            fault = double.faults.pop(0) if double.faults else double.always
        if body.get("model") != double.model:
            return self._raw(404, json.dumps({"error": {"message": "no such model"}}).encode())
        if fault == "500":
            return self._raw(500, b'{"error": {"message": "The server had an error"}}')
        if fault == "429":
            return self._raw(429, b'{"error": {"message": "Rate limit"}}', {"retry-after": "0.1"})
        if fault == "garbage":
            return self._raw(200, b"<html>gateway says hi</html>", content_type="text/html")
        if fault == "slow" or double.delay:
            time.sleep(3 if fault == "slow" else double.delay)
        text, logprobs = double.answer(body, fault)
        if fault == "huge":
            text = "x" * (8 * 2**20)
        prompt = sum(len(m["content"].split()) for m in body["messages"])
        choice = {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text},
                  "logprobs": {"content": logprobs} if logprobs is not None else None}
        response = {"id": "chatcmpl-1", "object": "chat.completion", "created": int(time.time()),
                    "model": double.model, "choices": [choice],
                    "usage": {"prompt_tokens": prompt, "completion_tokens": len(text.split()),
                              "total_tokens": prompt + len(text.split())}}
        self._raw(200, json.dumps(response).encode())  # json writes NaN as NaN: not JSON, as a bad server

    def _raw(self, status, data, headers=None, content_type="application/json"):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)
