"""Serving: the OpenAI-compatible API, the web chat page, and the feedback store its votes go to."""
