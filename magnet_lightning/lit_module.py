"""LightningModule for MAGNeT: draw stage -> span masks -> forward -> masked cross-entropy of that stage -> log.

Randomness is a pure function of (seed, optimizer step, micro-batch, rank), so a resumed run draws exactly the masks
an uninterrupted one would, ranks draw the same stage in lock-step (as the reference) but different spans, and
validation masks are fixed. Hyper-parameters are stored as plain types (checkpoints load with weights_only=True).
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import asdict, fields
from typing import Any

import lightning as L
import torch

from magnet_lightning.conditioning import TextDropout, TextEncoder
from magnet_lightning.config import MaskingConfig, ModelConfig
from magnet_lightning.ema import EMA
from magnet_lightning.masking import draw_stages, sample_training_masks
from magnet_lightning.models.magnet import MagnetTransformer
from magnet_lightning.objective import magnet_loss
from magnet_lightning.optim import OptimConfig, build_optimizer, build_scheduler


def _as(cls, value):
    """A dataclass from a dataclass, a dict or None (defaults)."""
    if value is None:
        return cls()
    if isinstance(value, cls):
        return value
    if isinstance(value, dict):
        known = {f.name for f in fields(cls)}
        unknown = set(value) - known
        if unknown:
            raise ValueError(f"unknown {cls.__name__} fields: {sorted(unknown)}")
        return cls(**value)
    raise TypeError(f"expected {cls.__name__} or dict, got {type(value).__name__}")


def derive_seed(*parts: Any) -> int:
    """A stable 63-bit seed from any tuple of plain values (Python's hash() is salted for strings)."""
    return int.from_bytes(hashlib.sha256(repr(parts).encode()).digest()[:8], "little") >> 1


class MagnetLightningModule(L.LightningModule):
    """Trains a `MagnetTransformer` with MAGNeT's span-masked objective.

    Args:
        model: transformer sizes (ModelConfig or dict).
        masking: span length and stage sampling (MaskingConfig or dict).
        optimizer: optimizer and schedule (OptimConfig or dict).
        text_encoder: T5 hub name or local path ('t5-base' music, 't5-large' audio); 'random:NAME' for a random one.
        allow_random_text_encoder: if the T5 weights are missing, use random weights (loudly) instead of failing.
        text_encoder_dtype: 'auto' (bf16 on CUDA), 'bfloat16', 'float16' or 'float32'.
        cfg_dropout, word_dropout, cfg_dropout_per_sample: training text corruption (TextDropout).
        ema_decay, ema_every_n_steps: weight EMA used for validation and export; ema_every_n_steps=0 disables it.
        seed: base of every random draw of the objective.
        val_all_stages: score every stage on each validation batch (K forwards) for a low-variance val/loss.
        init_from: weights to start from (our checkpoint or an audiocraft state_dict.bin), e.g. for fine-tuning.
        codec, sample_rate, frame_rate, segment_duration, decoding: metadata stored for generation.
    """

    def __init__(
        self,
        model: ModelConfig | dict | None = None,
        masking: MaskingConfig | dict | None = None,
        optimizer: OptimConfig | dict | None = None,
        text_encoder: str = "t5-base",
        allow_random_text_encoder: bool = False,
        text_encoder_dtype: str = "auto",
        cfg_dropout: float = 0.3,
        word_dropout: float = 0.3,
        cfg_dropout_per_sample: bool = False,
        ema_decay: float = 0.99,
        ema_every_n_steps: int = 10,
        seed: int = 2036,
        val_all_stages: bool = True,
        init_from: str | None = None,
        codec: str = "facebook/encodec_32khz",
        sample_rate: int = 32000,
        frame_rate: float = 50.0,
        segment_duration: float = 10.0,
        decoding: dict | None = None,
    ):
        super().__init__()
        hparams = {k: v for k, v in locals().items() if k not in ("self", "__class__")}
        model_cfg, masking_cfg = _as(ModelConfig, model), _as(MaskingConfig, masking)
        optim_cfg = _as(OptimConfig, optimizer)
        hparams.update(model=asdict(model_cfg), masking=asdict(masking_cfg), optimizer=asdict(optim_cfg))
        hparams["decoding"] = dict(decoding or {})
        self.save_hyperparameters(hparams)
        self.model_cfg, self.masking_cfg, self.optim_cfg = model_cfg, masking_cfg, optim_cfg
        self.model = MagnetTransformer(model_cfg)
        self.text_dropout = TextDropout(cfg_dropout, word_dropout, cfg_dropout_per_sample)
        self._text_encoder: TextEncoder | None = None
        self._batch_idx = 0
        if init_from:
            self.load_weights(init_from)

    # ----------------------------------------------------------------------------------------------- text
    @property
    def text_encoder(self) -> TextEncoder:
        if self._text_encoder is None:
            self.set_text_encoder(
                TextEncoder.from_pretrained(
                    self.hparams.text_encoder, self.hparams.text_encoder_dtype, self.hparams.allow_random_text_encoder
                )
            )
        return self._text_encoder

    def set_text_encoder(self, encoder: TextEncoder) -> None:
        if encoder.dim != self.model_cfg.text_dim:
            raise ValueError(f"text encoder width {encoder.dim} != model text_dim {self.model_cfg.text_dim}")
        self._text_encoder = encoder

    def encode_text(self, texts: list[str | None]) -> tuple[torch.Tensor, torch.Tensor]:
        """texts -> (states [B, S, E], mask [B, S]) on this module's device (T5 computed once per batch)."""
        return self.text_encoder.to(self.device)(texts)

    def load_weights(self, path: str) -> None:
        """Load transformer weights from our checkpoint or an audiocraft state_dict.bin (sizes must match)."""
        from magnet_lightning.checkpoint import load_pretrained

        pretrained = load_pretrained(path, map_location="cpu")
        if pretrained.model.cfg != self.model_cfg:
            raise ValueError(f"{path}: its model config {pretrained.model.cfg} differs from this run's "
                             f"{self.model_cfg}")
        self.model.load_state_dict(pretrained.model.state_dict())

    # ----------------------------------------------------------------------------------------------- steps
    def _micro_batch_seed(self, kind: str, *extra: Any) -> int:
        accumulate = getattr(self.trainer, "accumulate_grad_batches", 1) if self._trainer else 1
        micro = self._batch_idx % max(accumulate, 1)
        return derive_seed(self.hparams.seed, kind, self.global_step, micro, *extra)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        self._batch_idx = batch_idx
        codes = batch["codes"]
        rank = self.global_rank
        stage_gen = torch.Generator().manual_seed(self._micro_batch_seed("stage"))
        stages = draw_stages(
            codes.shape[0], codes.shape[1], self.masking_cfg.per_sample_stage, stage_gen,
            self.masking_cfg.stage_weights or None,
        )
        mask_gen = torch.Generator().manual_seed(self._micro_batch_seed("mask", rank))
        masked = sample_training_masks(
            codes, stages, self.model.mask_token_id, self.masking_cfg.span_len, batch.get("padding_mask"), mask_gen
        )
        texts = self.text_dropout(batch["text"], random.Random(self._micro_batch_seed("text", rank)))
        states, text_mask = self.encode_text(texts)
        loss = magnet_loss(self.model, codes, masked, states, text_mask, self.masking_cfg.per_sample_stage)
        self.log("train/loss", loss, prog_bar=True)
        self.log("train/ppl", torch.exp(loss.detach()))
        if not self.masking_cfg.per_sample_stage:
            # Per-stage keys differ between steps: logged per step, never synced across ranks.
            self.log(f"train/loss_stage{int(stages[0])}", loss.detach(), on_step=True, on_epoch=False)
        return loss

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        codes = batch["codes"]
        batch_size, num_codebooks = codes.shape[:2]
        states, text_mask = self.encode_text(list(batch["text"]))
        if self.hparams.val_all_stages:
            stage_list = list(range(num_codebooks))
        else:
            stage_list = [batch_idx % num_codebooks]
        losses = []
        for stage in stage_list:
            seed = derive_seed(self.hparams.seed, "val", batch_idx, self.global_rank, stage)
            gen = torch.Generator().manual_seed(seed)
            stages = torch.full((batch_size,), stage, dtype=torch.long)
            masked = sample_training_masks(
                codes, stages, self.model.mask_token_id, self.masking_cfg.span_len, batch.get("padding_mask"), gen
            )
            loss = magnet_loss(self.model, codes, masked, states, text_mask, per_sample_stage=False)
            losses.append(loss)
            if self.hparams.val_all_stages:
                self.log(f"val/loss_stage{stage}", loss, sync_dist=True, batch_size=batch_size)
        mean = torch.stack(losses).mean()
        self.log("val/loss", mean, prog_bar=True, sync_dist=True, batch_size=batch_size)
        self.log("val/ppl", torch.exp(mean), sync_dist=True, batch_size=batch_size)

    # ----------------------------------------------------------------------------------------------- set-up
    def configure_optimizers(self):
        optimizer = build_optimizer(self.model.parameters(), self.optim_cfg, self.device)
        total = self.optim_cfg.total_steps or (self.trainer.max_steps if self.trainer.max_steps > 0 else 0)
        if total <= 0 and self.optim_cfg.schedule == "cosine":
            raise ValueError("set trainer.max_steps or optimizer.total_steps for the cosine schedule")
        scheduler = build_scheduler(optimizer, self.optim_cfg, total)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def configure_callbacks(self):
        if self.hparams.ema_every_n_steps <= 0:
            return []
        return [EMA(self.hparams.ema_decay, self.hparams.ema_every_n_steps)]

    def on_fit_start(self) -> None:
        """Start-up checks before step 1: the shards against the model (K, V, frame rate, codec, sample rate), and
        the T5 loaded now (a missing one stops the run here, not at the first batch)."""
        datamodule = getattr(self.trainer, "datamodule", None)
        check = getattr(datamodule, "check_compatible", None)
        if check is not None:
            check(self.model_cfg.num_codebooks, self.model_cfg.codebook_size, self.hparams.frame_rate,
                  codec=self.hparams.codec, sample_rate=self.hparams.sample_rate)
        _ = self.text_encoder  # the property loads the T5, or raises naming what to download
