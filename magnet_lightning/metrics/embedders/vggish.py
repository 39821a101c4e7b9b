"""VGGish (AudioSet VGG-like network) in plain torch: log-mel front-end + network, loading the common torch port.

Written here because the PyPI port (torchvggish 0.2, 2022) downloads its weights at construction and resamples
with resampy in numpy. Front-end, following the published VGGish parameters: 16 kHz mono; 25 ms periodic-Hann
frames with 10 ms hop and no padding; |rfft| over 512 bins; 64 HTK-mel bands in 125–7500 Hz (DC bin zeroed);
log(mel + 0.01); non-overlapping 96-frame (0.96 s) examples. Network: six 3×3 convs (64, 128, 256, 256, 512, 512)
with four 2×2 max-pools, flattened in TF (H, W, C) order, then 4096-4096-128 fully connected layers with ReLU.

Weights: ``vggish-10086976.pth`` (state-dict keys ``features.*`` / ``embeddings.*``), optional PCA file
``vggish_pca_params-970ea276.pth``. FAD uses the raw 128-d embedding (no PCA / quantisation) by default.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from .base import AudioEmbedder
from .weights import load_checkpoint, resolve_weights

VGGISH_URL = "https://github.com/harritaylor/torchvggish/releases/download/v0.1/vggish-10086976.pth"
PCA_URL = "https://github.com/harritaylor/torchvggish/releases/download/v0.1/vggish_pca_params-970ea276.pth"
SAMPLE_RATE = 16_000
WINDOW, HOP, N_FFT = 400, 160, 512
NUM_MELS, EXAMPLE_FRAMES = 64, 96
MEL_LOW_HZ, MEL_HIGH_HZ, LOG_OFFSET = 125.0, 7500.0, 0.01


@dataclass(frozen=True)
class VGGishConfig:
    """Layer widths; the defaults are VGGish's (tests shrink ``fc_dim``)."""

    conv_channels: tuple[int, ...] = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M")  # type: ignore[assignment]
    fc_dim: int = 4096
    embedding_dim: int = 128
    final_relu: bool = True  # the torch port keeps the ReLU after the last layer


def _hz_to_mel(hz: Tensor) -> Tensor:
    return 1127.0 * torch.log1p(hz / 700.0)


def mel_matrix() -> Tensor:
    """[N_FFT // 2 + 1, NUM_MELS] triangular HTK-mel weights with the DC row zeroed."""
    bins_mel = _hz_to_mel(torch.linspace(0, SAMPLE_RATE / 2, N_FFT // 2 + 1, dtype=torch.float64))
    edges = torch.linspace(float(_hz_to_mel(torch.tensor(MEL_LOW_HZ))), float(_hz_to_mel(torch.tensor(MEL_HIGH_HZ))),
                           NUM_MELS + 2, dtype=torch.float64)
    lower, center, upper = edges[:-2], edges[1:-1], edges[2:]
    rising = (bins_mel[:, None] - lower) / (center - lower)
    falling = (upper - bins_mel[:, None]) / (upper - center)
    weights = torch.clamp(torch.minimum(rising, falling), min=0.0)
    weights[0] = 0.0
    return weights.float()


class VGGishFrontEnd(nn.Module):
    """mono [N, L] at 16 kHz -> log-mel examples [N, E, 96, 64] (E = number of whole 0.96 s examples)."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("window", torch.hann_window(WINDOW, periodic=True), persistent=False)
        self.register_buffer("mel", mel_matrix(), persistent=False)

    def forward(self, mono: Tensor) -> Tensor:
        min_len = WINDOW + HOP * (EXAMPLE_FRAMES - 1)
        if mono.shape[-1] < min_len:
            raise ValueError(f"VGGish needs at least {min_len / SAMPLE_RATE:.3f} s of audio per clip, got "
                             f"{mono.shape[-1] / SAMPLE_RATE:.3f} s.")
        frames = mono.unfold(-1, WINDOW, HOP) * self.window  # [N, T, WINDOW]
        spec = torch.fft.rfft(frames, n=N_FFT).abs()  # [N, T, 257]
        log_mel = torch.log(spec @ self.mel + LOG_OFFSET)  # [N, T, 64]
        num_examples = log_mel.shape[1] // EXAMPLE_FRAMES
        return log_mel[:, : num_examples * EXAMPLE_FRAMES].reshape(mono.shape[0], num_examples, EXAMPLE_FRAMES,
                                                                     NUM_MELS)


class VGGishNet(nn.Module):
    """log-mel examples [B, 1, 96, 64] -> embeddings [B, embedding_dim]; keys match the common torch port."""

    def __init__(self, cfg: VGGishConfig = VGGishConfig()) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        in_ch = 1
        for item in cfg.conv_channels:
            if item == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(in_ch, int(item), 3, padding=1), nn.ReLU(inplace=True)]
                in_ch = int(item)
        self.features = nn.Sequential(*layers)
        pools = sum(1 for item in cfg.conv_channels if item == "M")
        flat = in_ch * math.ceil(EXAMPLE_FRAMES / 2**pools) * math.ceil(NUM_MELS / 2**pools)
        head: list[nn.Module] = [nn.Linear(flat, cfg.fc_dim), nn.ReLU(True), nn.Linear(cfg.fc_dim, cfg.fc_dim),
                                 nn.ReLU(True), nn.Linear(cfg.fc_dim, cfg.embedding_dim)]
        if cfg.final_relu:
            head.append(nn.ReLU(True))
        self.embeddings = nn.Sequential(*head)

    def forward(self, x: Tensor) -> Tensor:
        x = self.features(x)  # [B, C, H, W]
        x = x.permute(0, 2, 3, 1).flatten(1)  # TF flattening order (H, W, C)
        return self.embeddings(x)


class VGGishEmbedder(AudioEmbedder):
    """audio -> per-0.96 s VGGish embeddings [N, E, 128] (optionally PCA-whitened as in the AudioSet release)."""

    name = "vggish"
    kind = "embedding"

    def __init__(self, cfg: VGGishConfig = VGGishConfig(), pca: dict[str, Tensor] | None = None) -> None:
        super().__init__(SAMPLE_RATE, cfg.embedding_dim)
        self.frontend = VGGishFrontEnd()
        self.net = VGGishNet(cfg)
        self.register_buffer("pca_matrix", None)
        self.register_buffer("pca_means", None)
        if pca is not None:
            self.register_buffer("pca_matrix", torch.as_tensor(pca["pca_eigen_vectors"]).float())
            self.register_buffer("pca_means", torch.as_tensor(pca["pca_means"]).float().reshape(-1))

    def _frames(self, mono: Tensor) -> Tensor:
        examples = self.frontend(mono)  # [N, E, 96, 64]
        n, e = examples.shape[:2]
        emb = self.net(examples.reshape(n * e, 1, EXAMPLE_FRAMES, NUM_MELS))
        if self.pca_matrix is not None:
            emb = (emb - self.pca_means) @ self.pca_matrix.T
        return emb.reshape(n, e, -1)


def load_vggish(checkpoint: str | Path | None = None, pca_checkpoint: str | Path | None = None,
                use_pca: bool = False, cfg: VGGishConfig | dict = VGGishConfig(),
                random_weights: bool = False) -> VGGishEmbedder:
    """Build VGGish and load ``vggish-10086976.pth`` (explicit path, ``$MAGNET_VGGISH_CKPT`` or the weights dir).

    ``use_pca`` also loads the AudioSet PCA parameters (``$MAGNET_VGGISH_PCA``); the reference FAD does not use
    them. ``random_weights=True`` (tests, demos) loads nothing. ``cfg`` may be a dict of VGGishConfig fields.
    """
    if isinstance(cfg, dict):
        cfg = VGGishConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in cfg.items()})
    if random_weights:
        return VGGishEmbedder(cfg).eval().requires_grad_(False)
    path = resolve_weights(checkpoint, "MAGNET_VGGISH_CKPT", "vggish-10086976.pth", VGGISH_URL)
    pca = None
    if use_pca:
        pca_path = resolve_weights(pca_checkpoint, "MAGNET_VGGISH_PCA", "vggish_pca_params-970ea276.pth", PCA_URL)
        pca = load_checkpoint(pca_path)
    state = load_checkpoint(path)  # read (as data) before building the network
    embedder = VGGishEmbedder(cfg, pca=pca)
    embedder.net.load_state_dict(state, strict=True)
    return embedder.eval().requires_grad_(False)
