"""What anyone may GET, key or not: the web chat page, and liveness (the queue figures only with the key)."""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from pacos.serve.state import State

router = APIRouter()


@router.get("/", response_class=HTMLResponse)
async def index():
    return resources.files("pacos.serve").joinpath("static/chat.html").read_text(encoding="utf-8")


@router.get("/health")
async def health(request: Request, state: State):
    if not request.app.state.access.shows_figures(request.headers):
        return {"status": "ok"}
    return {"status": "ok", "model": state.served_name, "engine": state.engine.name, **state.engine.stats()}
