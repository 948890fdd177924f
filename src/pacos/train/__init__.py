"""Instruction fine-tuning: tokenization with loss masks, collation, the training loop, LoRA, merge."""
