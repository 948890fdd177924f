"""What every benchmark shares: the machine and commit it ran on, and writing its section of docs/benchmarks.md."""

from __future__ import annotations

import os
import platform
import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def machine() -> str:
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        model = re.search(r"Model name:\s*(.+)", lscpu).group(1).strip()
    except (OSError, AttributeError):
        model = platform.processor() or "unknown CPU"
    return f"{os.cpu_count()}-core CPU, {model}, Python {platform.python_version()}"


def commit() -> str:
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, check=False)
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO, capture_output=True, check=False,
                           text=True).stdout.strip()
    return (out.stdout.strip() or "unknown") + (" (with uncommitted changes)" if dirty else "")


def publish(section: str, markdown: str, write: bool) -> None:
    """Print a benchmark's section; with `write` (its --record), also put it in docs/benchmarks.md."""
    print(markdown)
    if write:
        record(section, markdown)


def record(section: str, markdown: str) -> None:
    """Replace (or append) the section headed `section` of docs/benchmarks.md, leaving the others alone."""
    path = REPO / "docs" / "benchmarks.md"
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    pattern = re.compile(rf"^{re.escape(section)}\n.*?(?=^## |\Z)", re.MULTILINE | re.DOTALL)
    markdown = markdown.rstrip("\n") + "\n\n"
    text = pattern.sub(lambda _: markdown, text) if pattern.search(text) else text.rstrip("\n") + "\n\n" + markdown
    path.parent.mkdir(exist_ok=True)
    path.write_text(text.rstrip("\n") + "\n")
    print(f"recorded in {path}")
