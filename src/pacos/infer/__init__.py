"""Generation with fine-tuned models: batched inference, one-off questions."""
