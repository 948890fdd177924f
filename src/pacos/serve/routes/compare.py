"""Blind side-by-side votes: POST /compare/sessions streams two anonymous answers, POST /compare/votes takes
the vote on them and only then names the models.

Behind `require_access` like /v1 and /feedback. The stream is pacos's own, not /v1's: a /v1 chunk names its
model, these carry only the session's random id and the sides "a" and "b". What is stored comes from the
session the server kept (compare.py), never from the page.

The stream, as server-sent events: `{"session": ID}` first, then `{"side": "a"|"b", "delta": TEXT,
"finish_reason": null|"stop"|"length"}` as the two answers come, then `[DONE]`. A failed generation is an
`{"error": ...}` event, ends the stream and leaves the session without a vote.
"""

from __future__ import annotations

import asyncio
import json
from typing import Literal

from fastapi import APIRouter, Depends, Request
from pydantic import Field, StrictInt, StrictStr, model_validator
from typing_extensions import Self

from pacos.serve.access import require_access
from pacos.serve.compare import SIDES, CompareSession
from pacos.serve.feedback import COMPARISON_VOTES, FeedbackStore
from pacos.serve.protocol import APIError, Body, ChatCompletionRequest, refuse
from pacos.serve.routes.v1 import encode_chat, start
from pacos.serve.state import ServerState, State
from pacos.serve.streams import merged, sse, stream_error

router = APIRouter(prefix="/compare", dependencies=[Depends(require_access)])
# What of a request is its sampling, stored with the vote (the rest is the question, or not the page's to set).
NOT_SAMPLING = {"model", "messages", "n", "stream", "stream_options"}


class CompareRequest(ChatCompletionRequest):
    """One question (and optionally a system prompt) with the chat API's sampling fields; the server picks the
    models, so a `model` in the body is ignored."""

    model: StrictStr = ""
    n: StrictInt = Field(1, ge=1, le=1)

    @model_validator(mode="after")
    def _one_question(self) -> Self:
        if len(self.messages) != 1 + (self.messages[0].role == "system"):  # (the rest ChatCompletionRequest checks)
            raise refuse("'messages' of a comparison are one question: an optional system message, then one "
                         "user message", "messages")
        return self

    @property
    def context(self) -> list[dict]:
        return [{"role": m.role, "content": m.content} for m in self.messages]

    @property
    def params(self) -> dict:
        return self.model_dump(exclude_unset=True, exclude=NOT_SAMPLING)


class CompareVote(Body):
    session: StrictStr = Field(min_length=1, max_length=64, description="the id the comparison's stream began with")
    vote: Literal[COMPARISON_VOTES] = Field(description="'a', 'b', 'tie' or 'both_bad'")


def feedback_of(state: ServerState) -> FeedbackStore:
    if state.feedback is None:
        raise APIError(404, "votes are off on this server (started with --no-feedback)", code="not_found")
    return state.feedback


@router.post("/sessions")
async def start_comparison(request: Request, state: State):
    feedback_of(state)
    models = state.compare.draw(state.names)  # 404 with one model
    req = await state.off_loop(CompareRequest.from_json, await state.read_body(request))
    prompts = await state.off_loop(lambda: [encode_chat(state.engines[m], req) for m in models])
    gens = []
    try:
        for name, prompt in zip(models, prompts):
            gens += start(state.engines[name], req, [prompt], chat=True)
    except APIError:  # the second side refused (busy, too long for its context): the first must not run on
        for g in gens:
            g.cancel()
        raise
    return sse(comparison_events(state.compare.open(models, req.context, req.params), gens))


async def comparison_events(session: CompareSession, gens):
    """The session's stream; what it streams is what it keeps, so the vote is on exactly these texts."""
    yield json.dumps({"session": session.id})
    async for i, ev in merged(gens):
        if ev.finish_reason == "error":
            session.failed = True
            yield stream_error(session.id, ev)
            return
        session.texts[i] += ev.delta
        session.finished[i] = ev.finish_reason is not None
        yield json.dumps({"side": SIDES[i], "delta": ev.delta, "finish_reason": ev.finish_reason})


@router.post("/votes")
async def vote(request: Request, state: State):
    feedback = feedback_of(state)
    item = await state.off_loop(CompareVote.from_json, await state.read_body(request))
    session = state.compare.take_vote(item.session, item.vote)  # 404 unknown/expired, 409 twice or too early
    (model_a, model_b), (revision_a, template_a), (revision_b, template_b) = (
        session.models, *map(state.provenance, session.models))
    try:
        stored = await asyncio.to_thread(
            feedback.record_comparison, comparison_id=session.id, context=session.context, model_a=model_a,
            model_b=model_b, response_a=session.texts[0], response_b=session.texts[1], vote=item.vote,
            revision_a=revision_a, template_a=template_a, revision_b=revision_b, template_b=template_b,
            params=session.params)
    except BaseException:  # not stored (a locked or full disk): the vote may be sent again
        session.vote = None
        raise
    if not stored:
        raise APIError(409, "This comparison already has its vote; each takes one", param="session",
                       code="already_voted")
    return {"ok": True, "session": session.id, "vote": item.vote, "model_a": model_a, "model_b": model_b}
