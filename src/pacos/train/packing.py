"""Padding-free packing: a batch's records end to end in one row, each attending only to itself.

A packed batch is `DataCollatorWithFlattening`'s: input_ids of the records concatenated, position ids
restarting at 0 for each record, each record's first label -100 (no record learns to predict the next
one's first token) and `cu_seq_lens_q/k`, the record boundaries. The loss is then the one of the padded
batch: Trainer normalises by the trained tokens of the whole optimizer step (`num_items_in_batch`) in both
layouts, and a packed row has exactly the trained tokens of the padded rows.

Keeping attention inside each record: transformers' sdpa and eager paths see the restarting position ids
and build a block-diagonal causal mask, which is exact but costs attention over the whole row (records x
records, most of it masked). `packed_sdpa_attention` instead runs causal sdpa record by record, the cost
of the records alone. Flash-attention models use the boundaries natively. Whatever the attention,
`packing_problem` checks on the real model that a packed record gets the logits it gets alone before
packing is used (`--packing auto`).
"""

from __future__ import annotations

from pacos.errors import PacosError

PACKED_ATTENTION = "pacos_packed_sdpa"
PACKING_MODES = ("auto", "on", "off")
_SWAPPED = {"sdpa", "eager"}  # attentions replaced by the record-by-record one; others keep their own


def packed_sdpa_attention(module, query, key, value, attention_mask, dropout: float = 0.0,
                          scaling: float | None = None, **kwargs):
    """Causal sdpa on each record of a packed row (the boundaries from `cu_seq_lens_q`); else plain sdpa."""
    import torch
    from transformers.integrations.sdpa_attention import repeat_kv, sdpa_attention_forward

    bounds = kwargs.get("cu_seq_lens_q")
    if bounds is None or query.shape[0] != 1 or query.shape[2] != key.shape[2]:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      **kwargs)
    groups = getattr(module, "num_key_value_groups", 1)
    key, value = repeat_kv(key, groups), repeat_kv(value, groups)
    bounds = bounds.tolist()
    out = torch.cat([
        torch.nn.functional.scaled_dot_product_attention(
            query[:, :, a:b], key[:, :, a:b], value[:, :, a:b], dropout_p=dropout, scale=scaling, is_causal=True)
        for a, b in zip(bounds, bounds[1:])], dim=2)
    return out.transpose(1, 2).contiguous(), None


def _register() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

    if PACKED_ATTENTION not in AttentionInterface._global_mapping:
        AttentionInterface.register(PACKED_ATTENTION, packed_sdpa_attention)
        ALL_MASK_ATTENTION_FUNCTIONS.register(PACKED_ATTENTION, sdpa_mask)  # padded batches: sdpa's own mask


def packed_collator():
    """The padding-free collator (boundaries included, for the attention)."""
    from transformers import DataCollatorWithFlattening

    return DataCollatorWithFlattening(return_flash_attn_kwargs=True)


def padded_collator(tokenizer):
    """The Alpaca recipe's batches: right-padded to the longest record, labels padded with -100."""
    from transformers import DataCollatorForSeq2Seq

    return DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100)


def use_packed_attention(model) -> str:
    """Switch an sdpa/eager model to the record-by-record attention; returns the implementation to restore."""
    before = model.config._attn_implementation
    if before in _SWAPPED:
        _register()
        model.set_attn_implementation(PACKED_ATTENTION)
    return before


def packing_problem(model) -> str | None:
    """None when packing is exact for `model`; else what goes wrong.

    Three random records A, A' (same length, other tokens) and B: B's logits packed after A must equal B's
    logits packed after A' (nothing crosses a record boundary) and B's logits alone (positions restart).
    """
    import torch

    device = next(model.parameters()).device
    vocab = model.get_input_embeddings().num_embeddings
    g = torch.Generator().manual_seed(0)
    a, a2, b = (torch.randint(3, vocab, (n,), generator=g).tolist() for n in (7, 7, 9))
    collate = packed_collator()

    def logits(*records):
        batch = collate([{"input_ids": r} for r in records])
        batch.pop("labels")
        batch = {k: v.to(device) if hasattr(v, "to") else v for k, v in batch.items()}
        with torch.no_grad():
            return model(**batch, use_cache=False).logits[0, -len(b):].float()

    training = model.training
    model.eval()
    try:
        after_a, after_a2, alone = logits(a, b), logits(a2, b), logits(b)
    finally:
        model.train(training)
    scale = 1.0 + alone.abs().max().item()
    if (after_a - after_a2).abs().max().item() > 1e-5 * scale:
        return "a packed record's logits change with the record before it (the attention crosses records)"
    tolerance = 1e-3 if next(model.parameters()).dtype == torch.float32 else 5e-2  # bf16/fp16 weights: coarser
    if (after_a - alone).abs().max().item() > tolerance * scale:
        return "a packed record's logits differ from the record's alone (its positions do not restart)"
    return None


def choose_packing(model, mode: str, log=print) -> tuple[bool, str]:
    """Decide `--packing` for `model`: (packed, the attention implementation to restore after training).

    `auto` packs when `packing_problem` finds none, `on` insists (a PacosError if packing is not exact),
    `off` pads.
    """
    if mode not in PACKING_MODES:
        raise PacosError(f"--packing must be one of {', '.join(PACKING_MODES)} (got {mode!r})")
    before = model.config._attn_implementation
    if mode == "off":
        return False, before
    use_packed_attention(model)
    problem = packing_problem(model)
    if problem is None:
        log(f"packing: on (records end to end, attention within each record: "
            f"{model.config._attn_implementation})")
        return True, before
    restore_attention(model, before)
    if mode == "on":
        raise PacosError(f"--packing on: {problem} with attention {before!r}; train with --packing off")
    log(f"packing: off ({problem} with attention {before!r}); padding to the longest record of each batch")
    return False, before


def restore_attention(model, implementation: str) -> None:
    """Back to the model's own attention (what is saved and served)."""
    if model.config._attn_implementation != implementation:
        model.set_attn_implementation(implementation)
