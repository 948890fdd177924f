"""Special tokens: the pad-token rule (LLaMA-style tokenizers ship without one, and batching needs one) and
the ids generation stops at."""

from __future__ import annotations

PAD_TOKEN = "[PAD]"


def ensure_pad_token(tokenizer, model=None, add: bool = False) -> str:
    """Give the tokenizer a pad token if it has none; returns what was done.

    `add=True` is Alpaca's way (full fine-tuning): a new `[PAD]` token whose input and output embeddings
    start at the mean of the existing ones (stanford_alpaca smart_tokenizer_and_embedding_resize).
    Otherwise an existing special token is reused (unk, else eos), which keeps the vocabulary — and a
    LoRA adapter — unchanged. Padding never carries loss either way: labels at pad positions are -100.
    """
    if tokenizer.pad_token is not None:
        return f"pad token: {tokenizer.pad_token!r} (the tokenizer's own)"
    if add and model is not None:
        import torch

        old = len(tokenizer)
        tokenizer.add_special_tokens({"pad_token": PAD_TOKEN})
        model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
        with torch.no_grad():
            for emb in (model.get_input_embeddings().weight, model.get_output_embeddings().weight):
                emb[old:] = emb[:old].mean(dim=0, keepdim=True)
        model.config.pad_token_id = tokenizer.pad_token_id
        return f"pad token: added {PAD_TOKEN!r} with mean-of-embeddings init (Alpaca)"
    reuse = tokenizer.unk_token if tokenizer.unk_token not in (None, tokenizer.eos_token) else tokenizer.eos_token
    tokenizer.pad_token = reuse
    if model is not None:
        model.config.pad_token_id = tokenizer.pad_token_id
    return f"pad token: reusing {reuse!r}"


def stop_token_ids(tokenizer, template) -> list[int]:
    """EOS plus the template's end-of-turn marker when the tokenizer has it as a single token."""
    ids = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    if template.turn_end:
        turn_ids = tokenizer(template.turn_end, add_special_tokens=False)["input_ids"]
        if len(turn_ids) == 1 and turn_ids[0] not in ids:
            ids.append(turn_ids[0])
    return ids
