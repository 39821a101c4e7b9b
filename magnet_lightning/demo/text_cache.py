"""A memoising wrapper of `TextEncoder` for corpora with a small, fixed set of captions (the CPU demo).

Each distinct caption is encoded alone once (states [S_i, E]) and kept; a batch is assembled by zero-padding to the
longest caption, with mask False on padding. T5 attends only to unmasked positions, so this equals encoding the batch
at once (up to float rounding). None / "" stay the null condition (all-zero states, mask False). Only useful without
word dropout or text augmentation, which make almost every caption new.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch


class CachedTextEncoder:
    """Wraps a TextEncoder: same call contract, (states [B, S, E] float32, mask [B, S] bool); LRU of `max_entries`."""

    def __init__(self, encoder, max_entries: int = 4096):
        self.encoder = encoder
        self.max_entries = max_entries
        self._cache: OrderedDict[str, torch.Tensor] = OrderedDict()
        self.hits = self.misses = 0

    def __deepcopy__(self, memo: dict) -> CachedTextEncoder:
        return self

    @property
    def dim(self) -> int:
        return self.encoder.dim

    @property
    def device(self) -> torch.device:
        return self.encoder.device

    def to(self, device) -> CachedTextEncoder:
        self.encoder.to(device)
        return self

    def _states(self, text: str) -> torch.Tensor:
        if text in self._cache:
            self.hits += 1
            self._cache.move_to_end(text)
            return self._cache[text]
        self.misses += 1
        states, mask = self.encoder([text])
        value = states[0, mask[0]]  # [S_i, E]
        self._cache[text] = value
        if len(self._cache) > self.max_entries:
            self._cache.popitem(last=False)
        return value

    @torch.no_grad()
    def __call__(self, texts: Sequence[str | None]) -> tuple[torch.Tensor, torch.Tensor]:
        rows = [self._states(t) if t else None for t in texts]
        longest = max([r.shape[0] for r in rows if r is not None], default=1)
        states = torch.zeros(len(texts), longest, self.dim, device=self.device)
        mask = torch.zeros(len(texts), longest, dtype=torch.bool, device=self.device)
        for i, row in enumerate(rows):
            if row is not None:
                states[i, : row.shape[0]] = row
                mask[i, : row.shape[0]] = True
        return states, mask
