"""Listen to training: fixed, curated prompts generated every N optimizer steps with a small sweep of guidance
strengths, logged as audio and spectrograms to every logger (`magnet_lightning.callbacks.media`).

The same prompts and seeds each time, so the clips of step 10k and step 20k differ only by training. The sweep is
over the classifier-free guidance coefficient: MAGNeT's ``max_cfg_coef`` at the first decoding step (annealed to
``min_cfg_coef`` at the last; the music default is 10), the autoregressive family's ``cfg_coef`` (default 3); 1 is no
guidance. Weights: the EMA copy when an EMA
callback holds one (the weights that are exported), else the live weights.

Every rank generates (no collective is skipped under FSDP; under DDP the other ranks would only wait), global rank
0 logs. Cost: ``len(prompts) × len(cfg_coefs)`` clips of ``duration`` seconds at ``decoding_steps`` per codebook,
in one batch per CFG value. The transformer is put in eval mode under ``torch.no_grad`` and restored.
"""
from __future__ import annotations

import logging
from typing import Any

import lightning as L
import torch

from magnet_lightning.callbacks.media import Clip, log_clips
from magnet_lightning.codec.codecs import load_codec
from magnet_lightning.utils.loudness import loudness_normalize

log = logging.getLogger(__name__)

MUSIC_PROMPTS = (
    "lo-fi hip hop beat with warm piano chords and vinyl crackle, 80 bpm",
    "energetic 80s synth pop with a driving bassline and gated drums, 120 bpm",
    "solo acoustic guitar ballad, fingerpicked, in A minor",
    "epic orchestral score with brass fanfare and timpani",
)
"""Default prompts: four contrasting genres, instruments and tempi."""


class AudioDemoCallback(L.Callback):
    """Fixed-prompt audio demos every ``every_n_steps`` optimizer steps, with a CFG sweep.

    Args:
        every_n_steps: optimizer steps between demos (also at the last step when ``at_end``).
        prompts: the captions (default: `MUSIC_PROMPTS`).
        cfg_coefs: guidance coefficients at the first step (``max_cfg_coef``), one batch each.
        duration: seconds per clip.
        decoding_steps: steps per codebook (None: the checkpoint's defaults for `duration`).
        decoding: other DecodingConfig fields (temperature, top_p, min_cfg_coef, ...).
        seed: generation seed (the same for every demo).
        codec: codec name or path for decoding (default: the module's ``hparams.codec``).
        use_ema: generate with the EMA weights when an EMA callback holds them.
        lufs: loudness of the logged clips (None: as generated).
        spectrograms: also log a spectrogram figure per clip.
        at_end: also run at the end of training when the last step is not a multiple of every_n_steps.
        group: logger key prefix (``demo/audio``, ``demo/mel``, ``demo/samples``; TensorBoard ``demo/cfgC/NN``).
    """

    def __init__(self, every_n_steps: int = 10000, prompts: list[str] | None = None,
                 cfg_coefs: list[float] | None = None, duration: float = 10.0, decoding_steps: list[int] | None = None,
                 decoding: dict[str, Any] | None = None, seed: int = 0, codec: str | None = None,
                 use_ema: bool = True, lufs: float | None = -14.0, spectrograms: bool = True, at_end: bool = True,
                 group: str = "demo") -> None:
        super().__init__()
        self.prompts = list(prompts or MUSIC_PROMPTS)
        self.cfg_coefs = [float(c) for c in (cfg_coefs if cfg_coefs is not None else [1.0, 3.0, 10.0])]
        if every_n_steps < 1 or not self.prompts or not self.cfg_coefs or duration <= 0:
            raise ValueError("AudioDemoCallback needs every_n_steps >= 1, at least one prompt and one cfg_coefs "
                             "value, and duration > 0")
        self.every_n_steps = every_n_steps
        self.duration = duration
        self.decoding = dict(decoding or {})
        if decoding_steps is not None:
            self.decoding["decoding_steps"] = list(decoding_steps)
        self.seed, self.codec_name, self.use_ema, self.lufs = seed, codec, use_ema, lufs
        self.spectrograms, self.at_end, self.group = spectrograms, at_end, group
        self._codec: Any = None
        self._last_step = -1

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        step = trainer.global_step
        if step > 0 and step % self.every_n_steps == 0 and step != self._last_step:
            self.run(trainer, pl_module)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.at_end and trainer.global_step not in (0, self._last_step):
            self.run(trainer, pl_module)

    def _weights(self, trainer: L.Trainer, pl_module: L.LightningModule) -> torch.nn.Module:
        """The transformer to generate with: the EMA copy of an EMA (WeightAveraging) callback, else the live one."""
        from lightning.pytorch.callbacks import WeightAveraging

        if self.use_ema:
            for callback in trainer.callbacks:
                # WeightAveraging keeps its torch AveragedModel in `_average_model`; `.module` is the averaged copy.
                average = getattr(callback, "_average_model", None) if isinstance(callback, WeightAveraging) else None
                if average is not None:
                    return average.module.model
        return pl_module.model

    def run(self, trainer: L.Trainer, pl_module: L.LightningModule) -> list[Clip]:
        """Generate the demo clips now and log them (rank 0); returns them."""

        self._last_step = trainer.global_step
        if self._codec is None:
            self._codec = load_codec(self.codec_name or pl_module.hparams.codec, device=pl_module.device)
        model = self._weights(trainer, pl_module)
        generator = pl_module.generator(self._codec.to(pl_module.device), model=model)
        clips = []
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                for coef in self.cfg_coefs:
                    result = generator.generate(self.prompts, duration=self.duration, seed=self.seed,
                                                **{**self.decoding, generator.guidance_option: coef})
                    for i, (prompt, wav) in enumerate(zip(self.prompts, result.audio.float().cpu())):
                        if self.lufs is not None:
                            wav = loudness_normalize(wav, result.sample_rate, self.lufs)
                        clips.append(Clip(f"{self.group}/cfg{coef:g}/{i:02d}", wav, result.sample_rate,
                                          f"{prompt} | cfg {coef:g}", {"prompt": prompt, "cfg": coef,
                                                                      "step": trainer.global_step}))
        finally:
            model.train(was_training)
        if trainer.is_global_zero:
            log_clips(trainer, clips, self.group, spectrograms=self.spectrograms)
            log.info("%s: %d clips (%d prompts x cfg %s) at step %d", self.group, len(clips), len(self.prompts),
                     self.cfg_coefs, trainer.global_step)
        return clips

    def state_dict(self) -> dict[str, Any]:
        return {"last_step": self._last_step}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._last_step = int(state_dict.get("last_step", -1))
