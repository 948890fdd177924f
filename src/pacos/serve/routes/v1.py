"""The OpenAI API under /v1: models, chat completions and completions, plain or streamed.

Every route is behind `require_access` (the router's dependency). A handler reads the body, has it parsed,
checked and tokenized on the prep pool by the engine of the model it names, starts one stream per choice on
that engine, then streams or collects them.
"""

from __future__ import annotations

from dataclasses import replace

from fastapi import APIRouter, Depends, Request

from pacos.errors import PacosError
from pacos.infer.engine import Engine, QueueFull, Stream
from pacos.infer.params import SamplingError, SamplingParams
from pacos.serve import responses as R
from pacos.serve.access import require_access
from pacos.serve.protocol import (
    APIError,
    ChatCompletionRequest,
    CompletionRequest,
    GenerationRequest,
    bad,
    resolve_max_tokens,
)
from pacos.serve.state import ServerState, State
from pacos.serve.streams import collect, merged, sse, stream_error

RETRY_AFTER_SECONDS = 2

router = APIRouter(prefix="/v1", dependencies=[Depends(require_access)])


@router.get("/models")
async def list_models(state: State):
    return R.model_list(state.names, state.created)


@router.get("/models/{name:path}")
async def retrieve_model(name: str, state: State):
    state.engine_for(name)
    return R.wire(R.model_card(name, state.created))


@router.post("/chat/completions")
async def chat_completions(request: Request, state: State):
    req, prompt = await state.off_loop(prepare_chat, state, await state.read_body(request))
    gens = start(state.engines[req.model], req, [prompt] * req.n, chat=True)
    rid = R.new_id("chatcmpl")
    if req.stream:
        return sse(chat_chunks(req.model, rid, req, gens, len(prompt)))
    texts, finishes = await collect(rid, gens, request)
    return R.wire(R.chat_completion(rid, req.model, texts, finishes, total_usage(gens, len(prompt))))


@router.post("/completions")
async def completions(request: Request, state: State):
    req, prompts = await state.off_loop(prepare_completion, state, await state.read_body(request))
    # Choices are ordered prompt by prompt, n per prompt (OpenAI's order).
    gens = start(state.engines[req.model], req, [p for p in prompts for _ in range(req.n)], chat=False)
    rid = R.new_id("cmpl")
    prompt_tokens = sum(len(p) for p in prompts)
    if req.stream:
        return sse(completion_chunks(req.model, rid, req, gens, prompt_tokens))
    texts, finishes = await collect(rid, gens, request)
    return R.wire(R.completion(rid, req.model, texts, finishes, total_usage(gens, prompt_tokens)))


# -- on the prep pool -------------------------------------------------------------------------------------
def prepare_chat(state: ServerState, raw: bytes) -> tuple[ChatCompletionRequest, list[int]]:
    req = ChatCompletionRequest.from_json(raw)
    engine = state.engine_for(req.model)
    state.check_choices(req.n, 1)
    return req, encode_chat(engine, req)


def encode_chat(engine: Engine, req: ChatCompletionRequest) -> list[int]:
    try:
        return engine.encode(req.conversation)
    except PacosError as e:
        raise bad(str(e), "messages") from None


def prepare_completion(state: ServerState, raw: bytes) -> tuple[CompletionRequest, list[list[int]]]:
    req = CompletionRequest.from_json(raw)
    engine = state.engine_for(req.model)
    state.check_choices(req.n, len(req.prompts))
    prompts = [p if isinstance(p, list) else engine.encode_text(p) for p in req.prompts]
    vocab = len(engine.tokenizer) if engine.tokenizer is not None else None
    if vocab and any(not 0 <= t < vocab for p in prompts for t in p):
        raise bad(f"'prompt' holds a token id outside this model's vocabulary (0..{vocab - 1})", "prompt")
    return req, prompts


# -- generation -------------------------------------------------------------------------------------------
def start(engine: Engine, req: GenerationRequest, prompts: list[list[int]], chat: bool) -> list[Stream]:
    """One stream on `engine` per choice; a full queue is a 503 with Retry-After, and starts nothing."""
    samplings = [choice_sampling(req, ids, i, engine.context_length, chat) for i, ids in enumerate(prompts)]  # may 400
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
        raise bad(str(e), e.param if isinstance(e, SamplingError) else "messages" if chat else "prompt") from None
    return gens


def choice_sampling(req: GenerationRequest, prompt_ids, index: int, context: int | None, chat: bool) -> SamplingParams:
    """This choice's sampling: the budget for this prompt, and seed + index so n choices differ but repeat."""
    budget = resolve_max_tokens(req, len(prompt_ids), context, chat)
    sampling = req.sampling
    return replace(sampling, max_new_tokens=budget, seed=None if sampling.seed is None else sampling.seed + index)


def total_usage(gens: list[Stream], prompt_tokens: int):
    """Prompt tokens counted once per prompt (n choices of one prompt share it), completions summed."""
    return R.usage(prompt_tokens, sum(g.completion_tokens for g in gens))


async def chat_chunks(model: str, rid: str, req: ChatCompletionRequest, gens: list[Stream], prompt_tokens: int):
    usage = req.include_usage
    for i in range(len(gens)):
        yield R.chat_chunk(rid, model, i, R.first_delta(), include_usage=usage)
    async for i, ev in merged(gens):
        if ev.finish_reason == "error":
            yield stream_error(rid, ev)
            return
        yield R.chat_chunk(rid, model, i, R.text_delta(ev.delta), ev.finish_reason, include_usage=usage)
    if usage:
        yield R.chat_usage_chunk(rid, model, total_usage(gens, prompt_tokens))


async def completion_chunks(model: str, rid: str, req: CompletionRequest, gens: list[Stream], prompt_tokens: int):
    async for i, ev in merged(gens):
        if ev.finish_reason == "error":
            yield stream_error(rid, ev)
            return
        yield R.completion_chunk(rid, model, i, ev.delta, ev.finish_reason, include_usage=req.include_usage)
    if req.include_usage:
        yield R.completion_usage_chunk(rid, model, total_usage(gens, prompt_tokens))
