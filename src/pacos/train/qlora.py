"""QLoRA (Dettmers et al. 2023): the base model in 4-bit NF4 through bitsandbytes, LoRA on top, a paged optimizer.

The QLoRA recipe, as its repository's qlora.py runs it: NF4 with double quantization, bf16 compute where the
GPU has it (else fp16), `prepare_model_for_kbit_training` (frozen base, norms and embeddings in fp32, input
gradients for checkpointing), then the LoRA adapter in bf16 with the embeddings and output layer (fp32
adapters when computing in fp16), and paged AdamW 32-bit. Quantization is transformers' and bitsandbytes'.
"""

from __future__ import annotations

import importlib.util
import os

from pacos.errors import PacosError

OPTIMIZER = "paged_adamw_32bit"  # qlora.py's --optim default, the paper's runs


def qlora_problem(cuda: bool, bitsandbytes: bool) -> str | None:
    """Why --qlora cannot run here, in one line (None when it can)."""
    missing = ([] if cuda else ["a CUDA GPU (this machine has none)"]) + (
        [] if bitsandbytes else ["bitsandbytes (pip install 'pacos[qlora]')"])
    return "--qlora needs " + " and ".join(missing) if missing else None


def check_qlora() -> None:
    """Fail in a second, before any data or model loads, where QLoRA cannot run."""
    import torch

    problem = qlora_problem(torch.cuda.is_available(), importlib.util.find_spec("bitsandbytes") is not None)
    if problem:
        raise PacosError(problem)


def compute_dtype(config, cuda_bf16: bool) -> str:
    """bfloat16 where the GPU has it and --bf16 allows it, else float16 (QLoRA computes in 16 bits)."""
    return "bfloat16" if config.use_bf16(cuda=True, cuda_bf16=cuda_bf16) else "float16"


def local_compute_dtype(config) -> str:
    import torch

    return compute_dtype(config, torch.cuda.is_available() and torch.cuda.is_bf16_supported())


def quantization_config(dtype: str):
    """transformers' BitsAndBytesConfig for QLoRA: 4-bit NF4, double quantization, `dtype` compute."""
    import torch
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=getattr(torch, dtype))


def training_arguments(dtype: str) -> dict:
    """What QLoRA changes in TrainingArguments: the paged optimizer; bf16 autocast only with bf16 compute."""
    return {"optim": OPTIMIZER, "bf16": dtype == "bfloat16"}


def load_quantized(config, dtype: str):
    """(model, tokenizer): the base quantized on this process's GPU, prepared for k-bit training."""
    from peft import prepare_model_for_kbit_training

    from pacos.models.loading import load_model

    device = int(os.environ.get("LOCAL_RANK", "0"))  # DDP: each process quantizes onto its own GPU
    model, tokenizer = load_model(config.model, trainable=True, quantization_config=quantization_config(dtype),
                                  device_map={"": device})
    model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=config.gradient_checkpointing)
    return model, tokenizer


def cast_like_qlora(model, dtype: str) -> None:
    """qlora.py's casts after LoRA: adapters, embeddings and output layer in bf16 when computing in bf16."""
    if dtype != "bfloat16":
        return  # fp16 compute: fp32 adapters (fp16 weights would need a loss scaler)
    import torch

    for name, param in model.named_parameters():
        if param.dtype == torch.float32 and ("lora_" in name or "embed_tokens" in name or "lm_head" in name):
            param.data = param.data.to(torch.bfloat16)
