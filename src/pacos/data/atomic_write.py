"""Atomic, crash-safe writing of JSON records: a temp file beside the target, renamed over it when complete."""

from __future__ import annotations

import glob
import json
import os
import re
import secrets
import stat
from pathlib import Path

from pacos.errors import DataError


def write_objects(objects: list[dict], path, as_lines: bool) -> None:
    """Write JSON objects atomically, one per line or as an indented array.

    The objects go to a temp file `.NAME.PID.RANDOM.tmp` in the same folder, which replaces `path` only when
    complete, so a failed write never leaves a partial file. The result has the mode a plain open() would
    give (0666 less the umask), or keeps the mode of the file it replaces. A writer killed mid-write leaves
    its temp file behind; the next write to the same path removes the temp files of writers no longer
    running. Liveness is by pid: a reused pid keeps a stale file until a later write, and writers in other
    pid namespaces (containers) must not share the folder.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_temps(path)
        tmp = path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
        # os.open applies the umask, as open() would; mkstemp would make the file 0600.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except OSError as e:
        raise DataError(f"{path}: cannot write ({e.strerror})") from None
    try:
        with open(fd, "w", encoding="utf-8", newline="\n") as f:
            try:
                os.fchmod(f.fileno(), stat.S_IMODE(os.stat(path).st_mode))
            except FileNotFoundError:
                pass  # a new file: the umask decided
            if as_lines:
                for obj in objects:
                    f.write(json.dumps(obj, ensure_ascii=False) + "\n")
            else:
                json.dump(objects, f, indent=2, ensure_ascii=False)
                f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if isinstance(e, OSError) and e.strerror:
            raise DataError(f"{path}: cannot write ({e.strerror})") from None
        raise


def _remove_stale_temps(path: Path) -> None:
    """Delete `path`'s temp files whose writer process has died (see write_objects)."""
    prefix = f".{path.name}."
    ours = re.compile(re.escape(prefix) + r"(\d+)\.[0-9a-f]{8}\.tmp")  # not another target's (".NAME.x....")
    for tmp in path.parent.glob(f"{glob.escape(prefix)}*.tmp"):
        m = ours.fullmatch(tmp.name)
        if m and not _process_alive(int(m.group(1))):
            tmp.unlink(missing_ok=True)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True  # exists but not ours, or not a pid we can ask about: leave its file alone
    return True
