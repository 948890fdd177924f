"""Load: many concurrent clients chatting (streamed and not) and voting: no 5xx, every vote stored."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import uuid

import httpx


async def client_session(http: httpx.AsyncClient, cid: int, requests: int, tag: str, statuses: list) -> None:
    for i in range(requests):
        body = {"model": "tiny", "messages": [{"role": "user", "content": f"client {cid} message {i}"}],
                "max_tokens": 8, "temperature": 0.8, "stream": i % 2 == 0}
        if body["stream"]:
            async with http.stream("POST", "/v1/chat/completions", json=body) as r:
                text, lines = "", [line async for line in r.aiter_lines() if line.startswith("data: ")]
                statuses.append(r.status_code)
                assert lines[-1] == "data: [DONE]"
                for line in lines[:-1]:
                    for choice in json.loads(line[6:])["choices"]:
                        text += choice["delta"].get("content") or ""
        else:
            r = await http.post("/v1/chat/completions", json=body)
            statuses.append(r.status_code)
            text = r.json()["choices"][0]["message"]["content"]
        vote = {"response_id": f"{tag}-{cid}-{i}", "conversation_id": f"{tag}-{cid}", "context": body["messages"],
                "response": text, "params": {"temperature": 0.8}, "vote": ("up", "down", "flag")[i % 3]}
        r = await http.post("/feedback", json=vote)
        statuses.append(r.status_code)


async def run_load(server, clients: int, requests: int, tag: str) -> list[int]:
    statuses: list[int] = []
    headers = {"Authorization": f"Bearer {server.api_key}"}
    limits = httpx.Limits(max_connections=clients + 4)
    async with httpx.AsyncClient(base_url=server.url, headers=headers, timeout=120, limits=limits) as http:
        await asyncio.gather(*(client_session(http, c, requests, tag, statuses) for c in range(clients)))
    return statuses


def check(server, clients: int, requests: int) -> None:
    tag = uuid.uuid4().hex[:8]
    steps_before = server.health()["steps"]
    statuses = asyncio.run(run_load(server, clients, requests, tag))
    assert len(statuses) == 2 * clients * requests and set(statuses) == {200}
    db = sqlite3.connect(server.feedback_db)
    stored = db.execute("SELECT COUNT(*) FROM votes WHERE response_id LIKE ?", (tag + "-%",)).fetchone()[0]
    assert stored == clients * requests
    # Requests shared forward passes: far fewer steps than the tokens generated (up to 8 per request).
    assert server.health()["steps"] - steps_before < clients * requests * 8 / 2


def test_load_32_clients_x_10_requests(server):
    check(server, 32, 10)  # about 5 s with the tiny model, so it stays in the default suite
