"""The response builders (the openai package's types, dumped with exclude_unset) against OpenAI's schemas,
without a server: what must be null is there as null, what is not set is left out."""

from __future__ import annotations

import json

from pacos.serve import responses as R
from pacos.serve.protocol import APIError

from .openai_schemas import assert_conforms

USE = R.usage(3, 4)


def test_plain_bodies_conform():
    chat = R.wire(R.chat_completion("chatcmpl-1", "m", ["a", "b"], ["stop", "length"], USE))
    assert_conforms("CreateChatCompletionResponse", chat)
    assert chat["choices"][1]["message"] == {"role": "assistant", "content": "b", "refusal": None}
    assert chat["usage"] == {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}
    assert "system_fingerprint" not in chat and "service_tier" not in chat
    assert_conforms("CreateCompletionResponse", R.wire(R.completion("cmpl-1", "m", ["x"], ["stop"], USE)))
    assert_conforms("Model", R.wire(R.model_card("m", 1)))
    assert_conforms("ListModelsResponse", R.model_list(["m"], 1))
    assert_conforms("ErrorResponse", APIError(400, "no", param="n").body())
    assert set(APIError(400, "no").body()["error"]) == {"message", "type", "param", "code"}


def test_chunks_conform_with_and_without_usage():
    for usage in (False, True):
        first = R.wire(R.chat_chunk("c", "m", 0, R.first_delta(), include_usage=usage))
        assert first["choices"][0]["delta"] == {"role": "assistant", "content": "", "refusal": None}
        middle = R.wire(R.chat_chunk("c", "m", 0, R.text_delta(""), include_usage=usage))
        assert middle["choices"][0]["delta"] == {}
        last = R.wire(R.chat_chunk("c", "m", 0, R.text_delta("x"), "stop", include_usage=usage))
        text = R.wire(R.completion_chunk("c", "m", 0, "x", None, include_usage=usage))
        for chunk in (first, middle, last):
            assert_conforms("CreateChatCompletionStreamResponse", chunk)
            assert ("usage" in chunk) is usage and chunk.get("usage") is None
        assert_conforms("CreateCompletionStreamResponse", text)
        assert text["choices"][0]["finish_reason"] is None and ("usage" in text) is usage
    for chunk, schema in ((R.chat_usage_chunk("c", "m", USE), "CreateChatCompletionStreamResponse"),
                          (R.completion_usage_chunk("c", "m", USE), "CreateCompletionStreamResponse")):
        body = json.loads(R.wire_json(chunk))  # what the event stream carries
        assert_conforms(schema, body)
        assert body["choices"] == [] and body["usage"]["total_tokens"] == 7
