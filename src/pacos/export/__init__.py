"""Export to GGUF (llama.cpp): convert (`arch`, `vocab`, `chat_templates`), quantize with llama.cpp's own
quantizer (`quantize`), verify against the HF model (`verify`); `gguf_export` runs the pipeline."""
