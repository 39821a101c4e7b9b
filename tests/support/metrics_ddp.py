"""The data and the one-process computation of the metrics DDP test (imported by its worker processes too)."""

import torch

from magnet_lightning.metrics import CLAPScore, FrechetAudioDistance, KernelAudioDistance, KLDivergence

SPLIT = 23  # rank 0 gets rows [:SPLIT], rank 1 the rest: uneven shards


def make_data():
    gen = torch.Generator().manual_seed(7)
    return {
        "real": torch.randn(60, 6, generator=gen),
        "fake": torch.randn(50, 6, generator=gen) * 1.3 + 0.2,
        "p_gen": torch.softmax(torch.randn(40, 11, generator=gen), -1),
        "p_ref": torch.softmax(torch.randn(40, 11, generator=gen), -1),
        "audio": torch.randn(40, 8, generator=gen),
        "text": torch.randn(40, 8, generator=gen),
    }


def compute_all(data, shard=slice(None), ref_path=None):
    """Update the three metrics with one shard of the data and compute (syncs when a process group exists)."""
    fad = FrechetAudioDistance(num_features=6)
    fad.update(data["real"][shard], True)
    fad.update(data["fake"][shard], False)
    reused = FrechetAudioDistance(num_features=6, reference_stats=ref_path) if ref_path else None
    if reused is not None:
        reused.update(data["fake"][shard], False)
    kl = KLDivergence()
    kl.update(data["p_gen"][shard], data["p_ref"][shard])
    clap = CLAPScore()
    clap.update(data["audio"][shard], data["text"][shard])
    kad = KernelAudioDistance()
    kad.update(data["real"][shard], True)
    kad.update(data["fake"][shard], False)
    out = {"fad": fad.compute().item(), "kl": kl.compute().item(), "clap": clap.compute().item(),
           "kad": kad.compute().item()}
    if reused is not None:
        out["fad_reused"] = reused.compute().item()
    return fad, out
