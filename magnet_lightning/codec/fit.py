"""Fit the RVQ codebooks of a random-weight EnCodec to audio, so its tokens carry information.

A freshly built EnCodec (no pretrained weights) has all-zero codebooks: every frame maps to token 0. For demos and
tests without downloadable weights, `fit_codebooks` runs k-means per RVQ level on the encoder's latent frames: level 0
clusters the latents, level k clusters what levels < k left unexplained (the residual), which is how RVQ quantizes.
The encoder stays random, but distinct sounds then give distinct token streams.

Works for both codec families in `magnet_lightning.codec.codecs` (their codebook buffers share the names
``embed, embed_avg, cluster_size, inited``).
"""

from __future__ import annotations

import torch

from magnet_lightning.codec.codecs import Codec, EncodecPackageCodec, HFEncodecCodec, convert_audio


def _encoder_and_codebooks(codec: Codec):
    if isinstance(codec, HFEncodecCodec):
        layers = codec.model.quantizer.layers[: codec.num_codebooks]
        return codec.model.encoder, [layer.codebook for layer in layers]
    if isinstance(codec, EncodecPackageCodec):
        layers = codec.model.quantizer.vq.layers[: codec.num_codebooks]
        return codec.model.encoder, [layer._codebook for layer in layers]
    raise TypeError(f"cannot fit codebooks of {type(codec).__name__}")


def kmeans(x: torch.Tensor, num_clusters: int, iters: int = 20,
           generator: torch.Generator | None = None) -> torch.Tensor:
    """Plain Lloyd k-means.

    Args:
        x: [N, D] points.
        num_clusters: V centroids wanted; if N < V, the missing centroids are points plus small noise.
        iters: Lloyd iterations.
        generator: RNG for the initial pick.

    Returns:
        [V, D] centroids.
    """
    n = x.shape[0]
    idx = torch.randperm(n, generator=generator)[:num_clusters]
    if idx.numel() < num_clusters:  # fewer frames than codes: reuse frames, jittered so codes stay distinct
        extra = torch.randint(n, (num_clusters - idx.numel(),), generator=generator)
        idx = torch.cat([idx, extra])
    centroids = x[idx].clone()
    centroids[n:] += 1e-3 * x.std() * torch.randn(centroids[n:].shape, generator=generator)
    for _ in range(iters):
        assign = torch.cdist(x, centroids).argmin(dim=1)  # [N]
        sums = torch.zeros_like(centroids).index_add_(0, assign, x)
        counts = torch.bincount(assign, minlength=num_clusters).to(x.dtype)
        used = counts > 0
        centroids[used] = sums[used] / counts[used, None]  # empty clusters keep their old centroid
    return centroids


@torch.no_grad()
def fit_codebooks(codec: Codec, wavs: list[torch.Tensor], sample_rate: int, iters: int = 20, seed: int = 0) -> Codec:
    """Set each RVQ level's codebook to k-means centroids of the encoder residuals of `wavs` (in place).

    Args:
        codec: an `HFEncodecCodec` or `EncodecPackageCodec` (typically with random weights).
        wavs: list of [C, N] waveforms at `sample_rate` (lengths may differ); more frames than V is better.
        sample_rate: rate of `wavs` in Hz.
        iters: k-means iterations per level.
        seed: seed of the k-means initialisation.

    Returns:
        The same codec, whose `encode` now uses the fitted codebooks.
    """
    encoder, codebooks = _encoder_and_codebooks(codec)
    gen = torch.Generator().manual_seed(seed)
    frames = []
    for wav in wavs:
        audio = convert_audio(wav.float(), sample_rate, codec.sample_rate, codec.channels)[None].to(codec.device)
        latent = encoder(audio)  # [1, D, T]
        frames.append(latent[0].transpose(0, 1).cpu().float())  # [T, D]
    residual = torch.cat(frames)  # [N, D]
    for book in codebooks:
        centroids = kmeans(residual, book.embed.shape[0], iters=iters, generator=gen)
        book.embed.copy_(centroids)
        book.embed_avg.copy_(centroids)
        book.cluster_size.fill_(1.0)
        book.inited.fill_(1)
        nearest = torch.cdist(residual, centroids).argmin(dim=1)
        residual = residual - centroids[nearest]
    return codec
