"""The memory plan of a fine-tuning run, per device, from the model's config alone: what each GPU would hold.

Pure arithmetic on plain values (no torch); `pacos train --dry-run` reads config.json, fills `ModelShape`
and `Setup` from the flags and prints `format_plan`. docs/train_memory.md derives every term and compares
the plan with published runs and with measured CPU peaks.

- Weights, gradients, optimizer state: bytes per parameter as pacos trains (full fine-tuning: fp32 master
  weights whatever the checkpoint's dtype; LoRA: the frozen base in the checkpoint's dtype on a GPU, fp32 on a CPU;
  torch AdamW's two moments in the parameters' dtype, LoRA adapters in fp32 as peft keeps them); divided by
  the device count under FSDP full_shard, whole on every device under DDP (plus DDP's gradient buckets).
- Activations: the tensors autograd keeps for the backward pass, per token and decoder layer, counted for
  transformers' LLaMA decoder (RMSNorm, rotary attention through a fused kernel, SwiGLU MLP): Korthikanti
  et al. 2022's per-layer accounting (their 34·s·b·h without the s² softmax terms of a fused kernel), redone
  for SwiGLU and for frozen layers. With gradient checkpointing only each layer's input is kept, and one
  layer is recomputed at a time in the backward pass.
- Logits: the fp32 log-softmax transformers keeps for the loss and the two fp32 gradients at the start of
  the backward pass (12 bytes per token and vocabulary entry).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from pacos.errors import PacosError

GIB = 1 << 30
MIB = 1 << 20
# The memory nvidia-smi reports for each card (MiB), and whether it computes in bfloat16 (Ampere and newer).
GPUS = {
    "h200": (143771, True),
    "h100-80gb": (81559, True),
    "a100-80gb": (81920, True),
    "a100-40gb": (40960, True),
    "l40s": (46068, True),
    "a6000-48gb": (49140, True),
    "a10g": (23028, True),
    "l4": (23034, True),
    "rtx4090": (24564, True),
    "rtx3090": (24576, True),
    "v100-32gb": (32768, False),
    "v100-16gb": (16384, False),
    "t4": (15360, False),
}
GPU_NAMES = tuple(GPUS)
CUDA_RESERVE = 1 * GIB  # CUDA context, cuBLAS workspace and allocator slack: what no tensor accounts for
NF4_BYTES = 0.5 + 1 / 64 + 4 / (64 * 256)  # 4-bit codes + 8-bit absmax per 64 + fp32 per 256 absmax (QLoRA's DQ)
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
LINEARS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
METHODS = ("full", "lora", "qlora")


@dataclass(frozen=True)
class ModelShape:
    """A LLaMA-style decoder's dimensions, as in its config.json."""

    hidden: int
    layers: int
    heads: int
    intermediate: int
    vocab: int
    kv_heads: int | None = None
    head_dim: int | None = None
    tied: bool = False
    dtype: str = "float32"

    @classmethod
    def from_config(cls, config) -> ModelShape:
        """From a transformers config (or any object with its attribute names)."""
        needed = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "vocab_size")
        missing = [name for name in needed if getattr(config, name, None) is None]
        if missing:
            raise PacosError(f"the memory plan covers LLaMA-style decoders; this config "
                             f"({getattr(config, 'model_type', '?')}) has no {', '.join(missing)}")
        dtype = str(getattr(config, "dtype", None) or getattr(config, "torch_dtype", None) or "float32")
        return cls(hidden=config.hidden_size, layers=config.num_hidden_layers, heads=config.num_attention_heads,
                   intermediate=config.intermediate_size, vocab=config.vocab_size,
                   kv_heads=getattr(config, "num_key_value_heads", None), head_dim=getattr(config, "head_dim", None),
                   tied=bool(getattr(config, "tie_word_embeddings", False)), dtype=dtype.replace("torch.", ""))

    @property
    def q_dim(self) -> int:
        return self.heads * (self.head_dim or self.hidden // self.heads)

    @property
    def kv_dim(self) -> int:
        return (self.kv_heads or self.heads) * (self.head_dim or self.hidden // self.heads)

    def linears(self) -> dict[str, tuple[int, int]]:
        """(in, out) features of each linear layer of one decoder layer."""
        h, i = self.hidden, self.intermediate
        return {"q_proj": (h, self.q_dim), "k_proj": (h, self.kv_dim), "v_proj": (h, self.kv_dim),
                "o_proj": (self.q_dim, h), "gate_proj": (h, i), "up_proj": (h, i), "down_proj": (i, h)}

    @property
    def linear_params(self) -> int:
        return self.layers * sum(a * b for a, b in self.linears().values())

    @property
    def other_params(self) -> int:
        """Embeddings, output layer and norms: what QLoRA keeps unquantized."""
        return self.vocab * self.hidden * (1 if self.tied else 2) + self.hidden * (2 * self.layers + 1)

    @property
    def params(self) -> int:
        return self.linear_params + self.other_params

    @property
    def layer_params(self) -> int:
        return self.linear_params // self.layers + 2 * self.hidden


@dataclass(frozen=True)
class Setup:
    """How the run trains (the `pacos train` flags the plan depends on)."""

    method: str = "full"
    bf16: bool = True
    batch_size: int = 4
    max_len: int = 512
    devices: int = 1
    fsdp: bool = False
    gradient_checkpointing: bool = False
    lora_r: int = 8
    lora_target: str = "q_proj,v_proj"
    lora_dropout: float = 0.05
    device: str = "cuda"  # "cpu": no CUDA context, dropout masks in the activations' dtype (what the CPU check runs)

    @property
    def targets(self) -> tuple[str, ...]:
        if self.lora_target.strip() == "all-linear":
            return LINEARS
        names = tuple(t.strip() for t in self.lora_target.split(",") if t.strip())
        unknown = [n for n in names if n not in LINEARS]
        if unknown:
            raise PacosError(f"--lora-target {','.join(unknown)}: the memory plan knows the LLaMA layers "
                             f"{', '.join(LINEARS)} (or all-linear)")
        return names


@dataclass(frozen=True)
class Term:
    name: str
    bytes: float
    note: str = ""


@dataclass
class MemoryPlan:
    model: ModelShape
    setup: Setup
    precision: str
    trainable: int
    terms: list[Term] = field(default_factory=list)
    layer_activations: float = 0.0  # bytes per token one decoder layer keeps for the backward pass

    @property
    def total(self) -> float:
        return sum(t.bytes for t in self.terms)

    @property
    def paged(self) -> float:
        return sum(t.bytes for t in self.terms if t.name.startswith("optimizer") and "paged" in t.note)

    def verdict(self, gpu: str) -> tuple[bool, str]:
        """(fits, one line) on `gpu`, a name from GPUS."""
        capacity = gpu_memory(gpu)
        margin = capacity - self.total
        if margin >= 0:
            return True, f"fits on {gpu} ({capacity / GIB:.1f} GiB): {margin / GIB:.1f} GiB to spare per device"
        if self.paged and margin + self.paged >= 0:
            return True, (f"fits on {gpu} ({capacity / GIB:.1f} GiB) with {-margin / GIB:.1f} GiB of the paged "
                          "optimizer state in CPU memory")
        return False, f"does not fit on {gpu} ({capacity / GIB:.1f} GiB): {-margin / GIB:.1f} GiB short per device"

    def as_dict(self, gpu: str | None = None) -> dict:
        out = {"precision": self.precision, "params": self.model.params, "trainable_params": self.trainable,
               "devices": self.setup.devices, "fsdp": self.setup.fsdp, "method": self.setup.method,
               "gradient_checkpointing": self.setup.gradient_checkpointing, "batch_size": self.setup.batch_size,
               "max_len": self.setup.max_len, "per_device_bytes": {t.name: round(t.bytes) for t in self.terms},
               "notes": {t.name: t.note for t in self.terms if t.note}, "total_bytes": round(self.total)}
        if gpu:
            fits, line = self.verdict(gpu)
            out.update(gpu=gpu, gpu_bytes=gpu_memory(gpu), fits=fits, verdict=line)
        return out


def gpu_memory(name: str) -> int:
    if name not in GPUS:
        raise PacosError(f"--gpu {name!r}: unknown GPU; known: {', '.join(GPU_NAMES)}")
    return GPUS[name][0] * MIB


def gpu_bf16(name: str | None) -> bool:
    """Whether `name` computes in bfloat16 (no GPU named: assume a current one, which does)."""
    if name is None:
        return True
    gpu_memory(name)  # an unknown name: the error listing the known ones
    return GPUS[name][1]


def plan_memory(model: ModelShape, setup: Setup) -> MemoryPlan:
    """What each device holds at the peak of a training step (the start of the backward pass)."""
    if setup.method not in METHODS:
        raise PacosError(f"method must be one of {', '.join(METHODS)} (got {setup.method!r})")
    if model.dtype not in DTYPE_BYTES:
        raise PacosError(f"the model's weights are {model.dtype}; the plan knows {', '.join(DTYPE_BYTES)}")
    if setup.method == "full" or (setup.method == "lora" and setup.device == "cpu"):
        model = replace(model, dtype="float32")  # as pacos.train.loop.weights_dtype loads them
    weight_bytes = DTYPE_BYTES[model.dtype]
    lora = setup.method != "full"
    lora_params = _lora_params(model, setup) if lora else 0
    trainable = lora_params if lora else model.params
    shard = setup.devices if setup.fsdp else 1
    half = "bf16" if setup.bf16 else "fp16"
    # The activations' dtypes: c for what matmuls, attention and the MLP produce, r for the residual stream
    # (the embeddings' dtype; FSDP's mixed precision gathers bf16 parameters, so its residual is bf16 too).
    compute = 2 if (setup.bf16 or weight_bytes == 2 or setup.method == "qlora") else 4
    residual = 2 if (weight_bytes == 2 or (setup.fsdp and setup.bf16)) and setup.method != "qlora" else 4
    autocast = weight_bytes == 4 and setup.bf16 and not setup.fsdp and setup.method != "qlora"
    terms = []
    if setup.method == "qlora":
        lora_bytes = 2 if setup.bf16 else 4  # the QLoRA recipe keeps the adapters in bf16 when computing in bf16
        precision = f"QLoRA: NF4 base with double quantization, {half} compute, LoRA in {'bf16' if lora_bytes == 2 else 'fp32'}"
        embeddings = model.vocab * model.hidden * (1 if model.tied else 2)
        terms += [Term("weights", model.linear_params * NF4_BYTES + embeddings * lora_bytes
                       + (model.other_params - embeddings) * 4,
                       f"{model.linear_params / 1e9:.2f}B linear weights in NF4 ({NF4_BYTES:.3f} B each), "
                       f"embeddings and output layer in {'bf16' if lora_bytes == 2 else 'fp32'}, norms in fp32"),
                  Term("dequantized weight", 2 * max(a * b for a, b in model.linears().values()),
                       "one linear layer's weight unpacked for its matmul"),
                  Term("LoRA weights", lora_params * lora_bytes, f"{lora_params:,} parameters"),
                  Term("gradients", lora_params * lora_bytes, "LoRA parameters only"),
                  Term("optimizer", lora_params * 8, "paged AdamW 32-bit: two fp32 moments, paged (bitsandbytes)")]
    elif lora:
        precision = f"frozen {model.dtype} base, LoRA in fp32, {'bf16' if compute == 2 else 'fp32'} compute"
        terms += [Term("weights", model.params * weight_bytes, f"frozen base in {model.dtype}"),
                  Term("LoRA weights", lora_params * 4, f"{lora_params:,} parameters in fp32 (peft)"),
                  Term("gradients", lora_params * 4, "LoRA parameters only"),
                  Term("optimizer", lora_params * 8, "AdamW: two fp32 moments")]
    else:
        precision = _precision_name(setup.bf16)
        moments = "two fp32 moments" if weight_bytes == 4 else f"two {model.dtype} moments (torch AdamW)"
        note = f" / {shard} devices (FSDP full_shard)" if shard > 1 else ""
        terms += [Term("weights", model.params * weight_bytes / shard,
                       f"{model.dtype}" + (" (the master weights)" if autocast else "") + note),
                  Term("gradients", model.params * weight_bytes / shard, f"{model.dtype}{note}"),
                  Term("optimizer", model.params * 2 * weight_bytes / shard, f"AdamW: {moments}{note}")]
        if shard > 1:  # each device gathers a layer (and prefetches the next) in bf16, plus the root module
            gathered = 2 * (2 * model.layer_params + model.other_params - 2 * model.hidden * model.layers)
            terms.append(Term("FSDP gathered", gathered + 2 * model.layer_params,
                              "two decoder layers, embeddings and output layer unsharded in bf16, one layer's "
                              "gradient before reduce-scatter"))
        elif setup.devices > 1:
            terms.append(Term("DDP buckets", model.params * weight_bytes, "DDP's copy of the gradients"))
    if autocast:
        terms.append(Term("bf16 weight copies", (model.linear_params + model.vocab * model.hidden) * 2,
                          "autocast's bf16 casts of the linear weights, kept for the backward pass"))
    if lora and setup.devices > 1 and not setup.fsdp:
        terms.append(Term("DDP buckets", lora_params * (2 if setup.method == "qlora" and setup.bf16 else 4),
                          "DDP's copy of the LoRA gradients"))
    tokens = setup.batch_size * setup.max_len
    per_layer = _layer_activations(model, setup, compute, residual, autocast)
    head = _head_activations(model, setup, compute, residual)
    if setup.gradient_checkpointing:
        kept = tokens * (model.layers * residual * model.hidden + head)
        terms.append(Term("activations", kept + tokens * per_layer,
                          f"gradient checkpointing: each layer's input ({residual} B x hidden per token), and "
                          f"one layer recomputed ({per_layer / model.hidden:.1f} B x hidden per token)"))
    else:
        terms.append(Term("activations", tokens * (model.layers * per_layer + head),
                          f"{per_layer / model.hidden:.1f} B x hidden per token and layer, "
                          f"{tokens:,} tokens (batch {setup.batch_size} x {setup.max_len})"))
    terms.append(Term("backward working set", tokens * per_layer,
                      "the gradients of one layer's activations while its backward pass runs"))
    terms.append(Term("logits", tokens * model.vocab * 12,
                      "fp32 log-softmax kept for the loss, and its two gradients"))
    if setup.device == "cuda":
        terms.append(Term("CUDA reserve", CUDA_RESERVE, "CUDA context, cuBLAS workspace, allocator slack"))
    return MemoryPlan(model, setup, precision, trainable, terms, layer_activations=per_layer)


def _precision_name(bf16: bool) -> str:
    return "bf16 mixed precision (fp32 weights, bf16 compute)" if bf16 else "fp32"


def _lora_params(model: ModelShape, setup: Setup) -> int:
    shapes = model.linears()
    return model.layers * sum(setup.lora_r * (shapes[t][0] + shapes[t][1]) for t in setup.targets)


def _layer_activations(model: ModelShape, setup: Setup, c: int, r: int, autocast: bool) -> float:
    """Bytes autograd keeps per token for one decoder layer (transformers' LlamaDecoderLayer).

    RMSNorm upcasts to fp32 and keeps its input (4 B); a trainable norm weight also keeps the normalized
    tensor (r B). The fused attention keeps q, k, v (k and v repeated to every head, as pacos's packed
    attention does) and its output; the MLP keeps gate, silu(gate) and up. A trainable linear layer keeps its
    input (autocast casts it once per layer: q, k, v three times, gate and up twice); a frozen one keeps
    nothing, and a LoRA layer keeps the input of its A matrix and its dropout mask (1 B on CUDA; the input's
    dtype on CPU, where dropout multiplies by a mask tensor). Under QLoRA the 4-bit layers return the fp32
    dtype of their input, so the MLP's tensors are fp32.
    """
    h, i, q = model.hidden, model.intermediate, model.q_dim
    full = setup.method == "full"
    mlp = 4 if setup.method == "qlora" else c
    total = 2 * (4 * h + (r * h if full else 0)) + c * 4 * q + mlp * 3 * i
    if full:
        return total + c * ((3 if autocast else 1) * h + q + (2 if autocast else 1) * h + i)
    shapes = model.linears()
    mask = 0 if setup.lora_dropout == 0 else (1 if setup.device == "cuda" else c)
    saved = {t: shapes[t][0] for t in setup.targets}
    if setup.lora_dropout == 0:  # no dropout: the LoRA layers reading one input share it
        shared = {"q_proj": "attention", "k_proj": "attention", "v_proj": "attention", "gate_proj": "mlp",
                  "up_proj": "mlp"}
        saved = {shared.get(t, t): d for t, d in saved.items()}
    return total + (c + mask) * sum(saved.values())


def _head_activations(model: ModelShape, setup: Setup, c: int, r: int) -> float:
    """Per token, outside the layers: the final norm and the output layer's input."""
    return 4 * model.hidden + (r * model.hidden + c * model.hidden if setup.method == "full" else 0)


def format_plan(plan: MemoryPlan, gpu: str | None = None) -> str:
    s = plan.setup
    lines = [
        f"memory plan per device: {s.method} fine-tuning, {plan.precision}",
        f"  model: {_count(plan.model.params)} parameters ({plan.model.layers} layers, hidden "
        f"{plan.model.hidden}, {plan.model.dtype}); trainable: {plan.trainable:,}",
        f"  devices: {s.devices}{' (FSDP full_shard)' if s.fsdp else ' (DDP)' if s.devices > 1 else ''}; "
        f"batch {s.batch_size} x {s.max_len} tokens per device; gradient checkpointing "
        f"{'on' if s.gradient_checkpointing else 'off'}",
    ]
    width = max(len(t.name) for t in plan.terms)
    for t in plan.terms:
        lines.append(f"  {t.name:<{width}}  {_gib(t.bytes):>10}  {t.note}")
    lines.append(f"  {'total':<{width}}  {_gib(plan.total):>10}")
    if gpu:
        lines.append("  " + plan.verdict(gpu)[1])
    return "\n".join(lines)


def _gib(n: float) -> str:
    return f"{n / GIB:.2f} GiB" if n >= 0.01 * GIB else f"{n / MIB:.1f} MiB" if n >= MIB / 10 else f"{math.ceil(n)} B"


def _count(n: int) -> str:
    """A parameter count as people write it: 6.74B, 25.7M."""
    return f"{n / 1e9:.2f}B" if n >= 1e9 else f"{n / 1e6:.1f}M"
