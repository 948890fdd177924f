"""POST /feedback: what the web page sends for each response it shows (stored once), optionally with a vote.

Behind `require_access` like /v1: a vote becomes training data, so no other web page may forge one.
"""

from __future__ import annotations

import asyncio
from typing import Literal

from fastapi import APIRouter, Depends, Request
from pydantic import Field, StrictStr

from pacos.errors import PacosError
from pacos.serve.access import require_access
from pacos.serve.feedback import VOTES
from pacos.serve.protocol import APIError, Body, bad
from pacos.serve.state import State

router = APIRouter(dependencies=[Depends(require_access)])


class ContextMessage(Body):
    role: StrictStr
    content: StrictStr


class FeedbackBody(Body):
    response_id: StrictStr = Field(min_length=1, max_length=200, description="a string id the page gave the response")
    response: StrictStr = Field(description="the response text")
    context: list[ContextMessage] = Field(description="the conversation up to the response, as [{role, content}]")
    params: dict = Field(default_factory=dict)  # the sampling parameters the page used
    vote: Literal[VOTES] | None = None
    regenerated_from: StrictStr | None = None  # the response this one replaced
    conversation_id: StrictStr | None = None
    model: StrictStr | None = None  # the served model that wrote it (default: the server's first)


@router.post("/feedback")
async def post_feedback(request: Request, state: State):
    if state.feedback is None:
        raise APIError(404, "feedback is off on this server (started with --no-feedback)", code="not_found")
    item = await state.off_loop(FeedbackBody.from_json, await state.read_body(request))
    model = item.model or state.default_name
    revision, template = state.provenance(model)  # an unknown model is a 404
    try:
        await asyncio.to_thread(state.feedback.record, model=model, revision=revision, template=template,
                                **item.model_dump(exclude={"model"}))
    except PacosError as e:
        raise bad(str(e)) from None
    return {"ok": True, "response_id": item.response_id}
