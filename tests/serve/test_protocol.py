"""Request validation and the context budget, as plain functions."""

import pytest

from pacos.serve.protocol import (
    APIError,
    parse_chat_request,
    parse_completion_request,
    resolve_max_tokens,
)

MSGS = [{"role": "developer", "content": "be kind"}, {"role": "user", "content": [{"type": "text", "text": "hi"}]}]


def test_chat_request_maps_onto_sampling_params():
    req = parse_chat_request({"model": "m", "messages": MSGS, "temperature": 0, "top_p": 0.5, "stop": "###",
                              "max_completion_tokens": 7, "n": 2, "seed": 3, "presence_penalty": -1})
    assert [(m.role, m.content) for m in req.messages] == [("system", "be kind"), ("user", "hi")]
    s = req.sampling
    assert (s.temperature, s.top_p, s.seed, s.presence_penalty) == (0.0, 0.5, 3, -1.0)
    assert req.stop == ["###"] and req.max_tokens == 7 and req.n == 2 and not req.stream
    assert parse_chat_request({"model": "m", "messages": MSGS}).sampling.temperature == 1.0  # OpenAI's default


def test_completion_prompt_forms():
    assert parse_completion_request({"model": "m", "prompt": "a"}).prompts == ["a"]
    assert parse_completion_request({"model": "m", "prompt": [1, 2]}).prompts == [[1, 2]]
    assert parse_completion_request({"model": "m", "prompt": ["a", [3]]}).prompts == ["a", [3]]
    for bad in ([], [True], None, 5):
        with pytest.raises(APIError, match="prompt"):
            parse_completion_request({"model": "m", "prompt": bad})


@pytest.mark.parametrize("field, value", [("temperature", True), ("n", 1.5), ("top_k", -1), ("stream", 1),
                                          ("response_format", {"type": "json_object"}), ("tools", [{}])])
def test_bad_fields_name_the_param(field, value):
    with pytest.raises(APIError) as info:
        parse_chat_request({"model": "m", "messages": MSGS, field: value})
    assert info.value.status == 400 and info.value.param == field


def test_context_budget():
    req = parse_completion_request({"model": "m", "prompt": "a"})
    assert resolve_max_tokens(req, 10, 100, chat=False) == 16
    req = parse_chat_request({"model": "m", "messages": MSGS})
    assert resolve_max_tokens(req, 90, 100, chat=True) == 10
    req.max_tokens = 20
    with pytest.raises(APIError, match="10 over the limit") as info:
        resolve_max_tokens(req, 90, 100, chat=True)
    assert info.value.code == "context_length_exceeded" and info.value.param == "messages"
    req.max_tokens = None
    with pytest.raises(APIError, match="1 more than fit"):
        resolve_max_tokens(req, 100, 100, chat=True)
