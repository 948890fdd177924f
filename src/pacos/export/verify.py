"""An export checks itself before it reports success: llama.cpp loads the file, its token ids equal the HF
tokenizer's on fixed strings, and its logits on a fixed prompt agree with the HF model.

Unquantized files must agree tightly (max |logit difference| under a bound per type, top-1 everywhere);
quantized files report top-1 agreement and the KL divergence KL(HF || GGUF) and fail only on non-finite
logits: what quantization costs is measured (`pacos perplexity`, bench/quant.py), not guessed at here.
"""

from __future__ import annotations

from pacos.data.records import Example
from pacos.errors import PacosError
from pacos.prompting.templates import render_alpaca_prompt

PROMPT = render_alpaca_prompt(Example("Give three tips for staying healthy.", "I sleep six hours a night."))
STRINGS = {
    "the Alpaca prompt": PROMPT,
    "unicode": "Ünïcödé: naïve café, 🦙🚀 emoji, Ελληνικά, кириллица, ½ ∑ ≠",
    "code": "def square(x):\n    return x ** 2  # squared\n\tif a != b: print('hi', {\"k\": [1, 2]})\n",
    "Chinese": "列出5种不同的说服性写作技巧。我想在apple工作1314151天～",
    "whitespace": "  two leading spaces,\n\n\ttab, trailing   ",
    "chat markers": "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n",
}
# Largest |logit difference| accepted for an unquantized file, relative to the largest |logit|.
MAX_DIFF = {"f32": 1e-3, "f16": 2e-2, "bf16": 1e-1}
LOGIT_TOKENS = 96  # prompt tokens whose logits are compared


class VerificationError(PacosError):
    pass


def verify_export(path, model, tokenizer, quant: str) -> dict:
    """Checks `path` against the HF `model`/`tokenizer`; returns what was measured, raises on a mismatch."""
    import numpy as np

    from pacos.models.gguf_file import open_llama

    ids = tokenizer(PROMPT)["input_ids"][:LOGIT_TOKENS]
    # The KV cache in f32: the file is checked, not llama.cpp's f16 cache (which alone moves a trained model's
    # logits by ~1e-3 of their range).
    llm = open_llama(path, n_ctx=max(64, len(ids) + 8), logits_all=True, f32_cache=True)
    try:
        tokens_checked = check_tokens(llm, tokenizer)
        llm.reset()
        llm.eval(ids)
        theirs = np.array(llm.scores[: len(ids)], dtype=np.float64)
    finally:
        llm.close()
    ours = hf_logits(model, ids)
    if theirs.shape != ours.shape:
        raise VerificationError(f"llama.cpp returns {theirs.shape[1]} logits per token, the HF model "
                                f"{ours.shape[1]}: the vocabulary size differs")
    if not np.isfinite(theirs).all():
        raise VerificationError(f"llama.cpp's logits on {path} are not finite (NaN/inf)")
    report = {"tokens_checked": tokens_checked, **compare_logits(ours, theirs)}
    bound = MAX_DIFF.get(quant)
    if bound is not None:
        scale = max(1.0, float(np.abs(ours).max()))
        if report["max_abs_diff"] > bound * scale:
            raise VerificationError(
                f"llama.cpp's logits differ from the HF model's by up to {report['max_abs_diff']:.3g} "
                f"(allowed {bound * scale:.3g} for {quant}; top-1 agreement {report['top1_agreement']:.3f}): "
                "the weights were not converted faithfully")
        # A different choice counts only where the HF model's choice is clear (its top-2 margin exceeds the bound).
        top2 = np.sort(ours, axis=-1)[:, -2:]
        clear = (top2[:, 1] - top2[:, 0]) > bound * scale
        flipped = int((clear & (ours.argmax(-1) != theirs.argmax(-1))).sum())
        if flipped:
            raise VerificationError(f"llama.cpp's next-token choice differs from the HF model's at {flipped} of "
                                    f"{len(ours)} prompt positions where the HF choice is clear ({quant})")
    return report


def check_tokens(llm, tokenizer) -> int:
    """llama.cpp's token ids equal the HF tokenizer's on every fixed string; returns how many ids matched."""
    total = 0
    for what, text in STRINGS.items():
        ours = tokenizer(text)["input_ids"]
        theirs = llm.tokenize(text.encode("utf-8"), add_bos=True, special=True)
        if ours != theirs:
            at = next((i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b), min(len(ours), len(theirs)))
            mine, other = ours[at:at + 4], theirs[at:at + 4]
            raise VerificationError(
                f"llama.cpp tokenizes {what} differently from the HF tokenizer from token {at} on: "
                f"HF {mine} {tokenizer.convert_ids_to_tokens(mine)!r} vs llama.cpp {other} "
                f"({len(ours)} vs {len(theirs)} tokens)")
        total += len(ours)
    return total


def hf_logits(model, ids: list[int]):
    import torch

    with torch.inference_mode():
        return model(input_ids=torch.tensor([ids])).logits[0].double().cpu().numpy()


def compare_logits(ours, theirs) -> dict:
    """max |diff|, top-1 agreement and mean KL(ours || theirs) per position (pacos perplexity's own measures,
    on float64 log-softmax)."""
    import numpy as np
    import torch

    from pacos.eval.perplexity import kl_divergence, top1_agreement

    p = torch.from_numpy(np.asarray(ours, dtype=np.float64)).log_softmax(-1)
    q = torch.from_numpy(np.asarray(theirs, dtype=np.float64)).log_softmax(-1)
    return {"max_abs_diff": float(np.abs(ours - theirs).max()),
            "top1_agreement": float(top1_agreement(p, q).double().mean()),
            "kl_divergence": max(0.0, float(kl_divergence(p, q).mean())), "positions": len(ours)}
