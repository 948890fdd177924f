"""Check a data file and report every bad record as FILE:LINE (JSONL) or FILE[index] (JSON array) with the reason."""

from __future__ import annotations

from pacos.data.formats import check_format, detect_raw, scan_records
from pacos.data.raw_files import DataFileError, Problem, read_raw

__all__ = ["Problem", "validate_file"]


def validate_file(path, fmt: str | None = None, require_output: bool = True) -> list[Problem]:
    """Every problem in the file, in file order; [] when every record loads.

    A file-wide problem (missing, empty, malformed JSON array, undetectable format) is the only one reported,
    since no record can be read past it.
    """
    check_format(fmt)
    try:
        raw = read_raw(path)
        fmt = fmt or detect_raw(raw)
    except DataFileError as e:
        return [e.problem]
    return [problem for _, problem in scan_records(raw, fmt, require_output) if problem]
