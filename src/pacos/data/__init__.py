"""Records and data files: formats, validation, conversion, statistics, synthetic tasks."""

from pacos.data.records import Conversation, Example, Message, Record

__all__ = ["Conversation", "Example", "Message", "Record"]
