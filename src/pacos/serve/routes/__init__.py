"""The server's routers: `v1` (the OpenAI API) and `feedback` are behind `access.require_access`; `public`
(the web page and liveness) is open to anyone."""
