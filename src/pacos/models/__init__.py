"""Model loading (hub id or local path, full or LoRA adapter) and offline model presets."""
