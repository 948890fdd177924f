"""What a Hugging Face architecture becomes in GGUF: the llama.cpp architecture, its hyperparameters and its
tensors under llama.cpp's names.

The details that fail silently, each tested: LLaMA's Q and K rows are permuted from HF's rotate-half layout
back to llama.cpp's interleaved RoPE layout (Qwen2 is converted unpermuted, as llama.cpp reads it), K with
the KV head count under GQA; `rope.freq_base` from the config; Llama 3's rope scaling as the `rope_freqs`
factors tensor; an untied `output.weight` is written, a tied one is left out (llama.cpp then reuses
`token_embd`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

from pacos.errors import PacosError

# HF architecture -> (llama.cpp architecture, whether Q/K are permuted)
SUPPORTED = {
    "LlamaForCausalLM": ("llama", True),
    "MistralForCausalLM": ("llama", True),
    "Qwen2ForCausalLM": ("qwen2", False),
}


class UnsupportedArchitecture(PacosError):
    pass


@dataclass(frozen=True)
class Arch:
    hf_name: str
    gguf_name: str  # "llama" or "qwen2"
    permute_qk: bool


def architecture(config) -> Arch:
    names = list(getattr(config, "architectures", None) or [])
    for name in names:
        if name in SUPPORTED:
            return Arch(name, *SUPPORTED[name])
    model_type = getattr(config, "model_type", "?")
    found = ", ".join(names) or f"model_type {model_type}"
    raise UnsupportedArchitecture(f"cannot export {found} to GGUF; supported: {', '.join(SUPPORTED)} "
                                  "(LLaMA 1-3 incl. GQA and rope scaling, Mistral, Qwen2)")


def head_dim(config) -> int:
    return getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads


def rope_parameters(config) -> dict:
    """rope_type, rope_theta and scaling fields, from transformers 5's `rope_parameters` or 4.x's fields."""
    params = dict(getattr(config, "rope_parameters", None) or {})
    if not params:
        params = dict(getattr(config, "rope_scaling", None) or {})
        if "type" in params and "rope_type" not in params:
            params["rope_type"] = params["type"]
        params.setdefault("rope_theta", getattr(config, "rope_theta", 10000.0))
    params.setdefault("rope_type", "default")
    params.setdefault("rope_theta", 10000.0)
    return params


def write_hparams(writer, config, arch: Arch) -> None:
    """The `{arch}.*` keys llama.cpp reads."""
    import gguf

    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(getattr(config, "num_key_value_heads", None) or config.num_attention_heads)
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_vocab_size(config.vocab_size)
    dim = head_dim(config)
    writer.add_rope_dimension_count(dim)
    if dim != config.hidden_size // config.num_attention_heads:
        writer.add_key_length(dim)
        writer.add_value_length(dim)
    rope = rope_parameters(config)
    writer.add_rope_freq_base(float(rope["rope_theta"]))
    kind = str(rope["rope_type"]).lower()
    if kind == "linear":
        writer.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        writer.add_rope_scaling_factor(float(rope["factor"]))
    elif kind == "yarn":
        writer.add_rope_scaling_type(gguf.RopeScalingType.YARN)
        writer.add_rope_scaling_factor(float(rope["factor"]))
        writer.add_rope_scaling_orig_ctx_len(int(rope["original_max_position_embeddings"]))
    elif kind not in ("default", "llama3"):  # llama3 scaling travels as the rope_freqs tensor
        raise UnsupportedArchitecture(f"rope scaling {kind!r} is not supported for GGUF export "
                                      "(supported: none, linear, yarn, llama3)")


def llama3_rope_factors(config) -> list[float] | None:
    """Llama 3's per-frequency rope scaling factors (what llama.cpp's `rope_freqs` tensor holds)."""
    rope = rope_parameters(config)
    if str(rope["rope_type"]).lower() != "llama3":
        return None
    base, dim = float(rope["rope_theta"]), head_dim(config)
    factor = rope.get("factor", 8.0)
    low, high = rope.get("low_freq_factor", 1.0), rope.get("high_freq_factor", 4.0)
    old_context = rope.get("original_max_position_embeddings", 8192)
    low_wavelen, high_wavelen = old_context / low, old_context / high
    factors = []
    for i in range(0, dim, 2):
        wavelen = 2 * math.pi * base ** (i / dim)
        if wavelen < high_wavelen:
            factors.append(1.0)
        elif wavelen > low_wavelen:
            factors.append(float(factor))
        else:
            smooth = (old_context / wavelen - low) / (high - low)
            factors.append(1 / ((1 - smooth) / factor + smooth))
    return factors


def permute(weight, n_head: int):
    """HF's rotate-half Q/K rows -> llama.cpp's interleaved pairs (the inverse of HF's conversion script)."""
    return (weight.reshape(n_head, 2, weight.shape[0] // n_head // 2, *weight.shape[1:])
            .swapaxes(1, 2).reshape(weight.shape))


def gguf_tensors(model, arch: Arch) -> Iterator[tuple[str, object]]:
    """(llama.cpp tensor name, float32 numpy array) for every weight the file needs."""
    import gguf
    import numpy as np

    config = model.config
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH[arch.gguf_name.upper()], config.num_hidden_layers)
    n_head = config.num_attention_heads
    n_kv = getattr(config, "num_key_value_heads", None) or n_head
    tied = bool(getattr(config, "tie_word_embeddings", False))
    for hf_name, tensor in model.state_dict().items():
        if hf_name.endswith("rotary_emb.inv_freq"):
            continue
        if hf_name == "lm_head.weight" and tied:
            continue  # llama.cpp reuses token_embd for a tied head
        name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if name is None:
            raise UnsupportedArchitecture(f"no GGUF name for the tensor {hf_name!r} of {arch.hf_name}")
        data = tensor.detach().float().cpu().numpy()
        if arch.permute_qk and hf_name.endswith(("q_proj.weight", "q_proj.bias")):
            data = permute(data, n_head)
        elif arch.permute_qk and hf_name.endswith(("k_proj.weight", "k_proj.bias")):
            data = permute(data, n_kv)
        yield name, np.ascontiguousarray(data)
    factors = llama3_rope_factors(config)
    if factors is not None:
        yield gguf.TENSOR_NAMES[gguf.MODEL_TENSOR.ROPE_FREQS] + ".weight", np.asarray(factors, dtype=np.float32)
