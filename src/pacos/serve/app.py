"""The FastAPI app: OpenAI-compatible endpoints, the web chat page, and the feedback endpoint it votes through.

Bodies are read and validated by hand (protocol.py) so every bad request gets an OpenAI-shaped 4xx;
anything unexpected is a 500 in the same shape, without internals. Writes are same-origin JSON only
(access.py). Parsing, templating and tokenization run on a small thread pool, never on the event loop,
so no single request can stall the others or /health. Generations run on the engine; the handlers only
stream or collect their events, and cancel them when the client goes away.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from importlib import resources

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from pacos.data import strict_json
from pacos.data.records import Conversation
from pacos.errors import PacosError
from pacos.infer.engine import Engine, QueueFull, Stream
from pacos.infer.params import SamplingError
from pacos.serve import protocol as P
from pacos.serve.access import key_matches, key_refusal, write_refusal
from pacos.serve.protocol import APIError

MAX_BODY_BYTES = 4 << 20
RETRY_AFTER_SECONDS = 2
# Threads for per-request CPU work (JSON parsing, templating, tokenization), so the event loop only moves
# bytes: a few, because they share two cores with the engine, and a bound keeps many big requests queued
# instead of all running at once.
PREP_WORKERS = 2
log = logging.getLogger("pacos.serve")


def create_app(engine: Engine, served_name: str, api_key: str | None = None, feedback=None,
               max_body_bytes: int = MAX_BODY_BYTES, max_choices: int = P.MAX_N,
               allow_origins: tuple[str, ...] = ()) -> FastAPI:
    prep = ThreadPoolExecutor(PREP_WORKERS, thread_name_prefix="pacos-prep")

    @asynccontextmanager
    async def lifespan(app):
        yield
        prep.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(title="pacos serve", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    created = int(time.time())
    allowed_origins = frozenset(o.rstrip("/").lower() for o in allow_origins)
    if allowed_origins:  # deliberate cross-origin use: browsers must also be able to preflight and read
        from starlette.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=sorted(allowed_origins), allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "Content-Type"])

    @app.exception_handler(APIError)
    async def _api_error(request, exc: APIError):
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request, exc):
        kind = "not_found" if exc.status_code == 404 else "method_not_allowed" if exc.status_code == 405 else None
        return JSONResponse(APIError(exc.status_code, f"{request.method} {request.url.path}: {exc.detail}",
                                     code=kind).body(), status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request, exc):
        return JSONResponse(P.bad(str(exc)).body(), status_code=400)

    @app.exception_handler(Exception)
    async def _server_error(request, exc):
        # Starlette re-raises after this answer, so uvicorn logs the traceback; the client gets no internals.
        return JSONResponse(APIError(500, "internal error; see the server log", "server_error").body(),
                            status_code=500)

    async def authorize(request: Request) -> None:
        refusal = key_refusal(request.headers, api_key)
        if refusal:
            raise refusal

    async def guard_write(request: Request) -> None:
        """State-changing endpoints: same-origin JSON only (403/415), then the key (401)."""
        refusal = write_refusal(request.headers, allowed_origins) or key_refusal(request.headers, api_key)
        if refusal:
            raise refusal

    async def off_loop(fn, *args):
        return await asyncio.get_running_loop().run_in_executor(prep, fn, *args)

    def check_model(name: str) -> None:
        if name != served_name:
            raise APIError(404, f"The model '{name}' does not exist; this server serves '{served_name}'",
                           param="model", code="model_not_found")

    def check_choices(n: int, prompts: int) -> None:
        if n * prompts > max_choices:
            raise P.bad(f"This request asks for {n * prompts} choices (n={n} x {prompts} prompts); this server "
                        f"allows at most {max_choices} per request (pacos serve --max-choices-per-request)",
                        "n", "request_too_large")

    async def read_body(request: Request) -> bytes:
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > max_body_bytes:
            raise _too_large(max_body_bytes)
        body = bytearray()
        try:
            async for chunk in request.stream():
                body += chunk
                if len(body) > max_body_bytes:
                    raise _too_large(max_body_bytes)
        except ClientDisconnect:  # nobody is left to answer; an error response goes nowhere, quietly
            raise APIError(400, "the client disconnected before sending the whole body") from None
        return bytes(body)

    def prepare_chat(raw: bytes) -> tuple[P.GenerationRequest, list[int]]:
        req = P.parse_chat_request(_parse_json(raw))
        check_model(req.model)
        check_choices(req.n, 1)
        try:
            return req, engine.encode(Conversation(req.messages))
        except PacosError as e:
            raise P.bad(str(e), "messages") from None

    def prepare_completion(raw: bytes) -> tuple[P.GenerationRequest, list[list[int]]]:
        req = P.parse_completion_request(_parse_json(raw))
        check_model(req.model)
        check_choices(req.n, len(req.prompts))
        prompts = [p if isinstance(p, list) else engine.encode_text(p) for p in req.prompts]
        vocab = len(engine.tokenizer) if engine.tokenizer is not None else None
        if vocab and any(not 0 <= t < vocab for p in prompts for t in p):
            raise P.bad(f"'prompt' holds a token id outside this model's vocabulary (0..{vocab - 1})", "prompt")
        return req, prompts

    @app.get("/", response_class=HTMLResponse)
    async def index():
        return resources.files("pacos.serve").joinpath("static/chat.html").read_text(encoding="utf-8")

    @app.get("/health")
    async def health(request: Request):
        """Liveness for anyone; the queue figures only for holders of the key (or when there is none)."""
        if api_key is not None and not key_matches(request.headers, api_key):
            return {"status": "ok"}
        return {"status": "ok", "model": served_name, "engine": engine.name, **engine.stats()}

    @app.get("/v1/models", dependencies=[Depends(authorize)])
    async def models():
        return {"object": "list", "data": [P.model_card(served_name, created)]}

    @app.get("/v1/models/{name:path}", dependencies=[Depends(authorize)])
    async def model(name: str):
        check_model(name)
        return P.model_card(served_name, created)

    @app.post("/v1/chat/completions", dependencies=[Depends(guard_write)])
    async def chat_completions(request: Request):
        req, prompt = await off_loop(prepare_chat, await read_body(request))
        gens = start(req, [prompt] * req.n, chat=True)
        rid = P.new_id("chatcmpl")
        if req.stream:
            return _sse(stream_chat(rid, req, gens, len(prompt)))
        texts, finishes = await collect(rid, gens, request)
        return P.chat_response(rid, served_name, texts, finishes, _usage(gens, len(prompt)))

    @app.post("/v1/completions", dependencies=[Depends(guard_write)])
    async def completions(request: Request):
        req, prompts = await off_loop(prepare_completion, await read_body(request))
        # Choices are ordered prompt by prompt, n per prompt (OpenAI's order).
        gens = start(req, [p for p in prompts for _ in range(req.n)], chat=False)
        rid = P.new_id("cmpl")
        prompt_tokens = sum(len(p) for p in prompts)
        if req.stream:
            return _sse(stream_completion(rid, req, gens, prompt_tokens))
        texts, finishes = await collect(rid, gens, request)
        return P.completion_response(rid, served_name, texts, finishes, _usage(gens, prompt_tokens))

    @app.post("/feedback", dependencies=[Depends(guard_write)])
    async def post_feedback(request: Request):
        """From the web page: a response it showed (stored once), optionally with a vote on it."""
        if feedback is None:
            raise APIError(404, "feedback is off on this server (started with --no-feedback)", code="not_found")
        item = await off_loop(lambda raw: _parse_feedback(_parse_json(raw)), await read_body(request))
        try:
            await asyncio.to_thread(feedback.record, model=served_name, revision=engine.revision,
                                    template=engine.template.name if engine.template else "", **item)
        except PacosError as e:
            raise P.bad(str(e)) from None
        return {"ok": True, "response_id": item["response_id"]}

    def start(req: P.GenerationRequest, prompts: list[list[int]], chat: bool) -> list[Stream]:
        samplings = [_choice_sampling(req, engine, ids, i, chat) for i, ids in enumerate(prompts)]  # may 400
        gens: list[Stream] = []
        try:
            for ids, sampling in zip(prompts, samplings):
                gens.append(engine.start(ids, sampling, stops=req.stop, template=engine.template if chat else None,
                                        ignore_eos=req.ignore_eos))
        except QueueFull as e:
            for g in gens:
                g.cancel()
            raise APIError(503, f"The server is busy ({e}); retry after {RETRY_AFTER_SECONDS} s", "server_error",
                           code="server_overloaded", headers={"Retry-After": str(RETRY_AFTER_SECONDS)}) from None
        except PacosError as e:
            for g in gens:
                g.cancel()
            raise P.bad(str(e), e.param if isinstance(e, SamplingError) else "messages" if chat else "prompt") from None
        return gens

    async def stream_chat(rid, req, gens, prompt_tokens):
        extra = {"usage": None} if req.include_usage else {}  # OpenAI: null on every chunk but the usage one
        for i in range(len(gens)):
            yield P.chat_chunk(rid, served_name, i, {"role": "assistant", "content": "", "refusal": None}) | extra
        async for i, ev in _merged(gens):
            if ev.finish_reason == "error":
                yield _stream_error(rid, ev)
                return
            yield P.chat_chunk(rid, served_name, i, {"content": ev.delta} if ev.delta else {}, ev.finish_reason) | extra
        if req.include_usage:
            yield P.usage_chunk(rid, served_name, "chat.completion.chunk", _usage(gens, prompt_tokens))

    async def stream_completion(rid, req, gens, prompt_tokens):
        extra = {"usage": None} if req.include_usage else {}
        async for i, ev in _merged(gens):
            if ev.finish_reason == "error":
                yield _stream_error(rid, ev)
                return
            yield P.completion_chunk(rid, served_name, i, ev.delta, ev.finish_reason) | extra
        if req.include_usage:
            yield P.usage_chunk(rid, served_name, "text_completion", _usage(gens, prompt_tokens))

    app.state.engine, app.state.feedback = engine, feedback
    return app


def _parse_json(raw: bytes):
    """The body through the one strict JSON reader: NaN, huge integers, deep nesting, duplicate keys and lone
    surrogates are 400s here, never a crash (or a NaN in the sampler) later."""
    try:
        return strict_json.loads(raw)
    except strict_json.JSONInputError as e:
        raise P.bad(f"the request body is not valid JSON: {e}") from None


def _choice_sampling(req: P.GenerationRequest, engine: Engine, prompt_ids, index: int, chat: bool):
    """This choice's sampling: the budget for this prompt, and seed + index so n choices differ but repeat."""
    from dataclasses import replace

    budget = P.resolve_max_tokens(req, len(prompt_ids), engine.context_length, chat)
    seed = None if req.sampling.seed is None else req.sampling.seed + index
    return replace(req.sampling, max_new_tokens=budget, seed=seed)


def _usage(gens: list[Stream], prompt_tokens: int) -> dict:
    """Prompt tokens counted once per prompt (n choices of one prompt share it), completions summed."""
    return P.usage(prompt_tokens, sum(g.completion_tokens for g in gens))


async def _merged(gens: list[Stream]):
    """(index, event) from every generation as they come; cancels them all if the consumer stops."""
    queue: asyncio.Queue = asyncio.Queue()

    async def pump(i, gen):
        async for ev in gen.aevents():
            await queue.put((i, ev))

    tasks = [asyncio.create_task(pump(i, g)) for i, g in enumerate(gens)]
    try:
        remaining = len(gens)
        while remaining:
            i, ev = await queue.get()
            if ev.finish_reason is not None:
                remaining -= 1
            yield i, ev
    finally:
        for t in tasks:
            t.cancel()
        for g in gens:
            g.cancel()


async def collect(rid: str, gens: list[Stream], request: Request) -> tuple[list[str], list[str]]:
    """Whole texts of every generation; a client that disconnects while waiting cancels them."""
    texts, finishes = [""] * len(gens), [""] * len(gens)

    async def drain():
        async for i, ev in _merged(gens):
            if ev.finish_reason == "error":
                raise _generation_failed(rid, ev)
            texts[i] += ev.delta
            if ev.finish_reason:
                finishes[i] = ev.finish_reason

    task = asyncio.create_task(drain())
    try:
        while not task.done():
            await asyncio.wait([task], timeout=0.5)
            if not task.done() and await request.is_disconnected():
                task.cancel()
                raise asyncio.CancelledError
        task.result()
    finally:
        task.cancel()
        for g in gens:
            g.cancel()
    return texts, finishes


def _sse(chunks) -> StreamingResponse:
    async def body():
        async for chunk in chunks:
            yield "data: " + (chunk if isinstance(chunk, str) else json.dumps(chunk, ensure_ascii=False)) + "\n\n"
        yield "data: [DONE]\n\n"

    return StreamingResponse(body(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def _generation_failed(rid: str, ev) -> APIError:
    """A row the engine ended with an error: only this request fails; the reason goes to the log, not out."""
    log.error("request %s: %s", rid, ev.error or "generation failed")
    return APIError(500, "generation failed for this request; see the server log", "server_error")


def _stream_error(rid: str, ev) -> str:
    return json.dumps(_generation_failed(rid, ev).body())


def _too_large(limit: int) -> APIError:
    return APIError(413, f"The request body is larger than {limit} bytes", code="request_too_large")


def _parse_feedback(body) -> dict:
    if not isinstance(body, dict):
        raise P.bad("the feedback body must be a JSON object")
    rid, response, context = body.get("response_id"), body.get("response"), body.get("context")
    if not isinstance(rid, str) or not rid or len(rid) > 200:
        raise P.bad("'response_id' is required: a string id the page gave the response", "response_id")
    if not isinstance(response, str):
        raise P.bad("'response' is required: the response text", "response")
    if not isinstance(context, list) or not all(isinstance(m, dict) and isinstance(m.get("role"), str) and
                                                isinstance(m.get("content"), str) for m in context):
        raise P.bad("'context' is required: the conversation up to the response, as [{role, content}]", "context")
    params = body.get("params") or {}
    if not isinstance(params, dict):
        raise P.bad("'params' must be an object", "params")
    vote, regen, conv = body.get("vote"), body.get("regenerated_from"), body.get("conversation_id")
    for name, value in (("vote", vote), ("regenerated_from", regen), ("conversation_id", conv)):
        if value is not None and not isinstance(value, str):
            raise P.bad(f"'{name}' must be a string", name)
    return {"response_id": rid, "response": response, "params": params, "vote": vote, "regenerated_from": regen,
            "conversation_id": conv,
            "context": [{"role": m["role"], "content": m["content"]} for m in context]}
