"""The generation API: `MagnetGenerator` (a loaded model with its text encoder and codec) and `generate` (one call,
with a cache of loaded checkpoints). Each family's decoder and the options it takes are in `generation.families`.

Shapes: B batch, K codebooks, T frames, C channels, N samples.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

from magnet_lightning.generation.autoregressive import ARDecodingConfig
from magnet_lightning.generation.autoregressive import generate as ar_generate
from magnet_lightning.generation.common import ProgressFn
from magnet_lightning.generation.hybrid_magnet import DEFAULT_PROMPT_SECONDS
from magnet_lightning.generation.magnet import continuation, decode, infilling
from magnet_lightning.generation.magnet_config import DecodingConfig
from magnet_lightning.generation.options import decoding_config_for

log = logging.getLogger(__name__)

@dataclass
class GenerationResult:
    tokens: torch.Tensor
    """long [B, K, T] codec tokens."""
    audio: torch.Tensor | None
    """float [B, C, N] waveform at `sample_rate` (None when audio decoding was not asked for)."""
    sample_rate: int
    texts: list[str | None]
    config: DecodingConfig | ARDecodingConfig


def _is_codes(x: torch.Tensor) -> bool:
    return not torch.is_floating_point(x)


class MagnetGenerator:
    """A loaded model with its text encoder and codec, ready to generate many batches.

    The family is the model's (`model.family`): MagnetTransformer decodes iteratively, ARTransformer
    autoregressively (always with its static KV cache; no CUDA-graph fast path yet, and no infilling).

    Args:
        model: MagnetTransformer or ARTransformer (eval mode, on its device).
        text_encoder: TextEncoder (or anything with its call contract), or None for unconditional use only.
        codec: Codec, or None (tokens only; prompts and edits must then be given as tokens).
        frame_rate, sample_rate, span_len, segment_duration: the checkpoint's metadata.
        decoding_defaults: decoding options recorded in the checkpoint ('preset' + DecodingConfig fields, or
            ARDecodingConfig fields for the autoregressive family).
        fast: FastDecoder (static buffers, CUDA graphs, bf16 weights); default: on for CUDA MAGNeT models.
        compile: torch.compile the per-step forward in the fast path.
    """

    def __init__(self, model, text_encoder=None, codec=None, *, frame_rate: float = 50.0, sample_rate: int = 32000,
                 span_len: int = 3, segment_duration: float = 10.0, decoding_defaults: dict | None = None,
                 fast: bool | None = None, compile: bool = False):
        self.model = model
        self.text_encoder = text_encoder
        self.codec = codec
        self.frame_rate = float(codec.frame_rate if codec is not None else frame_rate)
        self.sample_rate = int(codec.sample_rate if codec is not None else sample_rate)
        self.span_len = span_len
        self.segment_duration = segment_duration
        self.decoding_defaults = dict(decoding_defaults or {})
        self.device = next(model.parameters()).device
        self.family = getattr(model, "family", "magnet")
        if self.family != "magnet" and fast:
            raise ValueError(f"fast=True: the {self.family} family has no fast decoder yet")
        self.fast = (self.device.type == "cuda" and self.family == "magnet") if fast is None else fast
        self.compile = compile
        self._fast_decoder = None
        if codec is not None and (codec.num_codebooks, codec.codebook_size) != (
                model.cfg.num_codebooks, model.cfg.codebook_size):
            raise ValueError(f"codec {codec.name!r} has K={codec.num_codebooks}, V={codec.codebook_size} but the model "
                             f"expects K={model.cfg.num_codebooks}, V={model.cfg.codebook_size}")

    @classmethod
    def from_pretrained(cls, ckpt: str | Path, *, device: str | torch.device | None = None,
                        text_encoder: Any = None, codec: Any = None, allow_random_text_encoder: bool = False,
                        fast: bool | None = None, compile: bool = False) -> MagnetGenerator:
        """Load our Lightning checkpoint or an audiocraft state_dict.bin (checkpoint.load_pretrained).

        text_encoder / codec: a name or path overriding the checkpoint's, or a ready object; codec=False skips it.
        """
        from magnet_lightning.checkpoint.pretrained import load_pretrained
        from magnet_lightning.codec.codecs import load_codec
        from magnet_lightning.models.conditioning import TextEncoder

        device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        pre = load_pretrained(ckpt, map_location=device)
        if text_encoder is None or isinstance(text_encoder, str):
            text_encoder = TextEncoder.from_pretrained(text_encoder or pre.text_encoder,
                                                       allow_random=allow_random_text_encoder).to(device)
        if codec is None or isinstance(codec, str):
            codec = load_codec(codec or pre.codec, device=device)
        return cls(pre.model.eval(), text_encoder, codec or None, frame_rate=pre.frame_rate,
                   sample_rate=pre.sample_rate, span_len=pre.span_len, segment_duration=pre.segment_duration,
                   decoding_defaults=pre.decoding, fast=fast, compile=compile)

    @property
    def autoregressive(self) -> bool:
        return self.family == "musicgen"

    @property
    def guidance_option(self) -> str:
        """The decoding option of the guidance strength: `cfg_coef` (autoregressive) or `max_cfg_coef` (MAGNeT's
        coefficient at the first step)."""
        return "cfg_coef" if self.autoregressive else "max_cfg_coef"

    # -- options ---------------------------------------------------------------------------------------------

    def decoding_config(self, duration: float | None = None, preset: str | None = None,
                        **overrides) -> DecodingConfig | ARDecodingConfig:
        """The options of one generation: see `decoding_config_for` (None overrides are ignored)."""
        return decoding_config_for(self.family, self.decoding_defaults, span_len=self.span_len,
                                   segment_duration=self.segment_duration,
                                   num_codebooks=self.model.cfg.num_codebooks, duration=duration, preset=preset,
                                   overrides=overrides)

    def num_steps(self, config: DecodingConfig | ARDecodingConfig, duration: float | None = None) -> int:
        """Model steps of one generation of `duration` seconds without a prompt (for progress bars)."""
        if isinstance(config, ARDecodingConfig):
            pattern = self.model.pattern
            return self.num_frames(duration or self.segment_duration) + pattern.max_delay - pattern.delays[0]
        if self.family == "hybrid":
            pattern = self.model.pattern
            prompt = self.hybrid_prompt_frames(duration)
            return sum(config.decoding_steps) + (prompt + pattern.max_delay - pattern.delays[0] if prompt else 0)
        return sum(config.decoding_steps)

    def hybrid_prompt_frames(self, duration: float | None = None, prompt_seconds: float | None = None) -> int:
        """Hybrid-MAGNeT: frames generated autoregressively (the checkpoint's prompt_seconds, default 3 s; always
        fewer than the clip's)."""
        seconds = prompt_seconds if prompt_seconds is not None else \
            self.decoding_defaults.get("prompt_seconds") or DEFAULT_PROMPT_SECONDS
        return min(self._frame(seconds), self.num_frames(duration or self.segment_duration) - 1)

    def num_frames(self, duration: float) -> int:
        if duration <= 0:
            raise ValueError(f"duration must be positive, got {duration}")
        return max(1, round(duration * self.frame_rate))

    # -- conditioning and constraints --------------------------------------------------------------------------

    def _text(self, texts: list[str | None]) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        if all(not t for t in texts):
            return None, None
        if self.text_encoder is None:
            raise ValueError("this generator has no text encoder: only unconditional generation (texts None)")
        states, mask = self.text_encoder(texts)
        return states.to(self.device), mask.to(self.device)

    def _codes(self, x: torch.Tensor, sample_rate: int | None, batch: int, what: str) -> torch.Tensor:
        """Tokens [B, K, T] of audio ([C, N] / [B, C, N] float, through the codec) or tokens ([K, T] / [B, K, T])."""
        if _is_codes(x):
            codes = x if x.dim() == 3 else x[None]
        else:
            if self.codec is None:
                raise ValueError(f"{what} audio needs a codec; pass tokens instead or load one")
            if sample_rate is None:
                raise ValueError(f"{what} audio needs its sample rate")
            wav = x if x.dim() == 3 else x[None]
            codes = self.codec.encode(wav.to(self.device), sample_rate)
        if codes.shape[0] == 1 and batch > 1:
            codes = codes.expand(batch, -1, -1)
        if codes.shape[0] != batch or codes.shape[1] != self.model.cfg.num_codebooks:
            raise ValueError(f"{what} tokens have shape {tuple(codes.shape)}; expected [{batch} (or 1), "
                             f"{self.model.cfg.num_codebooks}, T]")
        return codes.to(self.device).long()

    def _frame(self, seconds: float) -> int:
        return math.floor(seconds * self.frame_rate + 1e-6)

    # -- generation ----------------------------------------------------------------------------------------------

    def generate(
        self,
        texts: Sequence[str | None] | None = None,
        *,
        num_samples: int | None = None,
        duration: float | None = None,
        prompt: torch.Tensor | None = None,
        prompt_sample_rate: int | None = None,
        infill: tuple[float, float] | None = None,
        decoding: DecodingConfig | ARDecodingConfig | None = None,
        preset: str | None = None,
        seed: int | None = None,
        decode_audio: bool = True,
        progress: ProgressFn | None = None,
        rescorer: MagnetGenerator | None = None,
        **decoding_overrides,
    ) -> GenerationResult:
        """Generate a batch.

        Args:
            texts: captions (None / "" entries are unconditional); None: `num_samples` unconditional generations.
            duration: seconds (default: the training segment); the output has exactly round(duration * frame rate)
                frames. With `infill` it is the edited clip's length instead.
            prompt: audio [C, N] / [B, C, N] (float, give prompt_sample_rate) or tokens [K, T] / [B, K, T] (long).
                Alone: continued (its tokens kept). With `infill=(start_s, end_s)`: the clip to edit; only frames in
                [start, end) are regenerated.
            decoding: a full DecodingConfig (ARDecodingConfig for the autoregressive family); otherwise preset +
                checkpoint defaults + `decoding_overrides` (any field of that config, e.g. temperature=2.0,
                decoding_steps=[20, 10, 10, 10]).
            seed: seeds a torch.Generator on the model's device (same seed -> same tokens).
            rescorer: an autoregressive generator (e.g. MusicGen-small for MAGNeT-small) whose probabilities rank the
                spans with weight 1 - rescore_weight (paper §3.3, Eq. 5; see rescoring.py). MAGNeT only.
        """
        if texts is None:
            texts = [None] * (num_samples or 1)
        texts = list(texts)
        if not texts:
            raise ValueError("texts is empty")
        batch = len(texts)
        if decoding is not None and (decoding_overrides or preset):
            raise ValueError("pass either a DecodingConfig or preset/overrides, not both")
        config = decoding or self.decoding_config(duration, preset, **decoding_overrides)
        expected = ARDecodingConfig if self.autoregressive else DecodingConfig
        if not isinstance(config, expected):
            raise ValueError(f"a {self.family} model decodes with a {expected.__name__}, got {type(config).__name__}")
        if self.autoregressive:
            if rescorer is not None:
                raise ValueError("rescorer: rescoring ranks MAGNeT's spans; an autoregressive model has none")
            return self._generate_ar(texts, duration, prompt, prompt_sample_rate, infill, config, seed, decode_audio,
                                     progress)
        if self.family == "hybrid":
            if prompt is not None or infill is not None or rescorer is not None:
                raise ValueError("Hybrid-MAGNeT generates its own prompt: no prompt, infill or rescorer")
            return self._generate_hybrid(texts, duration, config, seed, decode_audio, progress)
        given = fixed = None
        if infill is not None:
            if prompt is None:
                raise ValueError("infill needs the clip to edit as `prompt` (audio or tokens)")
            codes = self._codes(prompt, prompt_sample_rate, batch, "infill")
            start, end = self._frame(infill[0]), self._frame(infill[1])
            given, fixed = infilling(codes, start, min(end, codes.shape[-1]))
            num_frames = codes.shape[-1]
        else:
            num_frames = self.num_frames(duration or self.segment_duration)
            if prompt is not None:
                codes = self._codes(prompt, prompt_sample_rate, batch, "prompt")
                given, fixed = continuation(codes, num_frames, self.model.mask_token_id)
        states, mask = self._text(texts)
        kwargs = {"batch_size": batch, "given": given, "fixed": fixed, "generator": self._generator(seed),
                  "progress": progress}
        if rescorer is not None and config.rescore_weight < 1.0:
            from magnet_lightning.generation.rescoring import rescorer_for

            kwargs["rescorer"] = rescorer_for(rescorer, texts, states, mask, self.text_encoder)
        if self.fast:
            tokens = self._fast().decode(states, mask, num_frames, config, **kwargs)
        else:
            tokens = decode(self.model, states, mask, num_frames, config, **kwargs)
        return GenerationResult(tokens, self._audio(tokens, decode_audio), self.sample_rate, texts, config)

    def _generate_ar(self, texts, duration, prompt, prompt_sample_rate, infill, config, seed, decode_audio,
                     progress) -> GenerationResult:
        if infill is not None:
            raise ValueError("infill: the autoregressive family only continues a prompt (infilling is MAGNeT's)")
        batch = len(texts)
        codes = None if prompt is None else self._codes(prompt, prompt_sample_rate, batch, "prompt")
        states, mask = self._text(texts)
        tokens = ar_generate(self.model, states, mask, self.num_frames(duration or self.segment_duration), config,
                             codes, batch_size=batch, generator=self._generator(seed), progress=progress)
        return GenerationResult(tokens, self._audio(tokens, decode_audio), self.sample_rate, texts, config)

    def _generate_hybrid(self, texts, duration, config, seed, decode_audio, progress) -> GenerationResult:
        from magnet_lightning.generation.hybrid_magnet import generate as hybrid_generate

        states, mask = self._text(texts)
        num_frames = self.num_frames(duration or self.segment_duration)
        tokens = hybrid_generate(self.model, states, mask, num_frames, self.hybrid_prompt_frames(duration), config,
                                 batch_size=len(texts), generator=self._generator(seed), progress=progress)
        return GenerationResult(tokens, self._audio(tokens, decode_audio), self.sample_rate, texts, config)

    def _generator(self, seed: int | None) -> torch.Generator | None:
        return None if seed is None else torch.Generator(device=self.device).manual_seed(int(seed))

    def _audio(self, tokens: torch.Tensor, decode_audio: bool) -> torch.Tensor | None:
        if not decode_audio:
            return None
        if self.codec is None:
            raise ValueError("decode_audio=True needs a codec (or pass decode_audio=False)")
        with torch.no_grad():
            return self.codec.decode(tokens).float()

    def _fast(self):
        if self._fast_decoder is None:
            from magnet_lightning.generation.fast import FastDecoder

            self._fast_decoder = FastDecoder(self.model, compile=self.compile)
        return self._fast_decoder


@lru_cache(maxsize=2)
def _cached_generator(ckpt: str, device: str | None, text_encoder: str | None, codec: str | None,
                      allow_random_text_encoder: bool) -> MagnetGenerator:
    return MagnetGenerator.from_pretrained(ckpt, device=device, text_encoder=text_encoder, codec=codec,
                                           allow_random_text_encoder=allow_random_text_encoder)


def generate(texts: Sequence[str | None] | None = None, *, ckpt: str | Path | None = None,
             generator: MagnetGenerator | None = None, device: str | None = None, text_encoder: str | None = None,
             codec: str | None = None, allow_random_text_encoder: bool = False, **kwargs) -> GenerationResult:
    """One-call generation: `generate(["calm piano"], ckpt="model.ckpt", duration=10, seed=0)`.

    The loaded checkpoint is cached (two most recent), so repeated calls do not reload it. Keyword arguments are
    those of `MagnetGenerator.generate`.
    """
    if generator is None:
        if ckpt is None:
            raise ValueError("pass ckpt=PATH (our .ckpt or an audiocraft state_dict.bin) or a MagnetGenerator")
        generator = _cached_generator(str(ckpt), device, text_encoder, codec, allow_random_text_encoder)
    return generator.generate(texts, **kwargs)
