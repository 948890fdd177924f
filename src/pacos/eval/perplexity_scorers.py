"""Scorers for `pacos perplexity`: given windows of token ids, the float32 logits [len, vocab] at every position,
from a transformers model (an adapter is merged) or a GGUF file through llama.cpp."""

from __future__ import annotations

from typing import Protocol

import torch


class Scorer(Protocol):
    name: str
    tokenizer: object
    trained_template: str | None  # the template the model was fine-tuned with, if recorded
    vocab_size: int
    batch_size: int  # windows `logits` takes at once to good effect

    def logits(self, windows: list[list[int]]) -> list[torch.Tensor]:
        """Per window, its logits [len(window), vocab_size] (float32, on the CPU)."""
        ...


class TransformersScorer:
    """A transformers causal LM; windows of a batch are right-padded and masked, so each row's logits are its own."""

    def __init__(self, ref: str, *, batch_size: int = 1):
        from pacos.models.loading import load_model
        from pacos.prompting.templates import trained_template_name

        self.name, self.batch_size = str(ref), batch_size
        self.model, self.tokenizer = load_model(ref)
        self.trained_template = trained_template_name(ref)
        self.vocab_size = self.model.get_output_embeddings().weight.shape[0]
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.model.to(self.device)

    @torch.inference_mode()
    def logits(self, windows: list[list[int]]) -> list[torch.Tensor]:
        longest = max(len(w) for w in windows)
        ids = torch.zeros(len(windows), longest, dtype=torch.long)
        mask = torch.zeros(len(windows), longest, dtype=torch.long)
        for row, window in enumerate(windows):
            ids[row, :len(window)] = torch.tensor(window)
            mask[row, :len(window)] = 1
        out = self.model(input_ids=ids.to(self.device), attention_mask=mask.to(self.device)).logits
        return [out[row, :len(window)].float().cpu() for row, window in enumerate(windows)]


class LlamaCppScorer:
    """A GGUF file through llama-cpp-python, one window at a time (every position's logits kept)."""

    batch_size = 1

    def __init__(self, path: str, *, ctx: int):
        from pacos.models.gguf_file import (
            gguf_template_name,
            load_gguf_tokenizer,
            open_llama,
        )

        self.name = str(path)
        self.llm = open_llama(path, n_ctx=ctx, logits_all=True)
        self.tokenizer = load_gguf_tokenizer(path)
        self.trained_template = gguf_template_name(path)
        self.vocab_size = self.llm.n_vocab()

    def logits(self, windows: list[list[int]]) -> list[torch.Tensor]:
        import numpy as np

        out = []
        for window in windows:
            self.llm.reset()
            self.llm.eval(window)
            out.append(torch.from_numpy(np.array(self.llm.scores[:len(window)], dtype=np.float32)))
        return out


def open_scorer(ref: str, *, ctx: int, batch_size: int = 1) -> Scorer:
    """The scorer for a model reference: a GGUF file, else a model directory, hub id or LoRA adapter directory."""
    from pacos.models.gguf_file import is_gguf

    if is_gguf(ref):
        return LlamaCppScorer(ref, ctx=ctx)
    return TransformersScorer(ref, batch_size=batch_size)
