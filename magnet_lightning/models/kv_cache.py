"""A static-shape key/value cache for autoregressive decoding.

Every layer keeps keys and values [R, H, L, Dh] for all L steps of a generation, allocated once. A step writes its
keys/values at its positions (`index_copy_` with a position tensor) and attends over the whole buffer with a mask of
the positions written so far: no shape depends on the step, so the same step can be captured once in a CUDA graph and
replayed (as MAGNeT's fast path does). Unwritten slots hold zeros and are masked out.

Shapes: R rows (B, or 2B with the CFG null rows), H heads, L capacity in steps, Dh head width, n steps fed at once.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


class KVCache:
    def __init__(self, num_layers: int, rows: int, num_heads: int, capacity: int, head_dim: int,
                 device: torch.device | str, dtype: torch.dtype = torch.float32):
        shape = (rows, num_heads, capacity, head_dim)
        self.keys = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(num_layers)]
        self.values = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(num_layers)]
        self._slots = torch.arange(capacity, device=device)  # [L]

    @classmethod
    def for_model(cls, model, rows: int, capacity: int, dtype: torch.dtype | None = None) -> KVCache:
        """A cache for `model` (a CodebookTransformer) of `rows` rows and `capacity` steps, in `dtype` (default: its
        weights' dtype; give the autocast dtype under autocast)."""
        cfg, weight = model.cfg, model.emb
        return cls(cfg.num_layers, rows, cfg.num_heads, capacity, cfg.dim // cfg.num_heads, weight.device,
                   dtype or weight.dtype)

    def visible(self, positions: torch.Tensor) -> torch.Tensor:
        """Additive attention bias [n, L] in the cache's dtype: 0 on the slots each of the steps `positions` (long [n])
        may attend to (its own and earlier), -inf on the others. Computed once per step for all layers."""
        hidden = self._slots[None, :] > positions[:, None]
        return torch.zeros(hidden.shape, dtype=self.keys[0].dtype, device=hidden.device).masked_fill_(hidden, -math.inf)

    def attend(self, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, positions: torch.Tensor,
               visible: torch.Tensor) -> torch.Tensor:
        """Store k, v [R, H, n, Dh] of steps `positions` (long [n]) in `layer`'s slots and let q [R, H, n, Dh]
        attend over the slots `visible` allows ([n, L] from `visible(positions)`, shared by the layers).
        -> [R, H, n, Dh]."""
        keys, values = self.keys[layer], self.values[layer]
        keys.index_copy_(2, positions, k.to(keys.dtype))
        values.index_copy_(2, positions, v.to(values.dtype))
        return F.scaled_dot_product_attention(q, keys.to(q.dtype), values.to(q.dtype), attn_mask=visible.to(q.dtype))
