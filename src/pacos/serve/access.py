"""Who may use the server: the API key, and the same-origin rule that keeps other web pages from writing.

Without a key a server on loopback is still reachable from every page the user's browser opens. A page
can't read the answers (no CORS headers), but a "simple" cross-site POST (text/plain, no preflight) would
still start a generation or store a vote that later becomes training data. So every state-changing
request must be JSON (browsers preflight that cross-site, and we answer no preflight) and, when it comes
from a browser (an Origin header), from the server's own origin or one allowed with --allow-origin.
Clients that are not browsers (curl, the openai package) send no Origin and are not affected.

`require_access` is the FastAPI dependency that applies both: the routers of /v1 and /feedback carry it,
so no route of theirs can forget it.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from urllib.parse import urlsplit

from fastapi import Request

from pacos.serve.protocol import APIError

_DEFAULT_PORTS = {"http": 80, "https": 443}
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})  # the ones that change nothing


def bearer_token(headers) -> str:
    header = headers.get("authorization", "")
    return header[7:] if header.lower().startswith("bearer ") else ""


def key_matches(headers, api_key: str) -> bool:
    return hmac.compare_digest(bearer_token(headers).encode("utf-8", "replace"), api_key.encode())


def key_refusal(headers, api_key: str | None) -> APIError | None:
    if api_key is None or key_matches(headers, api_key):
        return None
    return APIError(401, "Incorrect or missing API key: send 'Authorization: Bearer <key>' with the key given to "
                    "pacos serve --api-key", code="invalid_api_key")


def same_origin(origin: str, host: str | None) -> bool:
    """Whether a browser's Origin names the host:port this request was addressed to (its Host header).
    The scheme is not compared: behind a TLS-terminating proxy the page is https and this server http."""
    try:
        url = urlsplit(origin)
        if url.scheme not in _DEFAULT_PORTS or not url.hostname or not host:
            return False
        served = urlsplit(f"{url.scheme}://{host}")
        default = _DEFAULT_PORTS[url.scheme]
        return (url.hostname, url.port or default) == (served.hostname, served.port or default)
    except ValueError:  # a malformed port or address in either header
        return False


def write_refusal(headers, allowed_origins: frozenset[str] = frozenset()) -> APIError | None:
    """Why a state-changing request may not proceed (403 cross-site, 415 not JSON), or None."""
    origin = headers.get("origin")
    cross_site = headers.get("sec-fetch-site", "").lower() == "cross-site"
    if origin is not None or cross_site:
        allowed = origin is not None and (origin.lower() in allowed_origins or same_origin(origin, headers.get("host")))
        if not allowed:
            return APIError(403, f"Cross-origin request refused: Origin {origin or '(none)'} is not this server's "
                            "own origin; a web page on another site or port may not use this server (start "
                            "pacos serve with --allow-origin ORIGIN to allow one deliberately)",
                            "permission_error", code="cross_origin_forbidden")
    media_type = headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != "application/json":
        return APIError(415, f"Unsupported Content-Type {media_type or '(none)'}: send the body as JSON with "
                        "'Content-Type: application/json'", code="unsupported_media_type")
    return None


@dataclass(frozen=True)
class AccessPolicy:
    """This server's rules: its API key (None: none needed) and the web origins allowed besides its own."""

    api_key: str | None = None
    allowed_origins: frozenset[str] = frozenset()

    def refusal(self, method: str, headers) -> APIError | None:
        """Why a request may not proceed, or None: a state-changing one must be same-origin JSON (403/415),
        then every one needs the key (401)."""
        if method not in SAFE_METHODS:
            refusal = write_refusal(headers, self.allowed_origins)
            if refusal:
                return refusal
        return key_refusal(headers, self.api_key)

    def shows_figures(self, headers) -> bool:
        """Whether /health may show the queue figures: to holders of the key, or to all when there is none."""
        return self.api_key is None or key_matches(headers, self.api_key)


async def require_access(request: Request) -> None:
    """The dependency guarding a router: the app's `AccessPolicy` (`app.state.access`) applied to the request."""
    refusal = request.app.state.access.refusal(request.method, request.headers)
    if refusal:
        raise refusal
