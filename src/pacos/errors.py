"""The one error type users see: the CLI prints its message as one line and exits non-zero."""


class PacosError(Exception):
    """A problem the user can fix: the message names the file/record/field and says how."""

    exit_code = 2


class DataError(PacosError):
    """A data file is unreadable or holds a bad record."""


class ModelLoadError(PacosError):
    """A model, tokenizer or adapter could not be loaded."""
