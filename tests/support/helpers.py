"""Small shared builders for tests: a tiny LightningModule and in-memory batches."""

from __future__ import annotations

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

TINY_MODEL = dict(dim=32, num_heads=4, num_layers=2, ffn_dim=64, num_codebooks=4, codebook_size=16, text_dim=32,
                  subcodes_context=3)


def tiny_module(**overrides):
    from magnet_lightning.training.lit_module import MagnetLightningModule

    kwargs = dict(
        model=TINY_MODEL, text_encoder="random:tiny", optimizer=dict(lr=3e-3, warmup_steps=0, schedule="constant"),
        ema_every_n_steps=0, cfg_dropout=0.0, word_dropout=0.0,
    )
    kwargs.update(overrides)
    return MagnetLightningModule(**kwargs)


class FixedBatches(Dataset):
    """`length` copies (or seeded variants) of code batches with captions, already collated."""

    def __init__(self, length: int, batch: int = 4, frames: int = 24, seed: int = 0, vary: bool = False):
        self.length, self.batch, self.frames, self.seed, self.vary = length, batch, frames, seed, vary

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict:
        g = torch.Generator().manual_seed(self.seed + (index if self.vary else 0))
        codes = torch.randint(0, 16, (self.batch, 4, self.frames), generator=g)
        padding = torch.ones(self.batch, self.frames, dtype=torch.bool)
        padding[0, -5:] = False
        texts = [f"calm piano {i}" for i in range(self.batch)]
        return {"codes": codes, "padding_mask": padding, "text": texts, "meta": [{} for _ in texts]}


def loader(dataset: Dataset) -> DataLoader:
    return DataLoader(dataset, batch_size=None, shuffle=False)


def save_delayed_family_checkpoint(model_class, path, root, seed: int, segment_duration: float, decoding: dict):
    """A checkpoint file of a delay-pattern family (autoregressive, Hybrid-MAGNeT) with random weights, written as our
    LightningModule writes it, beside the tiny 16 kHz codec folder `root / "codec"` (K=4, V=64); returns `path`."""
    from dataclasses import asdict

    from magnet_lightning.config import ModelConfig

    torch.manual_seed(seed)
    cfg = ModelConfig(**dict(TINY_MODEL, codebook_size=64))
    model = model_class(cfg)
    hparams = {"model": asdict(cfg), "family": model_class.family, "delays": [0, 1, 2, 3],
               "text_encoder": "random:tiny", "codec": str(root / "codec"), "sample_rate": 16000, "frame_rate": 50.0,
               "segment_duration": segment_duration, "decoding": decoding}
    torch.save({"hyper_parameters": hparams, "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()}},
               path)
    return path


class LossRecorder(L.Callback):
    def __init__(self):
        self.losses = []

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        self.losses.append(float(outputs["loss"]))


def trainer(tmp_path, steps, **kw):
    return L.Trainer(
        default_root_dir=tmp_path, max_steps=steps, accelerator="cpu", devices=1, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False, **kw,
    )


def save_base(module, path):
    """A tiny base checkpoint in our format (what init_from and --ckpt read)."""
    torch.save({"hyper_parameters": dict(module.hparams), "state_dict": module.state_dict()}, path)
    return path


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (for a torchrun rendezvous: a fixed port collides with another run)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
