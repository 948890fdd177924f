"""`pacos export MODEL --out FILE.gguf --quant TYPE`: flags from ExportConfig; the work is in gguf_export."""

from __future__ import annotations

from dataclasses import dataclass

from pacos.export.gguf_export import QUANTS
from pacos.options import add_options, check_fields, from_args, option
from pacos.prompting.templates import TEMPLATE_NAMES


@dataclass
class ExportConfig:
    """`pacos export`: one GGUF file that llama.cpp loads, verified against the HF model."""

    out: str = option(help="the .gguf file to write", nonempty=True, path=True)
    quant: str = option("f16", "tensor type: f32, f16, bf16, or a llama.cpp quantization (q8_0 ~8.5 bits per "
                               "weight, q6_k, q5_k_m, q4_k_m ~4.8, q4_0 ~4.5)", choices=QUANTS)
    template: str | None = option(None, "template to record for `pacos chat FILE.gguf`; default: the one the model "
                                        "was trained with", choices=TEMPLATE_NAMES)
    verify: bool = option(True, "skip the self-check (llama.cpp loads the file; token ids and logits against "
                                "the HF model)")

    def __post_init__(self):
        check_fields(self)


def register(sub) -> None:
    p = sub.add_parser("export", help="export a model or LoRA adapter to a GGUF file for llama.cpp (quantized)")
    p.add_argument("model", metavar="MODEL", help="hub id, model directory or LoRA adapter directory (merged first)")
    add_options(p, ExportConfig)
    p.set_defaults(func=_export)


def _export(args) -> int:
    import sys

    from pacos.export.gguf_export import export_gguf

    config = from_args(ExportConfig, args)
    result = export_gguf(args.model, config.out, config.quant, template=config.template, verify=config.verify,
                         log=lambda msg: print(msg, file=sys.stderr))
    checks = result.checks
    verified = ""
    if checks:
        verified = (f"; verified: {checks['tokens_checked']} token ids equal, logits max |diff| "
                    f"{checks['max_abs_diff']:.2g}, top-1 agreement {checks['top1_agreement']:.3f}, "
                    f"KL {checks['kl_divergence']:.2g}")
    template = f", template {result.template}" if result.template else ""
    print(f"wrote {result.out} ({result.arch}, {result.quant}, {result.size_bytes / 2**20:.1f} MiB{template})"
          f"{verified}")
    return 0
