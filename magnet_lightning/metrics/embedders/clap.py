"""LAION-CLAP (HTSAT audio tower + RoBERTa text tower) as an embedder for CLAP score and FAD.

The paper's CLAP score uses ``music_audioset_epoch_15_esc_90.14.pt`` (HTSAT-base, roberta, 48 kHz, no fusion).
laion_clap reaches the Hugging Face hub in three places (tokenizers at import, ``RobertaModel.from_pretrained``
in the constructor, ``RobertaTokenizer.from_pretrained`` in ``CLAP_Module``). Here:

- ``HF_HUB_OFFLINE=1`` is set before ``import laion_clap`` (without it the import retries for ~11 minutes); if
  huggingface_hub was already imported online, we refuse with instructions instead.
- The RoBERTa text model is built from its config (roberta-base sizes) instead of downloaded: every text weight
  comes from the CLAP checkpoint anyway.
- The tokenizer must be the real roberta-base one (a local folder or the HF cache). Offline, transformers 5
  silently returns an *empty* RoBERTa tokenizer for an uncached repo; we detect it (vocabulary < 1000) and fail.
"""
from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from unittest import mock

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import AudioEmbedder
from .weights import load_checkpoint, resolve_weights

logger = logging.getLogger(__name__)

CLAP_FILE = "music_audioset_epoch_15_esc_90.14.pt"
CLAP_URL = f"https://huggingface.co/lukewys/laion_clap/resolve/main/{CLAP_FILE}"
SAMPLE_RATE = 48_000
MAX_TEXT_TOKENS = 77
MIN_TOKENIZER_VOCAB = 1000
ROBERTA_BASE = dict(vocab_size=50265, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                    intermediate_size=3072, max_position_embeddings=514, type_vocab_size=1, layer_norm_eps=1e-5,
                    pad_token_id=1, bos_token_id=0, eos_token_id=2)
_TRUE = {"1", "true", "yes", "on"}


def ensure_hub_offline() -> None:
    """Make sure huggingface_hub runs offline before laion_clap is imported (set the variable, or refuse)."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() not in _TRUE:
        if "huggingface_hub" in sys.modules:
            from huggingface_hub import constants

            if not constants.HF_HUB_OFFLINE:
                raise RuntimeError(
                    "laion_clap must be imported with HF_HUB_OFFLINE=1 (otherwise its import-time tokenizer look-ups "
                    "retry for minutes), but huggingface_hub is already loaded in online mode. "
                    "Export HF_HUB_OFFLINE=1 before starting Python.")
        logger.warning("Setting HF_HUB_OFFLINE=1 before importing laion_clap.")
        os.environ["HF_HUB_OFFLINE"] = "1"


def import_laion_clap() -> Any:
    ensure_hub_offline()
    import laion_clap

    return laion_clap


def check_tokenizer(tokenizer: Any) -> None:
    """Raise if ``tokenizer`` is the blank RoBERTa tokenizer transformers returns offline for an uncached repo."""
    size = len(tokenizer) if hasattr(tokenizer, "__len__") else getattr(tokenizer, "vocab_size", 0)
    if size < MIN_TOKENIZER_VOCAB:
        raise RuntimeError(
            f"The RoBERTa tokenizer has only {size} tokens: transformers returned an empty tokenizer because "
            "'roberta-base' is not available offline. Download it once (`hf download roberta-base` with "
            "network, which fills the HF cache) or pass tokenizer=PATH to a folder with vocab.json and merges.txt.")


class ByteTokenizer:
    """Byte-level stand-in for the RoBERTa tokenizer, for random-weight CLAP demos only (ids 3 + byte, <s>=0,
    </s>=2, pad=1). Its ids mean nothing to a trained CLAP: never use it with real weights."""

    def __len__(self) -> int:
        return 259

    def __call__(self, texts: Sequence[str], padding: Any = True, truncation: bool = True,
                 max_length: int = MAX_TEXT_TOKENS, return_tensors: str = "pt") -> dict[str, Tensor]:
        ids = torch.ones(len(texts), max_length, dtype=torch.long)
        for row, text in enumerate(texts):
            tokens = [0] + [3 + b for b in text.encode("utf-8")[: max_length - 2]] + [2]
            ids[row, : len(tokens)] = torch.tensor(tokens)
        return {"input_ids": ids, "attention_mask": (ids != 1).long()}


def load_roberta_tokenizer(tokenizer: str | Path | None) -> Any:
    from transformers import RobertaTokenizer

    return RobertaTokenizer.from_pretrained(str(tokenizer) if tokenizer is not None else "roberta-base")


def _read_state_dict(path: Path) -> dict[str, Tensor]:
    """CLAP checkpoint -> model state dict ('module.' prefixes and the position_ids buffer removed)."""
    ckpt = load_checkpoint(path)
    state = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else ckpt
    state = {k.removeprefix("module."): v for k, v in state.items()}
    state.pop("text_branch.embeddings.position_ids", None)
    return state


class ClapEmbedder(AudioEmbedder):
    """audio -> [N, 1, 512] L2-normalised CLAP audio embeddings; ``embed_text(texts) -> [N, 512]``."""

    name = "clap"
    kind = "embedding"

    def __init__(self, clap_module: torch.nn.Module, tokenizer: Callable[..., Any]) -> None:
        super().__init__(SAMPLE_RATE, clap_module.model.joint_embed_shape)
        self.clap = clap_module
        self.tokenizer = tokenizer

    def _frames(self, mono: Tensor) -> Tensor:
        # As audiocraft's CLAPTextConsistencyMetric: the float tensor as it is (use_tensor=True: no int16 round trip;
        # laion_clap crops clips over 10 s at random and repeat-pads shorter ones)
        emb = self.clap.get_audio_embedding_from_data(mono, use_tensor=True)  # [N, D], L2-normalised by laion_clap
        return F.normalize(emb, dim=-1).unsqueeze(1)

    @torch.no_grad()
    def embed_text(self, texts: Sequence[str]) -> Tensor:
        """texts (N) -> L2-normalised text embeddings [N, D] on the embedder's device."""
        tokens = self.tokenizer(list(texts), padding="max_length", truncation=True, max_length=MAX_TEXT_TOKENS,
                                return_tensors="pt")
        data = {"input_ids": tokens["input_ids"], "attention_mask": tokens["attention_mask"]}
        self.clap.eval()
        return F.normalize(self.clap.model.get_text_embedding(data), dim=-1)


def build_clap_module(amodel: str = "HTSAT-base", text_config: dict[str, Any] | None = None,
                      tokenizer: Any = None, enable_fusion: bool = False) -> torch.nn.Module:
    """laion_clap ``CLAP_Module`` with random weights, built offline (RoBERTa from config, no hub access)."""
    laion_clap = import_laion_clap()
    from transformers import RobertaConfig, RobertaModel, RobertaTokenizer

    config = RobertaConfig(**(text_config or ROBERTA_BASE))
    if config.hidden_size != 768:
        raise ValueError("laion_clap's text projection expects a 768-wide RoBERTa (hidden_size=768).")
    # laion_clap calls these two class methods with 'roberta-base'; answer them locally instead of from the hub.
    with mock.patch.object(RobertaModel, "from_pretrained", side_effect=lambda *a, **k: RobertaModel(config)), \
            mock.patch.object(RobertaTokenizer, "from_pretrained", side_effect=lambda *a, **k: tokenizer):
        module = laion_clap.CLAP_Module(enable_fusion=enable_fusion, amodel=amodel, tmodel="roberta", device="cpu")
    return module


def load_clap(checkpoint: str | Path | None = None, tokenizer: Any = None, amodel: str = "HTSAT-base",
              random_weights: bool = False, text_config: dict[str, Any] | None = None,
              check_vocab: bool = True) -> ClapEmbedder:
    """CLAP embedder with the paper's checkpoint (explicit path, ``$MAGNET_CLAP_CKPT`` or the weights dir).

    ``tokenizer``: a tokenizer object, or a path to a roberta-base tokenizer folder, or None for the HF cache.
    ``random_weights=True`` (tests) skips the checkpoint; ``check_vocab=False`` accepts a test tokenizer.
    ``tokenizer="bytes"`` (random weights only) uses :class:`ByteTokenizer` instead of roberta-base's.
    """
    if tokenizer == "bytes" and not random_weights:
        raise ValueError("tokenizer='bytes' is a stand-in for random-weight demos; real CLAP weights need the "
                         "roberta-base tokenizer.")
    path = None if random_weights else resolve_weights(checkpoint, "MAGNET_CLAP_CKPT", CLAP_FILE, CLAP_URL)
    state = None if path is None else _read_state_dict(path)  # read (as data) before building anything
    ensure_hub_offline()
    if tokenizer == "bytes":
        tokenizer, check_vocab = ByteTokenizer(), False
    if tokenizer is None or isinstance(tokenizer, (str, Path)):
        tokenizer = load_roberta_tokenizer(tokenizer)
    if check_vocab:
        check_tokenizer(tokenizer)
    module = build_clap_module(amodel, text_config, tokenizer)
    if state is not None:
        missing, unexpected = module.model.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise RuntimeError(f"{path} does not match CLAP {amodel}/roberta: missing {missing[:5]}..., "
                               f"unexpected {unexpected[:5]}...")
    return ClapEmbedder(module, tokenizer).eval().requires_grad_(False)
