"""Clients of remote OpenAI-compatible models: the teacher of self-instruct, judges, endpoints under evaluation."""
