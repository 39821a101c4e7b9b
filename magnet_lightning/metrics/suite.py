"""FAD, KL, CLAP and KAD over paired (generated clip, reference clip, caption) items, with the embedders they need.

Shared by the training callback (`magnet_lightning.callbacks.AudioMetricsCallback`) and `evaluation/evaluate.py`.
The embedders are plain attributes of this (non-Module) object, so they never enter a LightningModule's state dict
or DDP's parameters. Each metric is keyed by name and computed by one embedder chosen by registry name:

    fad  -> "vggish" (reference protocol), or "codec" (codec latents, weight-light), or "clap"
    kl   -> "passt"
    clap -> "clap"
    kad  -> the FAD embedder (unless named): kernel audio distance on the same frames

Reference clips given with a key (``update(..., keys=[...])``) are embedded once and their frames cached here, so
FAD and KAD reuse the same reference statistics at every later evaluation of the same items.

Shapes: C channels, L samples, F frames, D embedding width.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from .clap_score import CLAPScore
from .embedders import AudioEmbedder, get_embedder
from .fad import FrechetAudioDistance
from .kad import KernelAudioDistance
from .kl import KLDivergence

logger = logging.getLogger(__name__)

DEFAULT_EMBEDDERS = {"fad": "vggish", "kl": "passt", "clap": "clap", "kad": None}  # kad: the FAD embedder
# Shortest clip each embedder accepts (VGGish: one 0.96 s example + window; PaSST: chunks > 0.15 s).
MIN_SECONDS = {"vggish": 0.975, "passt": 0.16}
_BANNER = "!" * 100


def build_embedder(name: str, allow_random: bool = False, seed: int = 0, **kwargs: Any) -> AudioEmbedder:
    """``get_embedder(name, **kwargs)``; if its weights (or CLAP's tokenizer) are missing and ``allow_random`` is
    set, the same architecture with random weights seeded by ``seed``, announced by a warning banner.

    Random embedders give numbers that only track relative change inside one run (demos, smoke tests).
    """
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)  # any randomly initialised part (test configs) is reproducible too
            return get_embedder(name, **kwargs)
    except (OSError, RuntimeError) as err:
        if not allow_random:
            raise
        reason = err
    logger.warning("\n%s\nRANDOM-WEIGHT %s EMBEDDER: its weights are not available (%s).\nallow_random_embedders=True:"
                   " using the same architecture with random weights (seed %d). Metrics computed with it are NOT "
                   "comparable with any published or other-run number.\n%s", _BANNER, name.upper(),
                   " ".join(str(reason).split()), seed, _BANNER)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        random_kwargs = {k: v for k, v in kwargs.items() if k != "checkpoint"}
        try:
            embedder = get_embedder(name, random_weights=True, **random_kwargs)
        except RuntimeError:
            if name != "clap":
                raise
            logger.warning("roberta-base tokenizer unavailable too: random CLAP uses a byte-level stand-in tokenizer.")
            random_kwargs["tokenizer"] = "bytes"
            embedder = get_embedder(name, random_weights=True, **random_kwargs)
    embedder.random_weights = True  # reports say which metrics came from random weights
    return embedder


class AudioEvalSuite:
    """Accumulates FAD / KL / CLAP for paired items; ``compute()`` is collective under torch.distributed.

    Args:
        metrics: subset of ("fad", "kl", "clap").
        embedders: metric -> embedder registry name (defaults: DEFAULT_EMBEDDERS).
        embedder_kwargs: embedder name -> keyword arguments of its loader (checkpoint paths, tiny configs...).
        allow_random_embedders: build missing-weight embedders with random weights (loudly); see build_embedder.
        seed: seed of those random weights.
        codec: the Codec object, needed when an embedder is "codec".
    """

    def __init__(self, metrics: Sequence[str] = ("fad", "kl", "clap"), embedders: dict[str, str] | None = None,
                 embedder_kwargs: dict[str, dict] | None = None, allow_random_embedders: bool = False,
                 seed: int = 0, codec: Any = None) -> None:
        unknown = set(metrics) - set(DEFAULT_EMBEDDERS)
        if unknown or not metrics:
            raise ValueError(f"metrics must be a non-empty subset of {sorted(DEFAULT_EMBEDDERS)}, got {list(metrics)}")
        self.names = [m for m in DEFAULT_EMBEDDERS if m in metrics]
        chosen = {**DEFAULT_EMBEDDERS, **(embedders or {})}
        chosen["kad"] = chosen["kad"] or chosen["fad"]
        self.embedder_names = {m: chosen[m] for m in self.names}
        self.embedders: dict[str, AudioEmbedder] = {}
        missing = []
        for name in dict.fromkeys(self.embedder_names.values()):
            kwargs = dict((embedder_kwargs or {}).get(name, {}))
            if name == "codec":
                kwargs.setdefault("codec", codec)
            try:
                self.embedders[name] = build_embedder(name, allow_random_embedders, seed, **kwargs)
            except OSError as err:  # every missing weight file (or tokenizer) is named at once, not one per run
                missing.append(f"{name}: " + " ".join(str(err).split()))
        if missing:
            raise FileNotFoundError(f"{len(missing)} embedder weight file(s) missing: " + " | ".join(missing))
        self.metrics: dict[str, Any] = {}
        if "fad" in self.names:
            self.metrics["fad"] = FrechetAudioDistance(num_features=self._embedder("fad").dim)
        if "kl" in self.names:
            if self._embedder("kl").kind != "probabilities":
                raise ValueError(f"kl needs a classifier embedder, got {self.embedder_names['kl']!r}")
            self.metrics["kl"] = KLDivergence()
        if "clap" in self.names:
            if not callable(getattr(self._embedder("clap"), "embed_text", None)):
                raise ValueError(f"clap needs an embedder with embed_text(), got {self.embedder_names['clap']!r}")
            self.metrics["clap"] = CLAPScore()
        if "kad" in self.names:
            if self._embedder("kad").kind != "embedding":
                raise ValueError(f"kad needs an embedding embedder, got {self.embedder_names['kad']!r}")
            self.metrics["kad"] = KernelAudioDistance()
        self.skipped = 0
        self._reference_frames: dict[tuple[str, str], Tensor] = {}

    @property
    def random_embedders(self) -> list[str]:
        """Names of the embedders built with random weights (``allow_random_embedders``)."""
        return [name for name, e in self.embedders.items() if getattr(e, "random_weights", False)]

    def _embedder(self, metric: str) -> AudioEmbedder:
        return self.embedders[self.embedder_names[metric]]

    @property
    def needs_reference(self) -> bool:
        return bool({"fad", "kl", "kad"} & set(self.names))

    @property
    def min_seconds(self) -> float:
        """Shortest clip every configured embedder accepts; shorter items are skipped (and counted)."""
        return max([MIN_SECONDS.get(name, 0.0) for name in self.embedders] + [0.0])

    def to(self, device: str | torch.device) -> AudioEvalSuite:
        """Move embedders and metric states (under NCCL the states must live on the rank's GPU)."""
        for embedder in self.embedders.values():
            embedder.to(device)
        for metric in self.metrics.values():
            metric.to(device)
        return self

    def reset(self) -> None:
        for metric in self.metrics.values():
            metric.reset()
        self.skipped = 0

    @torch.no_grad()
    def update(self, generated: Sequence[Tensor], references: Sequence[Tensor | None], texts: Sequence[str],
               sample_rate: int, keys: Sequence[str] | None = None) -> list[float | None]:
        """Add items: generated[i] [C, L] (already cut to the reference length), references[i] [C', L'] or None
        (CLAP only), texts[i] its caption, all at ``sample_rate``; keys[i] (optional) the item's id, under which its
        reference frames are cached. Returns each item's CLAP score (None if not computed or skipped). Items shorter
        than ``min_seconds`` are skipped, counted and logged."""
        if not len(generated) == len(references) == len(texts):
            raise ValueError(f"{len(generated)} generated, {len(references)} references, {len(texts)} texts")
        scores: list[float | None] = []
        for index, (gen, ref, text) in enumerate(zip(generated, references, texts)):
            shortest = min(x.shape[-1] for x in (gen, ref) if x is not None) / sample_rate
            if shortest < self.min_seconds:
                self.skipped += 1
                logger.warning("Skipping %r: %.3f s is shorter than the %.3f s the embedders need (%d skipped).",
                               text, shortest, self.min_seconds, self.skipped)
                scores.append(None)
                continue
            if ref is None and self.needs_reference:
                raise ValueError(f"{text!r}: FAD/KL need a reference clip")
            key = None if keys is None else str(keys[index])
            scores.append(self._update_one(gen[None], None if ref is None else ref[None], text, sample_rate, key))
        return scores

    def _update_one(self, gen: Tensor, ref: Tensor | None, text: str, sample_rate: int,
                    key: str | None = None) -> float | None:
        """gen [1, C, L], ref [1, C', L'] -> metric updates; the item's CLAP score."""
        cache: dict[tuple[str, bool], Tensor] = {}

        def frames(name: str, real: bool) -> Tensor:  # [1, F, D], each embedder runs once per clip
            if real and key is not None and (name, key) in self._reference_frames:
                return self._reference_frames[(name, key)].to(gen.device)
            if (name, real) not in cache:
                cache[(name, real)] = self.embedders[name].embed_frames(ref if real else gen, sample_rate)
                if real and key is not None:
                    self._reference_frames[(name, key)] = cache[(name, real)].cpu()
            return cache[(name, real)]

        score = None
        if "fad" in self.metrics:
            name = self.embedder_names["fad"]
            self.metrics["fad"].update(frames(name, True), True)
            self.metrics["fad"].update(frames(name, False), False)
        if "kl" in self.metrics:
            name = self.embedder_names["kl"]
            self.metrics["kl"].update(frames(name, False), frames(name, True))
        if "clap" in self.metrics:
            name = self.embedder_names["clap"]
            audio = frames(name, False).mean(1)  # [1, D]
            text_emb = self.embedders[name].embed_text([text]).to(audio.device)
            self.metrics["clap"].update(audio, text_emb)
            score = float(torch.nn.functional.cosine_similarity(audio.double(), text_emb.double()).item())
        if "kad" in self.metrics:
            name = self.embedder_names["kad"]
            self.metrics["kad"].update(frames(name, True), True)
            self.metrics["kad"].update(frames(name, False), False)
        return score

    def compute(self) -> dict[str, float]:
        """{"fad": ..., "kl": ..., "clap": ..., "kad": ...} for the configured metrics (collective: every rank must
        call it)."""
        return {name: float(metric.compute()) for name, metric in self.metrics.items()}
