"""The key/value cache the batching engine decodes with: transformers' DynamicCache, growing in place.

Kept apart from the step loop (`pacos.infer.batching`), which decides which rows the batch holds; this module
only knows how the rows' keys and values are stored: buffers with room on both sides, and `keys`/`values` as
views of a window of them.
"""

from __future__ import annotations

import inspect
from functools import lru_cache


def growing_cache():
    return _growing_cache_class()()


@lru_cache(maxsize=1)
def _growing_cache_class():
    """A DynamicCache whose layers append into preallocated room instead of re-concatenating every step.

    `DynamicLayer.update` copies the whole cache at each decoded token (torch.cat); with 16 rows that copy
    cost about a quarter of a step on CPU. Here a layer keeps buffers with spare positions on both sides and
    `keys`/`values` are views of a window of them: the engine writes a joining row into its slot and trims
    columns nobody uses by narrowing the window, without copying. Anything that replaces `keys`/`values`
    (growing the batch, compacting it) is noticed and the buffers rebuilt from them at the next update.
    """
    from transformers.cache_utils import Cache, DynamicCache, DynamicLayer

    init_args = len(inspect.signature(DynamicLayer.lazy_initialization).parameters) - 1

    class GrowingLayer(DynamicLayer):
        room = 128  # spare positions at the right end per (re)allocation
        left_room = 64  # and at the left, so a longer prompt joining the batch rarely forces a copy

        def update(self, key_states, value_states, *args, **kwargs):
            if not self.is_initialized:
                # transformers 5 passes the values too; 4.56-4.57 only the keys
                self.lazy_initialization(*(key_states, value_states)[:init_args])
                self.keys, self.values = key_states[..., :0, :], value_states[..., :0, :]
            new = key_states.shape[-2]
            window = self.window()
            if window is None or window[1] + new > self.buffers[0].shape[-2]:
                window = self._reallocate(new)
            start, end = window
            buf = self.buffers
            buf[0][..., end:end + new, :], buf[1][..., end:end + new, :] = key_states, value_states
            self.keys, self.values = buf[0][..., start:end + new, :], buf[1][..., start:end + new, :]
            return self.keys, self.values

        def window(self):
            """(start, end) of `keys`/`values` within the buffers, or None if they were replaced (then the
            next update copies them into new buffers)."""
            buf = getattr(self, "buffers", None)
            if buf is None:
                return None
            for view, whole in ((self.keys, buf[0]), (self.values, buf[1])):
                if (view.shape[:-2] != whole.shape[:-2] or view.stride() != whole.stride()
                        or view.untyped_storage().data_ptr() != whole.untyped_storage().data_ptr()):
                    return None
            step = self.keys.element_size() * self.keys.stride(-2)
            offset, rest = divmod(self.keys.data_ptr() - buf[0].data_ptr(), step)
            if rest or self.values.data_ptr() - buf[1].data_ptr() != offset * step:
                return None
            return offset, offset + self.keys.shape[-2]

        def _reallocate(self, new: int) -> tuple[int, int]:
            cur = self.keys.shape[-2]
            shape = (*self.keys.shape[:-2], self.left_room + cur + new + self.room, self.keys.shape[-1])
            buf = (self.keys.new_zeros(shape), self.values.new_zeros(shape))
            start = self.left_room
            buf[0][..., start:start + cur, :], buf[1][..., start:start + cur, :] = self.keys, self.values
            self.buffers = buf
            self.keys, self.values = buf[0][..., start:start + cur, :], buf[1][..., start:start + cur, :]
            return start, start + cur

        def prepend(self, n: int) -> None:
            """Add `n` zero positions on the left (every row), in the left room when there is enough."""
            import torch

            window = self.window()
            if window is not None and window[0] >= n:
                start, end = window
                for whole in self.buffers:
                    whole[..., start - n:start, :] = 0
                self.keys, self.values = self.buffers[0][..., start - n:end, :], self.buffers[1][..., start - n:end, :]
                return
            pad = (*self.keys.shape[:-2], n, self.keys.shape[-1])
            self.keys = torch.cat([self.keys.new_zeros(pad), self.keys], dim=-2)
            self.values = torch.cat([self.values.new_zeros(pad), self.values], dim=-2)

    class GrowingCache(DynamicCache):
        def __init__(self):
            Cache.__init__(self, layer_class_to_replicate=GrowingLayer)

    return GrowingCache
