"""The LightningModule of every model family, one objective each (objective.py):

- 'magnet': draw stage -> span masks -> forward -> masked cross-entropy of that stage;
- 'musicgen' (autoregressive): teacher-forced cross-entropy of every codebook over the delay pattern;
- 'hybrid' (Hybrid-MAGNeT): per item an autoregressive prompt of random length, then MAGNeT's masking of one stage;
  one cross-entropy over the prompt codes and the masked codes.

Everything else is shared: text conditioning with CFG and word dropout, optimizer and schedule, EMA, fine-tuning
(`init_from`), start-up checks, logging. Randomness is a pure function of (seed, optimizer step, micro-batch, rank),
so a resumed run draws exactly the masks an uninterrupted one would, ranks draw the same stage in lock-step (as the
reference) but different spans, and validation masks are fixed. Hyper-parameters are stored as plain types
(checkpoints load with weights_only=True).
"""

from __future__ import annotations

import random
from dataclasses import asdict, fields, replace
from typing import Any

import lightning as L
import torch

from magnet_lightning.checkpoint.pretrained import load_pretrained
from magnet_lightning.config import MaskingConfig, MelodyConfig, ModelConfig
from magnet_lightning.generation.generator import MagnetGenerator
from magnet_lightning.lora.adapters import LoraConfig
from magnet_lightning.models.conditioning import TextDropout, TextEncoder
from magnet_lightning.models.registry import DEFAULT_FAMILY, MODEL_FAMILIES, build_model
from magnet_lightning.training.decoding_defaults import DecodingDefaults
from magnet_lightning.training.ema import EMA, TrainableEMA
from magnet_lightning.training.families import TRAINING_FAMILIES, BatchInputs
from magnet_lightning.training.lora_training import check_checkpoint, keep_adapters_only, start_lora, stored_names
from magnet_lightning.training.melody import (
    added_melody,
    adds_melody,
    base_state_with_melody,
    batch_chroma,
    check_melody_settings,
    melody_dropped,
)
from magnet_lightning.training.optim import OptimConfig, build_optimizer, build_scheduler
from magnet_lightning.training.weights_layout import check_same_layout
from magnet_lightning.utils.provenance import RANDOM_PARTS_KEY, absolute_if_local, is_random_folder
from magnet_lightning.utils.seeding import derive_seed, seeded


def _as(cls, value):
    """A fresh dataclass from a dataclass, a dict (checkpoints, Python callers) or None (defaults)."""
    if value is None:
        return cls()
    if isinstance(value, cls):
        return replace(value)
    if isinstance(value, dict):
        known = {f.name for f in fields(cls)}
        unknown = set(value) - known
        if unknown:
            raise ValueError(f"unknown {cls.__name__} fields: {sorted(unknown)}")
        return cls(**value)
    raise TypeError(f"expected {cls.__name__} or dict, got {type(value).__name__}")




class MagnetLightningModule(L.LightningModule):
    """Trains a model of one family (`family`) with its objective: MAGNeT's span-masked one by default.

    Args:
        model: transformer sizes (a ModelConfig; a dict also works from Python).
        family: 'magnet' (MagnetTransformer), 'musicgen' (ARTransformer: the autoregressive baseline) or 'hybrid'
            (HybridMagnetTransformer: one model, an autoregressive prompt then MAGNeT).
        delays: the delay pattern of the 'musicgen' and 'hybrid' families (default 0, 1, ..., K-1).
        masking: span length and stage sampling (MaskingConfig) of 'magnet' and 'hybrid'.
        optimizer: optimizer and schedule (OptimConfig).
        text_encoder: T5 hub name or local path ('t5-base' music, 't5-large' audio); 'random:NAME' for a random one.
        allow_random_text_encoder: if the T5 weights are missing, use random weights (loudly) instead of failing.
        text_encoder_dtype: 'auto' (bf16 on CUDA), 'bfloat16', 'float16' or 'float32'.
        cfg_dropout: probability of dropping a micro-batch's captions (classifier-free guidance training).
        word_dropout: probability of dropping each word of a kept caption.
        cfg_dropout_per_sample: draw the caption dropout per sample instead of once per micro-batch.
        ema_decay: decay of the weight EMA used for validation and export.
        ema_every_n_steps: optimizer steps between EMA updates; 0 disables the EMA.
        seed: base of every random draw of the objective.
        val_all_stages: score every stage on each validation batch (K forwards) for a low-variance val/loss.
        init_from: weights to start from (our checkpoint or an audiocraft state_dict.bin), e.g. for fine-tuning.
        codec: codec name or path the shards were tokenized with (stored for generation and evaluation).
        sample_rate: the codec's sample rate (Hz).
        frame_rate: codec frames per second (50 for EnCodec 32 kHz).
        segment_duration: training crop in seconds (follows data.segment_duration in the recipes).
        decoding: decoding defaults stored in the checkpoint for generation (DecodingDefaults).
        lora: LoRA adapters on the `init_from` base (LoraConfig; None: train every weight). Only the adapters train
            and are checkpointed, with the base's identity (training/lora_training.py).
        activation_checkpointing: recompute each transformer Layer's activations in the backward pass (less memory,
            about one more forward per step); any strategy (DDP, FSDP2) and family.
        melody: the chroma settings of a melody-conditioned model (model.chroma_bins > 0; config.MelodyConfig): how
            the shards' chroma was computed and generation computes a melody's (training/melody.py).

    Logged: ``train/loss``, ``train/ppl``, ``val/loss``, ``val/ppl``, and per family: ``train/loss_stage{k}`` (the
    mean loss of the micro-batches that drew stage k since the last log step, only for stages drawn in that window;
    one-stage-per-batch mode only) and ``val/loss_stage{k}`` ('magnet'); ``train/loss_codebook{k}`` and
    ``val/loss_codebook{k}`` ('musicgen'); ``train/loss_ar``, ``train/loss_nar``, ``val/loss_ar``, ``val/loss_nar``
    ('hybrid').
    """

    def __init__(
        self,
        model: ModelConfig = ModelConfig(),
        family: str = DEFAULT_FAMILY,
        delays: list[int] | None = None,
        masking: MaskingConfig = MaskingConfig(),
        optimizer: OptimConfig = OptimConfig(),
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
        decoding: DecodingDefaults = DecodingDefaults(),
        lora: LoraConfig | None = None,
        activation_checkpointing: bool = False,
        melody: MelodyConfig | None = None,
    ):
        super().__init__()
        hparams = {k: v for k, v in locals().items() if k not in ("self", "__class__")}
        model_cfg, masking_cfg = _as(ModelConfig, model), _as(MaskingConfig, masking)
        self.melody_cfg = None if melody is None else _as(MelodyConfig, melody)
        check_melody_settings(model_cfg, self.melody_cfg)
        hparams["melody"] = None if self.melody_cfg is None else asdict(self.melody_cfg)
        optim_cfg = _as(OptimConfig, optimizer)
        hparams.update(model=asdict(model_cfg), masking=asdict(masking_cfg), optimizer=asdict(optim_cfg))
        hparams["decoding"] = _as(DecodingDefaults, decoding).to_dict()
        self.lora_cfg = None if lora is None else _as(LoraConfig, lora)
        hparams["lora"] = None if self.lora_cfg is None else asdict(self.lora_cfg)
        self.save_hyperparameters(hparams)
        self.model_cfg, self.masking_cfg, self.optim_cfg = model_cfg, masking_cfg, optim_cfg
        if family not in MODEL_FAMILIES:
            raise ValueError(f"family={family!r}: choose one of {', '.join(MODEL_FAMILIES)}")
        self.family = family
        with seeded(derive_seed(seed, "init")):  # the weights depend on the seed only, not on what ran before
            self.model = build_model(family, model_cfg, delays)
        self.text_dropout = TextDropout(cfg_dropout, word_dropout, cfg_dropout_per_sample)
        self._text_encoder: TextEncoder | None = None
        self._batch_idx = 0
        self._stage_losses: dict[int, list[float]] = {}
        if init_from:
            self.load_weights(init_from)
        with seeded(derive_seed(seed, "lora_init")):
            self.lora_base = None if self.lora_cfg is None else start_lora(self.model, self.lora_cfg, init_from,
                                                                            getattr(self, "added_melody", None))
        self.strict_loading = self.lora_base is None  # a LoRA checkpoint holds no base (check_checkpoint checks it)

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

        pretrained = load_pretrained(path, map_location="cpu")
        if pretrained.model.family != self.family:
            raise ValueError(f"{path} holds a {pretrained.model.family} model, this run trains the {self.family} "
                             f"family (set model.family)")
        state = pretrained.model.state_dict()
        if adds_melody(pretrained.model.cfg, self.model_cfg):  # fine-tuning a text-only base into a melody model
            state = base_state_with_melody(state, self.model)
            self.added_melody = added_melody(self.model_cfg, self.melody_cfg)
        elif pretrained.model.cfg != self.model_cfg:
            raise ValueError(f"{path}: its model config {pretrained.model.cfg} differs from this run's "
                             f"{self.model_cfg}")
        check_same_layout(pretrained, self.model, self.hparams.codec, path)
        self.model.load_state_dict(state)

    # ----------------------------------------------------------------------------------------------- steps
    def _micro_batch_seed(self, kind: str, *extra: Any) -> int:
        accumulate = getattr(self.trainer, "accumulate_grad_batches", 1) if self._trainer else 1
        micro = self._batch_idx % max(accumulate, 1)
        return derive_seed(self.hparams.seed, kind, self.global_step, micro, *extra)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        self._batch_idx = batch_idx
        rank = self.global_rank
        texts = self.text_dropout(batch["text"], random.Random(self._micro_batch_seed("text", rank)))
        states, text_mask = self.encode_text(texts)
        stage_gen = torch.Generator().manual_seed(self._micro_batch_seed("stage"))
        mask_gen = torch.Generator().manual_seed(self._micro_batch_seed("mask", rank))
        dropped = None if self.melody_cfg is None else melody_dropped(
            texts, self.melody_cfg.attribute_dropout, random.Random(self._micro_batch_seed("melody", rank)))
        with seeded(self._micro_batch_seed("dropout", rank)):  # the adapters' dropout (forward only)
            loss, parts = self._family_loss(batch, states, text_mask, stage_gen, mask_gen, train=True,
                                            dropped=dropped)
        self.log("train/loss", loss, prog_bar=True)
        self.log("train/ppl", torch.exp(loss.detach()))
        for key, value in parts.items():
            self.log(f"train/{key}", value)
        return loss

    def _family_loss(self, batch: dict, states: torch.Tensor, text_mask: torch.Tensor, stage_gen: torch.Generator,
                     mask_gen: torch.Generator, train: bool, stage: int | None = None,
                     dropped: torch.Tensor | None = None) -> tuple[torch.Tensor, dict]:
        """(loss, extra logged values) of a batch under this family's objective; `stage` fixes MAGNeT's stage;
        `dropped` [B]: items whose melody is dropped (melody models)."""
        chroma = None if self.melody_cfg is None else batch_chroma(batch, self.model_cfg, self.melody_cfg,
                                                                   self.hparams.frame_rate, dropped)
        inputs = BatchInputs(batch["codes"], batch.get("padding_mask"), states, text_mask, self.masking_cfg,
                             stage_gen, mask_gen, stage, chroma)
        result = TRAINING_FAMILIES[self.family].objective(self.model, inputs)
        if train and result.stage is not None:
            self._stage_losses.setdefault(result.stage, []).append(float(result.loss.detach()))
        return result.loss, result.logged

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        """Per-stage losses go to the loggers directly, at Lightning's log steps: a key logged through `self.log`
        would be re-emitted with its last value at every later log step of the epoch, also when its stage was not
        drawn (stale points). Each key holds the mean over the window's micro-batches that drew its stage."""
        trainer = self.trainer
        if not self._stage_losses or trainer.fit_loop._should_accumulate() or trainer.log_every_n_steps == 0:
            return
        # The rule and step number of Lightning's own train logging: optimizer step N (1-based) is logged as N - 1
        # when N is a multiple of log_every_n_steps.
        if trainer.global_step % trainer.log_every_n_steps and not (trainer.should_stop or trainer.fast_dev_run):
            return
        metrics = {f"train/loss_stage{k}": sum(v) / len(v) for k, v in sorted(self._stage_losses.items())}
        self._stage_losses = {}
        for logger in self.loggers:  # rank 0 only: Lightning's loggers ignore other ranks
            logger.log_metrics(metrics, step=trainer.global_step - 1)

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        batch_size, num_codebooks = batch["codes"].shape[:2]
        states, text_mask = self.encode_text(list(batch["text"]))
        if not TRAINING_FAMILIES[self.family].validate_per_stage:  # one pass: every codebook, or a seeded prompt
            gen = torch.Generator().manual_seed(derive_seed(self.hparams.seed, "val", batch_idx, self.global_rank))
            mean, parts = self._family_loss(batch, states, text_mask, gen, gen, train=False)
            for key, value in parts.items():
                self.log(f"val/{key}", value, sync_dist=True, batch_size=batch_size)
        else:
            stage_list = list(range(num_codebooks)) if self.hparams.val_all_stages else [batch_idx % num_codebooks]
            losses = []
            for stage in stage_list:
                gen = torch.Generator().manual_seed(derive_seed(self.hparams.seed, "val", batch_idx, self.global_rank,
                                                                stage))
                loss, _ = self._family_loss(batch, states, text_mask, gen, gen, train=False, stage=stage)
                losses.append(loss)
                if self.hparams.val_all_stages:
                    self.log(f"val/loss_stage{stage}", loss, sync_dist=True, batch_size=batch_size)
            mean = torch.stack(losses).mean()
        self.log("val/loss", mean, prog_bar=True, sync_dist=True, batch_size=batch_size)
        self.log("val/ppl", torch.exp(mean), sync_dist=True, batch_size=batch_size)

    def generator(self, codec: Any = None, model: torch.nn.Module | None = None):
        """A `MagnetGenerator` of this module's family and settings (for callbacks): `model` default the live
        weights (pass the EMA copy to generate with it), `codec` a Codec or None (tokens only)."""

        hp = self.hparams
        return MagnetGenerator(model if model is not None else self.model, self.text_encoder.to(self.device), codec,
                               frame_rate=hp.frame_rate, sample_rate=hp.sample_rate, span_len=self.masking_cfg.span_len,
                               segment_duration=hp.segment_duration, decoding_defaults=dict(hp.get("decoding") or {}),
                               fast=False, melody=hp.get("melody"))

    # ----------------------------------------------------------------------------------------------- set-up
    def configure_optimizers(self):
        optimizer = build_optimizer(self.model.parameters(), self.optim_cfg, self.device)
        total = self.optim_cfg.total_steps or (self.trainer.max_steps if self.trainer.max_steps > 0 else 0)
        if total <= 0 and self.optim_cfg.schedule == "cosine":
            raise ValueError("set trainer.max_steps or optimizer.total_steps for the cosine schedule")
        scheduler = build_scheduler(optimizer, self.optim_cfg, total)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def configure_model(self) -> None:
        """Called by Lightning once the processes exist: activation checkpointing, then, under the FSDP2 strategy
        (`MagnetFSDPStrategy.shard`), each transformer Layer sharded, then the model (training/fsdp.py)."""
        self.model.transformer.activation_checkpointing = bool(self.hparams.get("activation_checkpointing", False))
        shard = getattr(self.trainer.strategy, "shard", None) if self._trainer is not None else None
        if shard is not None:
            shard(self.model)

    def configure_callbacks(self):
        if self.hparams.ema_every_n_steps <= 0:
            return []
        if self.lora_base is not None:  # the EMA of the adapters only
            return [TrainableEMA(stored_names(self.model), self.hparams.ema_decay, self.hparams.ema_every_n_steps)]
        return [EMA(self.hparams.ema_decay, self.hparams.ema_every_n_steps)]

    def random_parts(self) -> list[str]:
        """Which parts of this run have random weights: 'codec' (a marked codec folder), 'text_encoder'."""
        parts = ["codec"] if is_random_folder(self.hparams.codec) else []
        encoder = self._text_encoder
        if str(self.hparams.text_encoder).startswith("random:") or getattr(
                encoder, "is_random", getattr(getattr(encoder, "encoder", None), "is_random", False)):
            parts.append("text_encoder")
        return parts

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Local paths (codec, T5, init_from) recorded absolute, so the checkpoint loads from any folder; the parts
        with random weights recorded under `RANDOM_PARTS_KEY`."""
        hparams = dict(checkpoint.get("hyper_parameters") or {})
        for key in ("codec", "text_encoder", "init_from"):
            if isinstance(hparams.get(key), str):
                hparams[key] = absolute_if_local(hparams[key])
        checkpoint["hyper_parameters"] = hparams
        checkpoint[RANDOM_PARTS_KEY] = self.random_parts()
        if self.lora_base is not None:
            keep_adapters_only(checkpoint, self.model, self.lora_base)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        check_checkpoint(checkpoint, self.model, self.lora_base)

    def on_fit_start(self) -> None:
        """Start-up checks before step 1: the shards against the model (K, V, frame rate, codec, sample rate), and
        the T5 loaded now (a missing one stops the run here, not at the first batch)."""
        datamodule = getattr(self.trainer, "datamodule", None)
        check = getattr(datamodule, "check_compatible", None)
        if check is not None:
            check(self.model_cfg.num_codebooks, self.model_cfg.codebook_size, self.hparams.frame_rate,
                  codec=self.hparams.codec, sample_rate=self.hparams.sample_rate, chroma=self.hparams.get("melody"))
        _ = self.text_encoder  # the property loads the T5, or raises naming what to download
