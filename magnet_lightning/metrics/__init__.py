"""Evaluation metrics as exact distributed torchmetrics: FAD, KL (PaSST labels), CLAP score, KAD and chroma cosine
similarity (melody adherence); FAD∞.

All states are sums (float64) and counts, reduced with ``dist_reduce_fx="sum"``: results are identical whatever
the number of ranks and memory does not grow with the number of clips. Built without an embedder the metrics take
precomputed embeddings / probabilities; built with one (``get_embedder``) they take audio. Embedders are held
outside the module tree, so a metric that is a child of a LightningModule never puts them in checkpoints or DDP.
"""
from magnet_lightning.utils.loudness import integrated_loudness, loudness_normalize, peak_normalize

from .chroma import ChromaCosineSimilarity
from .clap_score import CLAPScore
from .embedders import AudioEmbedder, available_embedders, get_embedder, register_embedder
from .fad import FrechetAudioDistance, frechet_distance, gaussian_from_sums
from .fad_inf import FADInf, fad_inf
from .kad import KernelAudioDistance, kernel_audio_distance
from .kl import KLDivergence, kl_ref_gen

__all__ = ["AudioEmbedder", "CLAPScore", "ChromaCosineSimilarity", "FADInf", "FrechetAudioDistance", "KLDivergence",
           "KernelAudioDistance", "available_embedders", "fad_inf", "frechet_distance", "gaussian_from_sums",
           "get_embedder", "integrated_loudness", "kernel_audio_distance", "kl_ref_gen", "loudness_normalize",
           "peak_normalize", "register_embedder"]
