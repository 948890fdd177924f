"""The web chat page in headless Chromium: two turns, regenerate, votes, then the rows in SQLite and the export."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from ..conftest import run_pacos

CHROMIUM = "/usr/bin/chromium"  # Debian's chromium; never a downloaded browser
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run",
        "--disable-component-update", "--disable-sync"]


def chromium_page():
    """A page in headless Chromium (skips without Chromium or playwright); a generator, for a fixture to yield from."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        page = browser.new_page()
        page.set_default_timeout(60_000)
        yield page
        browser.close()


@pytest.fixture(scope="module")
def page(server):
    yield from chromium_page()


def assistant(page, n):
    """The n-th assistant message (0-based) once its response is complete and stored."""
    el = page.locator(".msg.assistant").nth(n)
    el.and_(page.locator("[data-done='1']")).wait_for()
    return el


def test_two_turns_regenerate_vote_then_rows_and_export(page, server, tmp_path):
    page.goto(server.url + "/")
    page.fill("#api-key", server.api_key)
    page.dispatch_event("#api-key", "change")
    page.locator("#model[data-ready='1']").wait_for()
    page.fill("#system", "You are a test.")
    page.fill("#temperature", "0.9")
    page.fill("#max-tokens", "12")

    page.fill("#prompt", "first question")
    page.press("#prompt", "Enter")
    first = assistant(page, 0)
    page.fill("#prompt", "second question")
    page.click("#send")
    second = assistant(page, 1)
    replaced_id = second.get_attribute("data-response-id")
    second_text = second.locator(".text").inner_text()

    page.click("#regen")
    page.locator(f".msg.assistant[data-response-id]:not([data-response-id='{replaced_id}'])").nth(1).wait_for()
    regenerated = assistant(page, 1)
    assert page.locator(".msg.assistant").count() == 2 and page.locator(".msg.user").count() == 2
    regen_id = regenerated.get_attribute("data-response-id")
    assert regen_id != replaced_id

    first.locator(".votes .down").click()
    first.and_(page.locator("[data-voted='down']")).wait_for()
    regenerated.locator(".votes .up").click()
    regenerated.and_(page.locator("[data-voted='up']")).wait_for()
    regenerated.locator(".votes .flag").click()
    regenerated.and_(page.locator("[data-voted='up,flag']")).wait_for()
    regenerated.locator(".votes .flag").click()  # flag toggled off again
    regenerated.and_(page.locator("[data-voted='up,flag,unflag']")).wait_for()

    db = sqlite3.connect(server.feedback_db)
    rows = {r[0]: r for r in db.execute(
        "SELECT id, context, response, model, revision, template, params, regenerated_from FROM responses")}
    assert {first.get_attribute("data-response-id"), replaced_id, regen_id} <= set(rows)
    _, context, response, model, revision, template, params, regenerated_from = rows[regen_id]
    context = json.loads(context)
    assert [m["role"] for m in context] == ["system", "user", "assistant", "user"]
    assert context[0]["content"] == "You are a test." and context[3]["content"] == "second question"
    assert context[2]["content"] == first.locator(".text").inner_text()
    assert (model, template, regenerated_from) == ("tiny", "model", replaced_id) and revision
    assert json.loads(params) == {"temperature": 0.9, "top_p": 0.95, "max_tokens": 12}
    assert rows[replaced_id][2] == second_text  # the replaced alternative is kept
    votes = db.execute("SELECT response_id, vote FROM votes ORDER BY id").fetchall()
    assert (regen_id, "up") in votes and (regen_id, "flag") in votes and (regen_id, "unflag") in votes

    dpo = tmp_path / "dpo.jsonl"
    run_pacos("feedback", "export", server.feedback_db, "--format", "dpo", "--out", dpo, check=True)
    pairs = [json.loads(line) for line in dpo.read_text().splitlines()]
    assert {"prompt": context, "chosen": [{"role": "assistant", "content": response}],
            "rejected": [{"role": "assistant", "content": second_text}]} in pairs
    sft = tmp_path / "sft.jsonl"
    run_pacos("feedback", "export", server.feedback_db, "--format", "sft", "--out", sft, check=True)
    assert {"messages": context + [{"role": "assistant", "content": response}]} in [
        json.loads(line) for line in sft.read_text().splitlines()]

    page.click("#clear")
    assert page.locator(".msg").count() == 0


def test_page_shows_server_errors(page, server):
    page.goto(server.url + "/")
    page.fill("#api-key", server.api_key)
    page.dispatch_event("#api-key", "change")
    page.locator("#model[data-ready='1']").wait_for()
    page.fill("#max-tokens", "5000")  # over the tiny model's context
    page.fill("#prompt", "hello")
    page.press("#prompt", "Enter")
    page.locator(".msg.assistant.error").wait_for()
    assert "maximum context length" in page.locator(".msg.assistant.error .text").inner_text()
