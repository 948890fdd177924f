"""The compare page in headless Chromium: a question, two anonymous answers, a vote, the reveal, then the row in
SQLite and the preference pair in the export."""

from __future__ import annotations

import json

import pytest

from pacos.serve.feedback import FeedbackStore

from ..conftest import run_pacos
from .conftest import COMPARED
from .test_browser import chromium_page


@pytest.fixture(scope="module")
def page(compare_server):
    yield from chromium_page()


def test_ask_wait_vote_reveal_then_row_and_export(page, compare_server, tmp_path):
    page.goto(compare_server.url + "/compare")
    page.locator("#models[data-ready='1']").wait_for()
    page.fill("#system", "You are a test.")
    page.fill("#temperature", "0.9")
    page.fill("#max-tokens", "10")
    page.fill("#question", "Which is better?")
    assert page.locator("#vote-a").is_disabled()
    page.press("#question", "Enter")
    page.locator("#pair[data-state='ready']").wait_for()
    texts = {side: page.locator(f"#answer-{side} .text").text_content() for side in "ab"}
    assert page.locator(".answer .model").all_text_contents() == ["", ""]  # no names before the vote
    assert not any(name in page.content() for name in COMPARED)
    session = page.locator("#pair").get_attribute("data-session")

    page.click("#vote-a")
    page.locator("#pair[data-state='voted']").wait_for()
    shown = {side: page.locator(f"#answer-{side}").get_attribute("data-model") for side in "ab"}
    assert set(shown.values()) == set(COMPARED)
    assert shown["a"] in page.locator("#answer-a .model").text_content()
    assert page.locator("#vote-b").is_disabled()

    [row] = [c for c in FeedbackStore(compare_server.feedback_db, create=False).comparisons() if c["id"] == session]
    context = [{"role": "system", "content": "You are a test."}, {"role": "user", "content": "Which is better?"}]
    assert row["context"] == context and row["vote"] == "a"
    assert (row["model_a"], row["model_b"]) == (shown["a"], shown["b"])
    assert (row["response_a"], row["response_b"]) == (texts["a"], texts["b"])
    assert row["params"] == {"temperature": 0.9, "top_p": 0.95, "max_tokens": 10}

    dpo = tmp_path / "dpo.jsonl"
    run_pacos("feedback", "export", compare_server.feedback_db, "--format", "dpo", "--out", dpo, check=True)
    assert {"prompt": context, "chosen": [{"role": "assistant", "content": texts["a"]}],
            "rejected": [{"role": "assistant", "content": texts["b"]}]} in [
        json.loads(line) for line in dpo.read_text().splitlines()]


def test_the_chat_page_picks_among_the_models_and_links_to_compare(page, compare_server):
    page.goto(compare_server.url + "/")
    page.locator("#model[data-ready='1']").wait_for()
    assert page.locator("#model-pick option").all_text_contents() == list(COMPARED)
    assert page.locator("#compare-link a").is_visible()
    page.select_option("#model-pick", COMPARED[1])
    page.fill("#max-tokens", "4")
    page.fill("#prompt", "hello")
    page.press("#prompt", "Enter")
    page.locator(".msg.assistant[data-done='1']").wait_for()
    rid = page.locator(".msg.assistant").get_attribute("data-response-id")
    [row] = [r for r in FeedbackStore(compare_server.feedback_db, create=False).responses() if r["id"] == rid]
    assert row["model"] == COMPARED[1]
