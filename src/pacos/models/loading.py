"""Load a model or tokenizer from a local path or a hub id: full weights or a LoRA adapter, clear errors offline."""

from __future__ import annotations

import hashlib
import json
import os
import socket
from pathlib import Path
from urllib.parse import urlparse

from pacos.errors import ModelLoadError
from pacos.models.peft_warnings import peft_alias_filter

ADAPTER_CONFIG = "adapter_config.json"


def is_adapter(ref: str | Path) -> bool:
    return (Path(ref) / ADAPTER_CONFIG).is_file()


def adapter_base(ref: str | Path) -> str:
    """The base model an adapter was trained on, as recorded by peft."""
    config = json.loads((Path(ref) / ADAPTER_CONFIG).read_text())
    base = config.get("base_model_name_or_path")
    if not base:
        raise ModelLoadError(f"{ref}/{ADAPTER_CONFIG} names no base_model_name_or_path")
    return base


def load_tokenizer(ref: str | Path):
    """The tokenizer of a model or adapter directory (adapters save theirs beside the weights)."""
    from transformers import AutoTokenizer

    ref = str(ref)
    if is_adapter(ref) and not (Path(ref) / "tokenizer_config.json").is_file():
        ref = adapter_base(ref)
    return _from_pretrained(AutoTokenizer, ref, "tokenizer")


def load_model(ref: str | Path, *, dtype=None, merge_adapter: bool = True, trainable: bool = False,
               quantization_config=None, device_map=None):
    """(model, tokenizer) from a model directory, hub id or LoRA adapter directory.

    An adapter is loaded onto its base model; with `merge_adapter` its weights are folded in (faster
    inference), otherwise the PeftModel is returned (for further training with `trainable`).
    `quantization_config` and `device_map` go to from_pretrained (QLoRA's 4-bit base on its GPU).
    """
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # per-shard bars for a small model are noise; ours show the real work
    ref = str(ref)
    tokenizer = load_tokenizer(ref)
    given = {"dtype": dtype, "quantization_config": quantization_config, "device_map": device_map}
    kwargs = {key: value for key, value in given.items() if value is not None}
    if is_adapter(ref):
        from peft import PeftModel

        base = _from_pretrained(AutoModelForCausalLM, adapter_base(ref), "model", **kwargs)
        if len(tokenizer) > base.get_input_embeddings().num_embeddings:
            base.resize_token_embeddings(len(tokenizer))
        with peft_alias_filter():
            model = PeftModel.from_pretrained(base, ref, is_trainable=trainable)
        if merge_adapter:
            model = model.merge_and_unload()
        if (Path(ref) / "generation_config.json").is_file():  # saved by `pacos train --lora`
            from transformers import GenerationConfig

            model.generation_config = GenerationConfig.from_pretrained(ref)
    else:
        model = _from_pretrained(AutoModelForCausalLM, ref, "model", **kwargs)
    if not trainable:
        model.eval()
    return model, tokenizer


def check_model_ref(ref: str) -> None:
    """A ModelLoadError for a reference that names a local directory that is not there (no imports, no I/O
    beyond one stat): a path (`./m`, `/m`, `~/m`, `a/b/c`) must exist; `org/name` may be a hub id."""
    ref = str(ref)
    if not Path(ref).expanduser().exists() and (ref.startswith((".", "/", "~")) or ref.count("/") > 1):
        raise ModelLoadError(f"{ref}: no such directory (give a local model directory or a hub id like org/name)")


def _from_pretrained(cls, ref: str, what: str, **kwargs):
    path = Path(ref).expanduser()
    if path.exists():
        try:
            return cls.from_pretrained(str(path), **kwargs)
        except (OSError, ValueError) as e:
            raise ModelLoadError(f"could not load the {what} in {ref}: {first_line(e)}") from None
    check_model_ref(ref)
    # A hub id: the local cache first (fast, works offline), then the hub if it can be reached at all.
    try:
        return cls.from_pretrained(ref, local_files_only=True, **kwargs)
    except (OSError, ValueError):
        pass
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        raise ModelLoadError(f"{ref!r} is not in the local Hugging Face cache and HF_HUB_OFFLINE is set")
    if not _hub_reachable():
        raise ModelLoadError(
            f"{ref!r} is not a local directory and is not cached, and the Hugging Face hub can't be reached "
            "(no network?): download it where there is network, or pass a local path"
        )
    try:
        return cls.from_pretrained(ref, **kwargs)
    except (OSError, ValueError) as e:
        raise ModelLoadError(f"could not load the {what} {ref!r} from the hub: {first_line(e)}") from None


def _hub_reachable(timeout: float = 3.0) -> bool:
    """One quick TCP connect, so an offline machine gets an answer in seconds instead of minutes of retries."""
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname, port), timeout=timeout):
            return True
    except OSError:
        return False


def first_line(e: BaseException) -> str:
    """An exception's message cut to one line: library errors can run to pages."""
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def model_revision(model_ref, model) -> str:
    """The hub commit a model came from, else a short fingerprint of its local weight files (or GGUF file)."""
    commit = getattr(getattr(model, "config", None), "_commit_hash", None)
    if commit:
        return commit
    path = Path(model_ref)
    if path.is_file():
        files = [path]
    elif path.is_dir():
        files = sorted(path.glob("*.safetensors")) + sorted(path.glob("*.bin")) + sorted(path.glob("*config.json"))
    else:
        return ""
    digest = hashlib.sha256()
    for f in files:
        digest.update(f.name.encode())
        with open(f, "rb") as fh:  # head and tail: enough to tell weights apart without reading gigabytes
            digest.update(fh.read(1 << 16))
            fh.seek(max(0, f.stat().st_size - (1 << 16)))
            digest.update(fh.read())
    return digest.hexdigest()[:12]
