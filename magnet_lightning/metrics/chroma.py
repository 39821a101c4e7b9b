"""Chroma cosine similarity: how closely generated audio follows a reference's melody, as audiocraft's
`ChromaCosineSimilarityMetric` (audiocraft/metrics/chroma_cosinesim.py) measures it. Both waveforms are down-mixed and
resampled to the chroma's rate (julius, as the reference's `convert_audio`), their chroma computed (models/chroma.py,
argmax by default: the score is then the share of frames whose strongest pitch class agrees), and the cosine
similarity of each frame pair averaged over the first ceil(size / hop) frames of each item, over every item seen.
A distributed torchmetric: two sums reduced over ranks.

Shapes: B batch, C channels, N samples.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchmetrics import Metric

from magnet_lightning.config import MelodyConfig
from magnet_lightning.models.chroma import ChromaExtractor


def _to_chroma_rate(wav: torch.Tensor, sample_rate: int, target: int) -> torch.Tensor:
    """[B, C, N] -> [B, 1, N'] mono at `target` Hz."""
    import julius

    mono = wav.float().mean(dim=1, keepdim=True)
    return julius.resample_frac(mono, int(sample_rate), int(target)) if int(sample_rate) != int(target) else mono


class ChromaCosineSimilarity(Metric):
    """Mean per-frame cosine similarity of the chroma of `preds` and `targets` (reference settings by default:
    32 kHz, 12 bins, radix2_exp 14, argmax)."""

    full_state_update = False
    higher_is_better = True

    def __init__(self, sample_rate: int = 32000, n_chroma: int = 12, radix2_exp: int = 14, argmax: bool = True,
                 eps: float = 1e-8, **kwargs):
        super().__init__(**kwargs)
        self.chroma_sample_rate, self.eps = sample_rate, eps
        self.extractor = ChromaExtractor(MelodyConfig(sample_rate=sample_rate, n_chroma=n_chroma,
                                                      radix2_exp=radix2_exp, argmax=argmax))
        self.add_state("cosine_sum", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("weight", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, preds: torch.Tensor, targets: torch.Tensor, sizes: torch.Tensor,
               sample_rates: torch.Tensor | int) -> None:
        """preds, targets [B, C, N] (same shape, zero-padded); sizes long [B]: each item's real length in samples;
        sample_rates: their rate (one for the batch, or [B] all equal)."""
        if preds.shape[0] == 0:
            return
        if preds.shape != targets.shape or sizes.shape[0] != preds.shape[0]:
            raise ValueError(f"preds {tuple(preds.shape)}, targets {tuple(targets.shape)} and sizes "
                             f"{tuple(sizes.shape)} must agree")
        rates = torch.as_tensor(sample_rates).reshape(-1)
        if not bool((rates == rates[0]).all()):
            raise ValueError("every item of a batch must have the same sample rate")
        rate = int(rates[0])
        device = self.cosine_sum.device
        self.extractor.to(device)
        gen = self.extractor(_to_chroma_rate(preds.to(device), rate, self.chroma_sample_rate))
        ref = self.extractor(_to_chroma_rate(targets.to(device), rate, self.chroma_sample_rate))
        # frames per item counted on the sizes at the input rate, as the reference does
        lengths = torch.ceil(sizes.to(torch.float64) / self.extractor.hop).long().tolist()
        for i, frames in enumerate(lengths):
            cosine = F.cosine_similarity(ref[i, :frames], gen[i, :frames], dim=1, eps=self.eps)
            self.cosine_sum += cosine.sum().to(torch.float64)
            self.weight += float(cosine.shape[0])

    def compute(self) -> torch.Tensor:
        if float(self.weight) <= 0:
            raise ValueError("ChromaCosineSimilarity: no frame compared yet (update it with non-empty batches)")
        return (self.cosine_sum / self.weight).float()
