"""What anyone may GET, key or not: the web chat and compare pages, and liveness (the queue figures only with
the key)."""

from __future__ import annotations

import functools
import re
from importlib import resources

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from pacos.serve.state import State

router = APIRouter()


INCLUDE = re.compile(r"<!--#include ([\w.-]+)-->")  # a part both pages share, from static/ (one level deep)


@functools.cache
def page(name: str) -> str:
    """A page of static/, with what it includes written in."""
    def text(file: str) -> str:
        return resources.files("pacos.serve").joinpath(f"static/{file}").read_text(encoding="utf-8")

    return INCLUDE.sub(lambda m: text(m.group(1)), text(name))


@router.get("/", response_class=HTMLResponse)
async def index():
    return page("chat.html")


@router.get("/compare", response_class=HTMLResponse)
async def compare_page():
    return page("compare.html")


@router.get("/health")
async def health(request: Request, state: State):
    if not request.app.state.access.shows_figures(request.headers):
        return {"status": "ok"}
    figures = {name: {"engine": engine.name, **engine.stats()} for name, engine in state.engines.items()}
    first = state.default_name
    # The first model's figures at the top, as with one model; every model's under "models" when there are more.
    return {"status": "ok", "model": first, **figures[first]} | ({"models": figures} if len(figures) > 1 else {})
