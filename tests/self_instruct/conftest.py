"""Fixtures for the Self-Instruct tests; the teacher double lives in teacher_double.py beside this file."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # importlib import mode: make teacher_double importable

from teacher_double import TeacherDouble  # noqa: E402


@pytest.fixture
def teacher():
    double = TeacherDouble()
    yield double
    double.close()
