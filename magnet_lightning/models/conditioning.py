"""Text conditioning: a frozen T5 encoder, and the training-time text dropouts (magnet_spec.md §3.3).

`TextEncoder` is deliberately *not* an `nn.Module`: held by the LightningModule, it never enters checkpoints, DDP's
parameter list, or the EMA copy (its `__deepcopy__` shares it).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from magnet_lightning.utils.provenance import looks_local

log = logging.getLogger(__name__)

# Public T5 encoder sizes, used to build a random-weight stand-in when the weights are not on disk (demo only).
T5_SIZES: dict[str, dict[str, int]] = {
    "t5-small": dict(d_model=512, d_ff=2048, num_layers=6, num_heads=8, d_kv=64),
    "t5-base": dict(d_model=768, d_ff=3072, num_layers=12, num_heads=12, d_kv=64),
    "t5-large": dict(d_model=1024, d_ff=4096, num_layers=24, num_heads=16, d_kv=64),
    "tiny": dict(d_model=32, d_ff=64, num_layers=2, num_heads=4, d_kv=8),  # tests and smoke runs
}
_MIN_VOCAB = 256  # transformers returns a 5-100 entry tokenizer when files are missing offline: treat it as absent.


def _missing_weights_error(name: str, cause: Exception) -> FileNotFoundError:
    if looks_local(name):
        where = (f"Text encoder folder {name!r} not found (looked in {Path(name).expanduser().resolve()}): pass the "
                 "folder that holds the T5's config.json, weights and tokenizer")
    else:
        where = (f"Text encoder {name!r} is not available offline ({type(cause).__name__}: {cause}). Download it "
                 f"once on a machine with network access, e.g. `hf download {name}` (it lands in the Hugging Face "
                 f"cache, $HF_HOME or ~/.cache/huggingface), or save it with "
                 f"`T5EncoderModel.from_pretrained('{name}').save_pretrained(DIR)` plus the tokenizer, and pass DIR")
    return FileNotFoundError(
        f"{where}. Without it, a random-weight stand-in (the audio will not follow the text): "
        "--allow-random-text-encoder (generate, evaluate) or --model.allow_random_text_encoder true (training)."
    )


def _dtype(name: str, device: torch.device) -> torch.dtype:
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}[name]


class TextEncoder:
    """Frozen T5 encoder + tokenizer: texts -> (states [B, S, E] float32, mask [B, S] bool).

    None or empty texts are the null condition: all-zero states with mask False (the CFG "unconditional" input).
    """

    def __init__(self, model: Any, tokenizer: Any, name: str, dtype: str = "auto", max_length: int = 512):
        vocab = len(tokenizer)
        if vocab < _MIN_VOCAB:
            raise ValueError(
                f"tokenizer for {name!r} has only {vocab} entries: transformers returned a blank tokenizer because its "
                "files are missing (HF_HUB_OFFLINE). Real text embeddings would be garbage; download the tokenizer."
            )
        self.model = model.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.name = name
        self.dtype = dtype
        self.max_length = max_length
        self.is_random = False

    def __deepcopy__(self, memo: dict) -> TextEncoder:
        return self  # frozen and shared: weight averaging must not copy a second T5

    @property
    def dim(self) -> int:
        return int(self.model.config.d_model)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def to(self, device: torch.device | str) -> TextEncoder:
        self.model.to(device)
        return self

    @classmethod
    def from_pretrained(
        cls, name_or_path: str, dtype: str = "auto", allow_random: bool = False, cache_dir: str | None = None
    ) -> TextEncoder:
        """Load a T5 encoder by hub name (from the local HF cache when offline) or local directory.

        `random:NAME` (NAME in T5_SIZES) explicitly asks for a random-weight model of that size.

        With `allow_random`, a missing model is replaced by the same architecture with random weights and a byte-level
        tokenizer, with a loud warning (for the CPU demo only; never a silent fallback).
        """
        from transformers import AutoTokenizer, T5EncoderModel

        if name_or_path.startswith("random:"):
            return cls.random(name_or_path.removeprefix("random:"), dtype)
        try:
            tokenizer = AutoTokenizer.from_pretrained(name_or_path, cache_dir=cache_dir)
            if len(tokenizer) < _MIN_VOCAB:
                raise OSError(f"tokenizer files for {name_or_path!r} not found (blank tokenizer returned)")
            model = T5EncoderModel.from_pretrained(name_or_path, cache_dir=cache_dir)
        except (OSError, ValueError) as err:
            if not allow_random:
                raise _missing_weights_error(name_or_path, err) from err
            return cls.random(name_or_path, dtype)
        return cls(model, tokenizer, name_or_path, dtype)

    @classmethod
    def random(cls, name: str, dtype: str = "auto") -> TextEncoder:
        """The architecture of `name` (t5-small/base/large) with random weights and a byte-level tokenizer."""
        from transformers import ByT5Tokenizer, T5Config, T5EncoderModel

        key = name.rstrip("/").split("/")[-1]
        if key not in T5_SIZES:
            raise ValueError(f"no known T5 size for {name!r}: choose one of {sorted(T5_SIZES)}")
        size = T5_SIZES[key]
        log.warning(
            "\n%s\nTEXT ENCODER %r NOT FOUND: using a RANDOM-WEIGHT T5 (%s) with a byte-level tokenizer.\n"
            "Captions still map to distinct states, but this is a demo, not a real model.\n%s",
            "!" * 80, name, size, "!" * 80,
        )
        tokenizer = ByT5Tokenizer()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)  # identical on every rank and every run: ranks must share one text encoder
            model = T5EncoderModel(T5Config(vocab_size=len(tokenizer), **size))
        encoder = cls(model, tokenizer, f"random:{name}", dtype)
        encoder.is_random = True
        return encoder

    def serves(self, name: str | None) -> bool:
        """Whether this encoder is the one a checkpoint names (its random stand-in counts: it is the same seeded
        architecture), so two models can share it."""
        return name is not None and self.name.removeprefix("random:") == name.removeprefix("random:")

    @torch.no_grad()
    def __call__(self, texts: Sequence[str | None]) -> tuple[torch.Tensor, torch.Tensor]:
        device = self.device
        present = [bool(t) for t in texts]
        batch = self.tokenizer(
            [t or "" for t in texts], return_tensors="pt", padding=True, truncation=True, max_length=self.max_length
        ).to(device)
        dtype = _dtype(self.dtype, device)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
            states = self.model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).last_hidden_state
        mask = batch.attention_mask.bool() & torch.tensor(present, device=device)[:, None]
        return states.float() * mask[..., None], mask


@dataclass
class TextDropout:
    """Training-time text corruption: word dropout, then classifier-free-guidance (condition) dropout."""

    cfg_dropout: float = 0.3
    """Probability of replacing the text by the null condition (0.3 music, 0.1 audio)."""
    word_dropout: float = 0.3
    """Probability of dropping each space-separated word (0.3 music, 0 audio)."""
    per_sample: bool = False
    """Draw the CFG dropout per sample; the reference draws once per micro-batch and drops every sample."""

    def __call__(self, texts: Sequence[str | None], rng: random.Random) -> list[str | None]:
        out: list[str | None] = []
        for text in texts:
            if text and self.word_dropout > 0:
                words = [w for w in text.split(" ") if rng.random() >= self.word_dropout]
                text = " ".join(words)
            out.append(text)
        if self.per_sample:
            return [None if rng.random() < self.cfg_dropout else t for t in out]
        return [None] * len(out) if rng.random() < self.cfg_dropout else out
