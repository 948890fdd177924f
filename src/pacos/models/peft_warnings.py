"""The deprecation peft trips inside transformers 5.x, filtered by its exact message where peft builds a model."""

from __future__ import annotations

import contextlib
import warnings

# peft 0.21's PeftModel.__init__ reads `model.is_gradient_checkpointing`, which transformers 5.x deprecated in
# favour of `is_activation_checkpointing`: every LoRA train, load and merge printed this FutureWarning, which a
# user can do nothing about. Only this message and category are dropped, and only around the peft call.
PEFT_ALIAS_MESSAGE = r"`is_gradient_checkpointing` is deprecated"


@contextlib.contextmanager
def peft_alias_filter():
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=PEFT_ALIAS_MESSAGE, category=FutureWarning)
        yield
