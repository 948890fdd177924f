"""The teacher's HTTP transport: every response body capped in size while it streams in, never read whole first.

It sits under the openai client (`http_client=`), so the cap holds for answers and error bodies alike. Bodies
are asked for uncompressed (`Accept-Encoding: identity`) and a compressed one is refused: counting
compressed bytes would let a small gzip body grow past the cap once decoded.
"""

from __future__ import annotations

import importlib

import openai


def _http_library():
    """httpx or httpx2: whichever the installed openai client is built on (openai 1.x/2.x use httpx)."""
    for cls in openai.DefaultAsyncHttpxClient.__mro__:
        root = cls.__module__.split(".")[0]
        if root in ("httpx", "httpx2"):
            return importlib.import_module(root)
    return importlib.import_module("httpx")


http = _http_library()


class ResponseRefused(openai.OpenAIError):
    """A response refused before it was read whole (too large, or compressed). An OpenAIError, so the openai
    client passes it on as it is instead of wrapping it as a connection error and retrying."""


class CappedStream(http.AsyncByteStream):
    def __init__(self, inner, max_bytes: int):
        self._inner, self._max = inner, max_bytes

    async def __aiter__(self):
        total = 0
        async for chunk in self._inner:
            total += len(chunk)
            if total > self._max:
                raise ResponseRefused(f"response over --max-response-bytes {self._max} (stopped reading there)")
            yield chunk

    async def aclose(self) -> None:
        await self._inner.aclose()


class CappedTransport(http.AsyncBaseTransport):
    """Wraps a transport so that no response body over `max_bytes` is read."""

    def __init__(self, max_bytes: int, inner=None):
        self.max_bytes = max_bytes
        # No connection limit here: the Teacher's --concurrency slots bound the requests in flight, and a pool
        # wait would eat into an attempt's deadline.
        self._inner = inner or http.AsyncHTTPTransport(limits=http.Limits(max_connections=None))

    async def handle_async_request(self, request):
        request.headers["Accept-Encoding"] = "identity"
        response = await self._inner.handle_async_request(request)
        encoding = response.headers.get("content-encoding", "").strip().lower()
        length = response.headers.get("content-length", "").strip()
        problem = None
        if encoding not in ("", "identity"):
            problem = f"a compressed response ({encoding[:40]}) although identity was asked for"
        elif length.isdigit() and (len(length) > 18 or int(length) > self.max_bytes):
            problem = f"a response of {length[:20]} bytes, over --max-response-bytes {self.max_bytes}"
        if problem:
            await response.aclose()
            raise ResponseRefused(problem)
        response.stream = CappedStream(response.stream, self.max_bytes)
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


def capped_http_client(max_bytes: int, timeout: float):
    """An HTTP client for `openai.AsyncOpenAI(http_client=...)` with the openai defaults and the size cap."""
    return openai.DefaultAsyncHttpxClient(transport=CappedTransport(max_bytes), timeout=timeout)
