"""Loading weights with one copy of the model in memory, in a requested dtype, straight onto a requested device.

The reference path (and ours until issue 18) read the whole file into memory, built the model with its random
initialisation, then copied the file's tensors into it: two copies of the weights and seconds of random numbers.
Here instead:

1. the file is memory-mapped (`read_torch_file`: `torch.load(mmap=True, weights_only=True)` for zip-format torch
   files, a fallback to a plain read for the legacy format; safetensors exports go through `safe_open`), so a tensor
   costs nothing until it is read;
2. the model is built with its parameters on the meta device (`empty_model`): no storage, no initialisation. Its
   buffers are built for real, so the non-persistent ones (`_code_offsets`, anything computed in `__init__`) hold
   their computed values, not meta placeholders;
3. each tensor is converted once, into the requested dtype and onto the requested device, and assigned to the
   model (`assign_weights`: `load_state_dict(assign=True, strict=True)`). The model never aliases the file's mapping
   (the file may be rewritten later by a training run), and the mapped pages already converted are handed back to
   the kernel as the load goes (`madvise(MADV_DONTNEED)` on Linux), so the peak is about the model's size in the
   requested dtype plus the largest tensor.

Floating-point weights take the requested dtype (default float32, bit-identical to the copying loader); integer
tensors keep theirs.
"""

from __future__ import annotations

import ctypes
import os
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import torch
from safetensors import safe_open
from torch import nn

from magnet_lightning.config import ModelConfig
from magnet_lightning.errors import CheckpointError
from magnet_lightning.models.base import CodebookTransformer
from magnet_lightning.models.registry import build_model

DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
          "float16": torch.float16, "fp16": torch.float16}
"""The dtype names a loader takes (a torch.dtype works too)."""
_MADV_DONTNEED = 4


def resolve_dtype(dtype: str | torch.dtype | None) -> torch.dtype:
    """None -> float32 (what training writes and the reference computes in); a name of DTYPES or a torch dtype."""
    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype):
        if dtype not in DTYPES.values():
            raise ValueError(f"dtype {dtype}: choose one of float32, bfloat16, float16")
        return dtype
    if str(dtype) not in DTYPES:
        raise ValueError(f"dtype {dtype!r}: choose one of {sorted(DTYPES)}")
    return DTYPES[str(dtype)]


def read_torch_file(path: str | os.PathLike) -> object:
    """`torch.load(path, weights_only=True)` memory-mapped (tensors read on first access); a legacy (non-zip)
    torch file, which cannot be mapped, is read whole."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError as err:
        if "zip" not in str(err).lower():  # torch says "mmap can only be used with files saved with ... zipfile"
            raise
        return torch.load(path, map_location="cpu", weights_only=True)


def _to_meta(_module: nn.Module, _name: str, param: nn.Parameter | None) -> nn.Parameter | None:
    if param is None or param.is_meta:
        return None
    return nn.Parameter(param.to("meta"), requires_grad=param.requires_grad)


@contextmanager
def parameters_on_meta() -> Iterator[None]:
    """Every parameter registered inside the block lives on the meta device (no storage; initialisers are no-ops);
    buffers and everything else are built as usual."""
    handle = torch.nn.modules.module.register_module_parameter_registration_hook(_to_meta)
    try:
        yield
    finally:
        handle.remove()


def empty_model(family: str, cfg: ModelConfig, delays: Sequence[int] | None = None) -> CodebookTransformer:
    """The model of `family` with meta parameters and real buffers: what `assign_weights` fills."""
    with parameters_on_meta():
        return build_model(family, cfg, delays)


class MappedPages:
    """The file mappings of this process that hold some given CPU tensors (Linux: /proc/self/maps), whose resident
    pages can be handed back to the kernel. Only for freshly loaded, never written tensors: a page read again after
    it is handed back faults in again from the file. Elsewhere (no /proc) it does nothing."""

    def __init__(self, tensors: Iterable[torch.Tensor]):
        self.ranges: list[tuple[int, int]] = []
        maps = Path("/proc/self/maps")
        if not sys.platform.startswith("linux") or not maps.is_file():
            return
        mapped = []
        for line in maps.read_text().splitlines():
            fields = line.split(maxsplit=5)
            if len(fields) == 6 and fields[4] != "0" and fields[5].startswith("/"):  # a file (inode, path)
                start, end = (int(x, 16) for x in fields[0].split("-"))
                mapped.append((start, end))
        pointers = [t.data_ptr() for t in tensors if t.device.type == "cpu" and t.numel()]
        self.ranges = [(s, e) for s, e in mapped if any(s <= p < e for p in pointers)]
        self._madvise = ctypes.CDLL(None, use_errno=True).madvise if self.ranges else None
        self._page = os.sysconf("SC_PAGE_SIZE") if self.ranges else 4096

    def _drop(self, start: int, end: int) -> None:
        if end > start:
            self._madvise(ctypes.c_void_p(start), ctypes.c_size_t(end - start), _MADV_DONTNEED)

    def release(self, tensor: torch.Tensor | None = None) -> None:
        """Hand back the whole pages under `tensor` (one of the mapped ones; others are left alone), or with no
        tensor every page of the mappings."""
        if tensor is None:
            for start, end in self.ranges:
                self._drop(start, end)
            return
        if tensor.device.type != "cpu" or not tensor.is_contiguous():
            return
        first, last = tensor.data_ptr(), tensor.data_ptr() + tensor.nbytes
        if any(s <= first and last <= e for s, e in self.ranges):
            page = self._page
            self._drop(-(-first // page) * page, last // page * page)


def _convert(value: torch.Tensor, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """A new tensor of `value`'s data in `dtype` (floating point only) on `device`; never a view of `value`."""
    target = dtype if value.is_floating_point() else value.dtype
    return value.to(device=device, dtype=target, copy=True)


def assign_weights(model: nn.Module, state: Mapping[str, torch.Tensor], dtype: str | torch.dtype | None = None,
                   device: str | torch.device | None = None, source: str = "the checkpoint") -> nn.Module:
    """Fill `model` (from `empty_model`) with `state` (its state_dict names; exactly its keys), each tensor converted
    once into `dtype` (default float32) on `device` (default cpu). The model's other buffers move to `device`.
    Tensors of `state` that view a file mapping (read_torch_file, safetensors) must be as loaded (never written):
    their pages are handed back as they are converted. Raises CheckpointError naming `source` for missing or
    unexpected weights or a wrong shape."""
    dtype, device = resolve_dtype(dtype), torch.device(device or "cpu")
    expected = model.state_dict(keep_vars=True)
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    if missing or unexpected:
        raise CheckpointError(f"{source}: missing {missing[:5]} / unexpected {unexpected[:5]} weights")
    for name, ref in expected.items():
        if tuple(state[name].shape) != tuple(ref.shape):
            raise CheckpointError(f"{source}: {name} has shape {tuple(state[name].shape)}, the model's is "
                                  f"{tuple(ref.shape)}")
    pages = MappedPages(state.values())
    pages.release()  # what was read before (tables stacked from the file, say)
    converted = {}
    for name in expected:
        converted[name] = _convert(state[name], dtype, device)
        pages.release(state[name])  # read once: its pages go back to the kernel
    pages.release()
    model.load_state_dict(converted, strict=True, assign=True)
    model.to(device)  # the non-persistent buffers, built on the cpu
    left = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if left:
        raise CheckpointError(f"{source}: {left[:5]} were not filled (still on the meta device)")
    return model


def load_safetensors(path: str | os.PathLike, model: nn.Module, dtype: str | torch.dtype | None = None,
                     device: str | torch.device | None = None) -> nn.Module:
    """Fill `model` (from `empty_model`) from a safetensors file; its tensors are views of the file's mapping until
    each is converted."""
    with safe_open(str(path), framework="pt", device="cpu") as weights:
        state = {name: weights.get_tensor(name) for name in weights.keys()}  # noqa: SIM118  (not a dict)
    return assign_weights(model, state, dtype, device, source=str(path))
