"""Seeds owned by their consumers: every random draw of a run is a function of (run seed, purpose, ...), never of the
state that whatever ran before left in a global generator.

Why: a global generator is shared by everything in the process. Building the demo corpus (a DataLoader draws its base
seed from it, a codec's `from_pretrained` initialises weights with it), a callback or a library call consume it, so a
model initialised from it afterwards depends on what happened to run first (cache present or absent, another callback
order). Each consumer here derives its own seed from the run seed and a purpose string:

- `derive_seed(*parts)`: a stable 63-bit seed from plain values (sha256 of their repr; Python's `hash` is salted);
- `seeded(seed)`: a block in which torch's CPU generator (and the current CUDA device's) starts from `seed`; the
  global states are restored on exit, so the block neither depends on nor disturbs what runs around it. For code that
  only takes the global generator (`nn.Module` weight initialisation, `nn.Dropout`).

Consumers elsewhere: `random.Random(derive_seed(...))` / `torch.Generator().manual_seed(derive_seed(...))` where a
generator can be passed (masks, text dropout, the data stream, k-means).
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator
from typing import Any

import torch


def derive_seed(*parts: Any) -> int:
    """A stable 63-bit seed from any tuple of plain values (ints, strings, floats, tuples of them)."""
    return int.from_bytes(hashlib.sha256(repr(parts).encode()).digest()[:8], "little") >> 1


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Run the block with torch's global CPU generator (and the current CUDA device's, if CUDA is initialised) seeded
    with `seed`; their previous states come back on exit."""
    devices = [torch.cuda.current_device()] if torch.cuda.is_available() and torch.cuda.is_initialized() else []
    with torch.random.fork_rng(devices=devices):
        torch.random.default_generator.manual_seed(int(seed))
        if devices:
            torch.cuda.manual_seed(int(seed))  # the current device only
        yield
