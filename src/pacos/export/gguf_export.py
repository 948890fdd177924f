"""`pacos export`: a model directory, LoRA adapter (merged first) or hub id to one GGUF file llama.cpp runs.

The pipeline: load and merge (pacos.models.loading) -> write f32/f16/bf16 with the `gguf` package
(architecture keys and tensors: `arch`; vocabulary: `vocab`; special ids, template and the embedded HF
tokenizer here) -> quantize with llama.cpp's own quantizer (`quantize`) -> verify against the HF model
(`verify`) -> move into place. Work files live beside the output and are removed; the output appears only
once it has been verified, so a failed or interrupted export never leaves a file that looks finished.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from pacos.errors import PacosError

FLOAT_TYPES = ("f32", "f16", "bf16")
QUANT_TYPES = ("q8_0", "q6_k", "q5_k_m", "q4_k_m", "q4_0")
QUANTS = FLOAT_TYPES + QUANT_TYPES


@dataclass
class ExportResult:
    out: Path
    quant: str
    arch: str
    size_bytes: int
    template: str | None
    checks: dict = field(default_factory=dict)  # what verification measured (see verify.py)


def export_gguf(model_ref: str, out, quant: str = "f16", *, template: str | None = None, verify: bool = True,
                log=print) -> ExportResult:
    """Export `model_ref` to `out` as `quant`; raises PacosError naming what failed (nothing left at `out`)."""
    if quant not in QUANTS:
        raise PacosError(f"unknown --quant {quant!r}; choose one of: {', '.join(QUANTS)}")
    from pacos.models.gguf_file import is_gguf

    if is_gguf(model_ref):
        raise PacosError(f"{model_ref} is already a GGUF file: export from the model directory, adapter or hub id "
                         "it was made from")
    out = Path(out)
    if out.is_dir():
        raise PacosError(f"--out {out} is a directory; give a file name like {out / 'model.gguf'}")
    if quant not in FLOAT_TYPES or verify:
        from pacos.models.gguf_file import import_llama_cpp

        import_llama_cpp()  # before minutes of loading: quantizing and verifying need llama.cpp
    from pacos.export.arch import architecture

    arch = architecture(_config(model_ref))  # an unsupported architecture fails before the weights load
    from pacos.models.loading import load_model

    log(f"loading {model_ref}")
    import torch

    model, tokenizer = load_model(model_ref, dtype=torch.float32)
    template_name = template or _trained_template(model_ref)
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        first = work / ("model.gguf" if quant in FLOAT_TYPES else "model-f32.gguf")
        write_gguf(model, tokenizer, arch, first, quant if quant in FLOAT_TYPES else "f32",
                   template_name=template_name, name=Path(str(model_ref)).name)
        final = first
        if quant not in FLOAT_TYPES:
            from pacos.export.quantize import quantize

            log(f"quantizing to {quant} with llama.cpp")
            final = work / "model.gguf"
            quantize(first, final, quant)
            first.unlink()
        checks = {}
        if verify:
            from pacos.export.verify import verify_export

            log("verifying: llama.cpp loads the file, token ids and logits against the HF model")
            checks = verify_export(final, model, tokenizer, quant)
        os.replace(final, out)
    finally:
        for leftover in work.iterdir():
            leftover.unlink()
        work.rmdir()
    return ExportResult(out, quant, arch.gguf_name, out.stat().st_size, template_name, checks)


def _config(model_ref: str):
    from transformers import AutoConfig

    from pacos.models.loading import adapter_base, first_line, is_adapter

    ref = adapter_base(model_ref) if is_adapter(model_ref) else model_ref
    try:
        return AutoConfig.from_pretrained(str(ref))
    except (OSError, ValueError) as e:
        raise PacosError(f"could not read the model config of {model_ref}: {first_line(e)}") from None


def _trained_template(model_ref: str) -> str | None:
    from pacos.prompting.templates import trained_template_name

    return trained_template_name(model_ref)


def write_gguf(model, tokenizer, arch, path: Path, dtype: str, *, template_name: str | None, name: str) -> None:
    """Write the model as an unquantized GGUF file (`dtype` f32, f16 or bf16; norms and other 1-D tensors
    stay f32, as llama.cpp's converter writes them)."""
    import gguf
    import numpy as np

    from pacos.export.arch import gguf_tensors, write_hparams
    from pacos.export.vocab import build_vocab, write_vocab
    from pacos.models.gguf_file import TEMPLATE_KEY, embedded_tokenizer_files

    config = model.config
    writer = gguf.GGUFWriter(str(path), arch.gguf_name)
    writer.add_name(name)
    writer.add_file_type({"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16,
                          "bf16": gguf.LlamaFileType.MOSTLY_BF16}[dtype])
    write_hparams(writer, config, arch)
    write_vocab(writer, build_vocab(tokenizer, config.vocab_size))
    _write_special_tokens(writer, tokenizer, template_name)
    for key, text in embedded_tokenizer_files(tokenizer).items():
        writer.add_string(key, text)
    if template_name:
        writer.add_string(TEMPLATE_KEY, template_name)
    for tensor_name, data in gguf_tensors(model, arch):
        if dtype == "f16" and data.ndim > 1:
            writer.add_tensor(tensor_name, data.astype(np.float16))
        elif dtype == "bf16" and data.ndim > 1:
            packed = gguf.quants.quantize(data, gguf.GGMLQuantizationType.BF16)
            writer.add_tensor(tensor_name, packed, raw_shape=packed.shape, raw_dtype=gguf.GGMLQuantizationType.BF16)
        else:
            writer.add_tensor(tensor_name, data)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def _write_special_tokens(writer, tokenizer, template_name: str | None) -> None:
    """bos/eos/unk/pad ids, add_bos/add_eos, the chat template; EOS is the template's end of turn when that
    is one token (ChatML's <|im_end|>, Llama 3's <|eot_id|>), so llama.cpp's own tools stop there too."""
    from pacos.export.chat_templates import gguf_chat_template
    from pacos.prompting.special_tokens import stop_token_ids
    from pacos.prompting.templates import get_template

    if tokenizer.bos_token_id is not None:
        writer.add_bos_token_id(tokenizer.bos_token_id)
    if tokenizer.unk_token_id is not None:
        writer.add_unk_token_id(tokenizer.unk_token_id)
    if tokenizer.pad_token_id is not None:
        writer.add_pad_token_id(tokenizer.pad_token_id)
    probe = tokenizer("a")["input_ids"]
    writer.add_add_bos_token(bool(probe) and probe[0] == tokenizer.bos_token_id)
    writer.add_add_eos_token(bool(probe) and probe[-1] == tokenizer.eos_token_id)
    eos = tokenizer.eos_token_id
    try:
        template = get_template(template_name, tokenizer, "conversation")
    except PacosError:
        template = None
    if template is not None:
        stops = stop_token_ids(tokenizer, template)
        turn_end = [i for i in stops if i != eos]
        if turn_end:
            writer.add_eot_token_id(turn_end[0])
            eos = turn_end[0]
    if eos is not None:
        writer.add_eos_token_id(eos)
    chat = gguf_chat_template(template_name, tokenizer)
    if chat:
        writer.add_chat_template(chat)
