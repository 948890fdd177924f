"""What a model sees: templates, segment tokenization with exact masks, stop strings and ids, the pad-token rule.

Training, inference, serving, data tools and evaluation all build prompts here, so the text a model is
served is the text it was trained on.
"""
