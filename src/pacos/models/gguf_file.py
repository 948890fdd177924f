"""GGUF files on the reading side: recognise one, check it is whole, read its metadata, rebuild its tokenizer,
and open it with llama.cpp (llama-cpp-python) with one-line errors.

`pacos export` embeds the model's Hugging Face tokenizer (`tokenizer.huggingface.json`, the standard GGUF key,
plus `pacos.tokenizer_config`) and its training template (`pacos.template`), so a GGUF file is prompted with
exactly the token ids the HF model gets. A GGUF made by other tools gets transformers' own GGUF tokenizer
conversion instead.
"""

from __future__ import annotations

import contextlib
import json
import os
import struct
import tempfile
from collections import deque
from functools import lru_cache
from pathlib import Path

from pacos.errors import ModelLoadError, PacosError

MAGIC = b"GGUF"
HF_TOKENIZER_KEY = "tokenizer.huggingface.json"
TOKENIZER_CONFIG_KEY = "pacos.tokenizer_config"
TEMPLATE_KEY = "pacos.template"
INSTALL_HINT = ('needs llama-cpp-python: pip install "pacos[gguf]" (it builds llama.cpp from source, ~10 minutes '
                'on 2 cores; CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_OPENMP=OFF" for a portable build)')


def is_gguf(ref) -> bool:
    """A path to a file that is (or claims by its name to be) GGUF."""
    path = Path(str(ref)).expanduser()
    if str(ref).endswith(".gguf"):
        return True
    if not path.is_file():
        return False
    with open(path, "rb") as f:
        return f.read(4) == MAGIC


def check_gguf(path) -> Path:
    """The path, if it holds a whole GGUF file; otherwise a one-line ModelLoadError saying what is wrong."""
    path = Path(str(path)).expanduser()
    if not path.exists():
        raise ModelLoadError(f"{path}: no such file")
    if not path.is_file():
        raise ModelLoadError(f"{path}: not a regular file")
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(24)
    if len(head) < 24 or head[:4] != MAGIC:
        raise ModelLoadError(f"{path}: not a GGUF file (it does not start with the GGUF magic bytes)")
    version = struct.unpack("<I", head[4:8])[0]
    if version not in (2, 3):
        raise ModelLoadError(f"{path}: GGUF version {version} is not supported (2 and 3 are)")
    reader = _reader(path, size, path.stat().st_mtime_ns)
    end = max((int(t.data_offset) + int(t.n_bytes) for t in reader.tensors), default=0)
    if end > size:
        raise ModelLoadError(f"{path}: truncated GGUF file ({size} bytes, its tensors need {end}); export it again")
    return path


@lru_cache(maxsize=8)
def _reader(path: Path, size: int, mtime: int):
    from gguf import GGUFReader

    try:
        return GGUFReader(path, "r")
    except Exception as e:  # noqa: BLE001  (the gguf reader raises ValueError, IndexError, struct errors...)
        detail = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ModelLoadError(f"{path}: corrupt or truncated GGUF file ({detail[:200]})") from None


def metadata(path) -> dict:
    """The file's key/value metadata: strings, numbers, bools and lists of them (token lists are skipped)."""
    path = check_gguf(path)
    reader = _reader(path, path.stat().st_size, path.stat().st_mtime_ns)
    out = {}
    for name, field in reader.fields.items():
        if name.startswith("GGUF."):
            continue
        with contextlib.suppress(Exception):  # an odd field type: left out rather than failing the read
            out[name] = field.contents()
    return out


def gguf_string(path, key: str) -> str | None:
    path = check_gguf(path)
    reader = _reader(path, path.stat().st_size, path.stat().st_mtime_ns)
    field = reader.get_field(key)
    if field is None:
        return None
    return bytes(field.parts[field.data[0]]).decode("utf-8")


def gguf_template_name(path) -> str | None:
    """The pacos template the model in this file was trained with, if `pacos export` recorded one."""
    return gguf_string(path, TEMPLATE_KEY)


def load_gguf_tokenizer(path):
    """The Hugging Face tokenizer of a GGUF file: the one `pacos export` embedded, else transformers'
    conversion of the GGUF vocabulary."""
    path = check_gguf(path)
    tokenizer_json = gguf_string(path, HF_TOKENIZER_KEY)
    if tokenizer_json is not None:
        from transformers import AutoTokenizer

        config = gguf_string(path, TOKENIZER_CONFIG_KEY)
        with tempfile.TemporaryDirectory(prefix="pacos-gguf-tok-") as tmp:
            Path(tmp, "tokenizer.json").write_text(tokenizer_json, encoding="utf-8")
            if config is not None:
                Path(tmp, "tokenizer_config.json").write_text(config, encoding="utf-8")
            return AutoTokenizer.from_pretrained(tmp)
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    except Exception as e:  # noqa: BLE001
        detail = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ModelLoadError(f"{path}: could not build a tokenizer from its vocabulary ({detail[:200]})") from None


def embedded_tokenizer_files(tokenizer) -> dict[str, str]:
    """{key: text} to write into a GGUF file so `load_gguf_tokenizer` rebuilds `tokenizer` exactly."""
    with tempfile.TemporaryDirectory(prefix="pacos-tok-") as tmp:
        tokenizer.save_pretrained(tmp)
        config = json.loads(Path(tmp, "tokenizer_config.json").read_text(encoding="utf-8"))
        chat = Path(tmp, "chat_template.jinja")
        if chat.is_file() and "chat_template" not in config:
            config["chat_template"] = chat.read_text(encoding="utf-8")
        return {HF_TOKENIZER_KEY: Path(tmp, "tokenizer.json").read_text(encoding="utf-8"),
                TOKENIZER_CONFIG_KEY: json.dumps(config, ensure_ascii=False)}


def physical_cores() -> int:
    """Physical CPU cores available to this process (llama.cpp runs best with one thread per core)."""
    cpus = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else range(os.cpu_count() or 1)
    try:
        cores = {tuple(Path(f"/sys/devices/system/cpu/cpu{cpu}/topology", name).read_text().strip()
                       for name in ("physical_package_id", "core_id")) for cpu in cpus}
    except OSError:
        return max(1, len(cpus))
    return max(1, min(len(cores), len(cpus)))


_LOG: deque[str] = deque(maxlen=20)  # llama.cpp's recent warnings and errors, for our one-line messages
_log_callback = None


def import_llama_cpp():
    """llama_cpp, with its log routed to `_LOG` instead of the terminal (pacos reports failures itself)."""
    global _log_callback
    try:
        import llama_cpp
    except ImportError:
        raise PacosError(f"reading or writing GGUF files {INSTALL_HINT}") from None
    if _log_callback is None:
        @llama_cpp.llama_log_callback
        def keep_problems(level, text, user_data):  # 2 = warning, 3 = error (ggml_log_level)
            if level in (2, 3) and text:
                _LOG.append(text.decode("utf-8", "replace").strip())

        _log_callback = keep_problems  # referenced for as long as llama.cpp may call it
        llama_cpp.llama_log_set(_log_callback, None)
    return llama_cpp


def llama_cpp_said() -> str:
    """llama.cpp's last error or warning line, if it logged one (cleared on reading)."""
    lines = [line for line in _LOG if line]
    _LOG.clear()
    return lines[-1][:200] if lines else ""


def open_llama(path, *, n_ctx: int, logits_all: bool = False, n_seq_max: int = 1, n_threads: int | None = None,
               n_batch: int = 512, vocab_only: bool = False, f32_cache: bool = False):
    """A `llama_cpp.Llama` on the file, quiet, with a one-line error for a missing library or a bad file.
    `f32_cache`: keys and values cached in f32 instead of llama.cpp's default f16 (for exact comparisons)."""
    llama_cpp = import_llama_cpp()
    path = check_gguf(path)
    threads = n_threads or physical_cores()
    try:
        return llama_cpp.Llama(model_path=str(path), n_ctx=n_ctx, logits_all=logits_all, n_seq_max=n_seq_max,
                               n_threads=threads, n_threads_batch=threads, n_batch=min(n_batch, n_ctx),
                               n_ubatch=min(n_batch, n_ctx), vocab_only=vocab_only, verbose=False,
                               **({"type_k": 0, "type_v": 0} if f32_cache else {}))  # 0 = GGML_TYPE_F32
    except Exception as e:  # noqa: BLE001  (llama-cpp-python raises ValueError/RuntimeError on a bad file)
        detail = llama_cpp_said() or (str(e).splitlines()[0] if str(e) else type(e).__name__)
        raise ModelLoadError(f"llama.cpp could not load {path}: {detail[:200]}") from None
