"""PaSST AudioSet classifier (hear21passt) as a 527-class probability embedder for the KL metric.

Protocol (reference KL): mono 32 kHz; each clip split into consecutive, non-overlapping chunks of at most
``max_seconds`` (20 s model for music, 10 s for audio), no padding; chunks of 0.15 s or less dropped; softmax over
the 527 logits, one distribution per chunk. Output [N, F, 527] with F chunks per clip.

Weights: the hear21passt release files, loaded from a local path (hear21passt itself would download them).
"""
from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from .base import AudioEmbedder
from .weights import load_checkpoint, resolve_weights

SAMPLE_RATE = 32_000
NUM_CLASSES = 527
MIN_SECONDS = 0.15
_RELEASES = "https://github.com/kkoutini/PaSST/releases/download"
# pretrained length (s) -> (hear21passt arch, input_tdim, weight file, url)
VARIANTS = {
    10: ("passt_s_swa_p16_128_ap476", 998, "passt-s-f128-p16-s10-ap.476-swa.pt",
         f"{_RELEASES}/v0.0.1-audioset/passt-s-f128-p16-s10-ap.476-swa.pt"),
    20: ("passt_20sec", 2000, "passt-s-f128-20sec-p16-s10-ap.474-swa.pt",
         f"{_RELEASES}/v0.0.5/passt-s-f128-20sec-p16-s10-ap.474-swa.pt"),
    30: ("passt_30sec", 3000, "passt-s-f128-30sec-p16-s10-ap.473-swa.pt",
         f"{_RELEASES}/v0.0.5/passt-s-f128-30sec-p16-s10-ap.473-swa.pt"),
}


@dataclass(frozen=True)
class TinyPasstConfig:
    """Random-weight PaSST sizes for tests (the real models are ViT-base: 768 wide, 12 layers)."""

    embed_dim: int = 32
    depth: int = 1
    num_heads: int = 2
    max_seconds: float = 1.0


def _import_hear21passt() -> None:
    try:
        import hear21passt  # noqa: F401
    except ImportError as err:
        raise ImportError("The PaSST embedder needs `pip install hear21passt` (it pulls timm).") from err


def _mel_frontend() -> nn.Module:
    """PaSST's log-mel front-end (128 bands, 25 ms window, 10 ms hop at 32 kHz); prints a note we swallow."""
    from hear21passt.models.preprocess import AugmentMelSTFT

    with contextlib.redirect_stdout(io.StringIO()):
        return AugmentMelSTFT(n_mels=128, sr=SAMPLE_RATE, win_length=800, hopsize=320, n_fft=1024, freqm=48,
                              timem=192, htk=False, fmin=0.0, fmax=None, norm=1, fmin_aug_range=10,
                              fmax_aug_range=2000)


def segments(mono: Tensor, max_samples: int, min_samples: int) -> list[Tensor]:
    """mono [N, L] -> consecutive chunks [N, <= max_samples], no padding, chunks of ``min_samples`` or less dropped
    (audiocraft's ``PasstKLDivergenceMetric._process_audio``)."""
    return [c for c in torch.split(mono, max_samples, dim=-1) if c.shape[-1] > min_samples]


class PasstEmbedder(AudioEmbedder):
    """audio -> per-chunk AudioSet label distributions [N, F, 527]."""

    name = "passt"
    kind = "probabilities"

    def __init__(self, net: nn.Module, max_seconds: float, min_seconds: float = MIN_SECONDS,
                 output: str = "probabilities") -> None:
        if output not in ("probabilities", "embedding"):
            raise ValueError(f"output must be 'probabilities' or 'embedding', got {output!r}")
        super().__init__(SAMPLE_RATE, NUM_CLASSES if output == "probabilities" else int(net.num_features))
        if output == "embedding":  # the pooled token features [N, 768] per segment (a FAD / KAD embedder)
            self.name, self.kind = "passt_embedding", "embedding"
        self.output = output
        self.mel = _mel_frontend()
        self.net = net
        self.max_samples = int(max_seconds * SAMPLE_RATE)
        self.min_samples = int(min_seconds * SAMPLE_RATE)

    def _frames(self, mono: Tensor) -> Tensor:
        chunks = segments(mono, self.max_samples, self.min_samples)
        if not chunks:
            raise ValueError(f"Clips of {mono.shape[-1] / SAMPLE_RATE:.3f} s are too short for PaSST "
                             f"(more than {self.min_samples / SAMPLE_RATE} s needed).")
        probs = [self._probabilities(chunk) for chunk in chunks]
        return torch.stack(probs, dim=1)

    def _probabilities(self, chunk: Tensor) -> Tensor:
        """mono chunk [N, L] -> softmax over the 527 classes [N, 527]."""
        with contextlib.redirect_stdout(io.StringIO()):
            specs = self.mel(chunk).unsqueeze(1)  # [N, 1, 128, T]
            logits, features = self.net(specs)
        if self.output == "embedding":
            return features.float()
        return torch.softmax(logits.float(), dim=-1)


def load_passt(checkpoint: str | Path | None = None, pretrained_length: int = 20,
               tiny: TinyPasstConfig | dict | None = None, random_weights: bool = False,
               output: str = "probabilities") -> PasstEmbedder:
    """PaSST-S for 10/20/30 s windows with its AudioSet weights (explicit path, ``$MAGNET_PASST_CKPT`` or the
    weights dir). ``tiny`` (tests; a TinyPasstConfig or a dict of its fields) builds a small PaSST of the same class
    instead (random weights unless ``checkpoint`` is given). ``random_weights=True`` (demos) builds the full-size
    architecture without loading anything.
    """
    _import_hear21passt()
    if isinstance(tiny, dict):
        tiny = TinyPasstConfig(**tiny)
    if tiny is not None:
        from hear21passt.models.passt import PaSST

        state = load_checkpoint(checkpoint) if checkpoint is not None else None  # read (as data) before building
        net = PaSST(img_size=(128, int(tiny.max_seconds * 100) + 1), patch_size=16, stride=10, in_chans=1,
                    num_classes=NUM_CLASSES, embed_dim=tiny.embed_dim, depth=tiny.depth, num_heads=tiny.num_heads,
                    distilled=True)
        if state is not None:
            net.load_state_dict(state, strict=True)
        return PasstEmbedder(net, tiny.max_seconds, output=output).eval().requires_grad_(False)
    if pretrained_length not in VARIANTS:
        raise ValueError(f"pretrained_length must be one of {sorted(VARIANTS)}, got {pretrained_length}.")
    arch, tdim, filename, url = VARIANTS[pretrained_length]
    if random_weights:
        from hear21passt.models.passt import get_model

        with contextlib.redirect_stdout(io.StringIO()):
            net = get_model(arch=arch, pretrained=False, input_tdim=tdim)
        return PasstEmbedder(net, float(pretrained_length), output=output).eval().requires_grad_(False)
    path = resolve_weights(checkpoint, "MAGNET_PASST_CKPT", filename, url,
                           extra_dirs=(Path(torch.hub.get_dir()) / "checkpoints",))
    state = load_checkpoint(path)  # read (as data) before building the network
    from hear21passt.models.passt import checkpoint_filter_fn, get_model

    with contextlib.redirect_stdout(io.StringIO()):
        net = get_model(arch=arch, pretrained=False, input_tdim=tdim)
    net.load_state_dict(checkpoint_filter_fn(state, net), strict=True)  # the same key fix-ups hear21passt applies
    return PasstEmbedder(net, float(pretrained_length), output=output).eval().requires_grad_(False)
