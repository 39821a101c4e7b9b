"""The generation API: `MagnetGenerator` (a loaded model with its text encoder and codec) and `generate` (one call,
with a cache of loaded checkpoints). What each family's decoder takes is its entry in `generation/families.py`; the
generator turns captions, audio and seconds into a token-level `DecodeRequest` and hands it to that decoder.

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

from magnet_lightning.checkpoint.pretrained import load_pretrained
from magnet_lightning.codec.codecs import load_codec
from magnet_lightning.codec.melody import MelodyExtractor
from magnet_lightning.generation.common import ProgressFn
from magnet_lightning.generation.families import decoder_family, decoding_config_for, families_where, family_label
from magnet_lightning.generation.fast import FastDecoder
from magnet_lightning.generation.hybrid_magnet import DEFAULT_PROMPT_SECONDS
from magnet_lightning.generation.long_form import LongFormPlan, long_form_plan, plan_windows
from magnet_lightning.generation.melody import request_melody
from magnet_lightning.generation.request import DecodeRequest
from magnet_lightning.generation.rescoring import rescorer_for
from magnet_lightning.models.conditioning import TextEncoder
from magnet_lightning.models.registry import DEFAULT_FAMILY

log = logging.getLogger(__name__)


@dataclass
class GenerationResult:
    tokens: torch.Tensor
    """long [B, K, T] codec tokens."""
    audio: torch.Tensor | None
    """float [B, C, N] waveform at `sample_rate` (None when audio decoding was not asked for)."""
    sample_rate: int
    texts: list[str | None]
    config: Any
    """The decoding options used (the family's config class)."""


def _is_codes(x: torch.Tensor) -> bool:
    return not torch.is_floating_point(x)


class MagnetGenerator:
    """A loaded model with its text encoder and codec, ready to generate many batches.

    The family is the model's (`model.family`); `self.decoder` is its entry in the family table: which decoding
    options it takes, whether it continues prompts, infills, is rescored, has a fast path.

    Args:
        model: a model of a registered family (eval mode, on its device).
        text_encoder: TextEncoder (or anything with its call contract), or None for unconditional use only.
        codec: Codec, or None (tokens only; prompts and edits must then be given as tokens).
        frame_rate, sample_rate, span_len, segment_duration: the checkpoint's metadata.
        decoding_defaults: decoding options recorded in the checkpoint (its family's option names; 'preset').
        fast: FastDecoder (static buffers, CUDA graphs, bf16 weights); default: on CUDA for families that have one.
        compile: torch.compile the per-step forward in the fast path.
        melody: a melody-conditioned model's chroma settings (config.MelodyConfig or its dict; the checkpoint's).
        stems_model: where htdemucs is read from for melodies ('htdemucs': the Hugging Face cache; a folder), or a
            StemSeparator.
    """

    def __init__(self, model, text_encoder=None, codec=None, *, frame_rate: float = 50.0, sample_rate: int = 32000,
                 span_len: int = 3, segment_duration: float = 10.0, decoding_defaults: dict | None = None,
                 fast: bool | None = None, compile: bool = False, melody: Any = None, stems_model: Any = "htdemucs"):
        self.model, self.text_encoder, self.codec = model, text_encoder, codec
        self.frame_rate = float(codec.frame_rate if codec is not None else frame_rate)
        self.sample_rate = int(codec.sample_rate if codec is not None else sample_rate)
        self.span_len = span_len
        self.segment_duration = segment_duration
        self.decoding_defaults = dict(decoding_defaults or {})
        self.device = next(model.parameters()).device
        self.family = getattr(model, "family", DEFAULT_FAMILY)
        self.decoder = decoder_family(self.family)
        if fast and not self.decoder.fast_path:
            raise ValueError(f"fast=True: the {family_label(self.family)} family has no fast decoder yet")
        self.fast = (self.device.type == "cuda" and self.decoder.fast_path) if fast is None else fast
        self.compile = compile
        self._fast_decoder = None
        self._announced: LongFormPlan | None = None
        if model.cfg.chroma_bins and melody is None:
            raise ValueError("a melody-conditioned model needs its chroma settings (melody=, the checkpoint's)")
        self.melody_extractor = MelodyExtractor(melody, stems_model, self.device) if model.cfg.chroma_bins else None
        if codec is not None and (codec.num_codebooks, codec.codebook_size) != (
                model.cfg.num_codebooks, model.cfg.codebook_size):
            raise ValueError(f"codec {codec.name!r} has K={codec.num_codebooks}, V={codec.codebook_size} but the model "
                             f"expects K={model.cfg.num_codebooks}, V={model.cfg.codebook_size}")

    @classmethod
    def from_pretrained(cls, ckpt: str | Path, *, device: str | torch.device | None = None,
                        text_encoder: Any = None, codec: Any = None, allow_random_text_encoder: bool = False,
                        fast: bool | None = None, compile: bool = False,
                        dtype: str | torch.dtype | None = None,
                        adapter: str | Path | None = None, stems_model: Any = "htdemucs") -> MagnetGenerator:
        """Load our Lightning checkpoint or an audiocraft state_dict.bin (checkpoint.load_pretrained).

        dtype: the transformer's weights (float32, bfloat16 or float16; default float32), loaded straight onto `device`.

        text_encoder / codec: a name or path overriding the checkpoint's, or a ready object; codec=False skips it.
        adapter: a LoRA adapter folder or LoRA run checkpoint trained on `ckpt`, merged into its weights.
        stems_model: a melody model's stem separation (htdemucs from the Hugging Face cache, or a folder).
        """
        device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        pre = load_pretrained(ckpt, device=device, dtype=dtype, adapter=adapter)
        if text_encoder is None or isinstance(text_encoder, str):
            text_encoder = TextEncoder.from_pretrained(text_encoder or pre.text_encoder,
                                                       allow_random=allow_random_text_encoder).to(device)
        if codec is None or isinstance(codec, str):
            codec = load_codec(codec or pre.codec, device=device)
        return cls(pre.model.eval(), text_encoder, codec or None, frame_rate=pre.frame_rate,
                   sample_rate=pre.sample_rate, span_len=pre.span_len, segment_duration=pre.segment_duration,
                   decoding_defaults=pre.decoding, fast=fast, compile=compile, melody=pre.melody,
                   stems_model=stems_model)

    @property
    def guidance_option(self) -> str:
        """The decoding option of the guidance strength (`cfg_coef`, or MAGNeT's `max_cfg_coef` at the first step)."""
        return self.decoder.guidance_option

    # -- options ---------------------------------------------------------------------------------------------

    def decoding_config(self, duration: float | None = None, preset: str | None = None, **overrides) -> Any:
        """The options of one generation (of one window of it when it is longer than the segment): see
        `families.decoding_config_for` (None overrides are ignored)."""
        return decoding_config_for(self.family, self.decoding_defaults, span_len=self.span_len,
                                   segment_duration=self.segment_duration,
                                   num_codebooks=self.model.cfg.num_codebooks, duration=self.window_duration(duration),
                                   preset=preset, overrides=overrides)

    def num_steps(self, config: Any, duration: float | None = None, extend_stride: float | None = None) -> int:
        """Model steps of one generation of `duration` seconds without a prompt, every long-form window counted (for
        progress bars)."""
        frames = self.num_frames(duration or self.segment_duration)
        plan = self.long_form(frames, extend_stride)
        windows = [(frames, 0)] if plan is None else [(w.length, w.prompt) for w in plan_windows(
            frames, plan.window_frames, plan.stride_frames)]
        return sum(self.decoder.num_steps(self.model, config, length, self.own_prompt_frames(config, length), given)
                   for length, given in windows)

    def own_prompt_frames(self, config: Any, num_frames: int) -> int:
        """Frames a family that generates its own prompt (Hybrid-MAGNeT) generates autoregressively: its
        `prompt_seconds` (the checkpoint's, default 3 s), always fewer than the clip's; 0 for other families."""
        if not self.decoder.own_prompt:
            return 0
        seconds = getattr(config, "prompt_seconds", None) or DEFAULT_PROMPT_SECONDS
        return min(self._frame(seconds), num_frames - 1)

    # -- long-form -----------------------------------------------------------------------------------------------

    def window_duration(self, duration: float | None = None) -> float:
        """Seconds one decoder call covers: the generation's, at most the checkpoint's segment (long-form windows)."""
        return min(duration or self.segment_duration, self.segment_duration)

    def default_stride(self) -> float:
        """The family's default long-form stride for this checkpoint's segment, in seconds (its table entry)."""
        return self.decoder.long_form.stride_seconds(self.segment_duration)

    def long_form(self, num_frames: int, extend_stride: float | None = None,
                  prompt_frames: int = 0) -> LongFormPlan | None:
        """The windows of a generation of T frames after a prompt of Tp frames: None within the checkpoint's segment
        (one decoder call, as always). ValueError for a stride not below the segment or a prompt of a whole window."""
        stride = self.default_stride() if extend_stride is None else extend_stride
        if not 0 < stride < self.segment_duration or self._frame(stride) < 1:
            raise ValueError(f"extend_stride={stride:g} s: the stride must be above 0 and below the checkpoint's "
                             f"{self.segment_duration:g}-s segment (the window)")
        window = self.num_frames(self.segment_duration)
        if num_frames > window and prompt_frames >= window:
            raise ValueError(f"the prompt is {prompt_frames / self.frame_rate:g} s, not shorter than the checkpoint's "
                             f"{self.segment_duration:g}-s segment: a long-form generation continues a prompt shorter "
                             "than one window; shorten the prompt")
        return long_form_plan(num_frames, window, self._frame(stride), prompt_frames)

    def _announce(self, plan: LongFormPlan | None) -> None:
        """One log line per new long-form plan."""
        if plan is not None and plan != self._announced:
            log.info(plan.describe(self.frame_rate))
            self._announced = plan

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

    def check_takes(self, prompt: bool = False, infill: bool = False, rescorer: bool = False) -> None:
        """A ValueError naming this family when it does not take a prompt, an infill or a rescorer."""
        spec, label = self.decoder, family_label(self.family)
        for wanted, takes, what, who in ((prompt, spec.prompt, "a prompt", dict(prompt=True)),
                                         (infill, spec.infill, "infilling", dict(infill=True)),
                                         (rescorer, spec.rescored, "a rescorer", dict(rescored=True))):
            if wanted and not takes:
                raise ValueError(f"the {label} family takes no {what} (families that do: "
                                 f"{', '.join(families_where(**who))})")

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
        decoding: Any = None,
        preset: str | None = None,
        seed: int | None = None,
        decode_audio: bool = True,
        progress: ProgressFn | None = None,
        rescorer: MagnetGenerator | None = None,
        extend_stride: float | None = None,
        melody: Any = None,
        melody_sample_rate: int | None = None,
        **decoding_overrides,
    ) -> GenerationResult:
        """Generate a batch.

        Args:
            texts: captions (None / "" entries are unconditional); None: `num_samples` unconditional generations.
            duration: seconds (default: the training segment); the output has exactly round(duration * frame rate)
                frames. With `infill` it is the edited clip's length instead.
            prompt: audio [C, N] / [B, C, N] (float, give prompt_sample_rate) or tokens [K, T] / [B, K, T] (long).
                Alone: continued (its tokens kept). With `infill=(start_s, end_s)`: the clip to edit; only frames in
                [start, end) are regenerated (families with `infill` in their table).
            decoding: a full config of the family's class; otherwise preset + checkpoint defaults +
                `decoding_overrides` (any option the family takes, e.g. temperature=2.0).
            seed: seeds a torch.Generator on the model's device (same seed -> same tokens).
            rescorer: an autoregressive generator (e.g. MusicGen-small for MAGNeT-small) whose probabilities rank the
                spans with weight 1 - rescore_weight (paper §3.3, Eq. 5; see rescoring.py); per window in long-form.
            extend_stride: seconds; a duration beyond the checkpoint's segment is generated in windows of the segment,
                each continuing the last (segment - stride) seconds of the one before (long_form.py; logged once).
                Default: the family's (`default_stride`: 18 s for a 30-s MusicGen, as the reference).
            melody: melody-conditioned models: waveforms [C, N] (every item), [B, C, N] or a list of [C, N] / None
                (None: no melody for that item) at `melody_sample_rate` (generation/melody.py).
        """
        texts = list(texts) if texts is not None else [None] * (num_samples or 1)
        if not texts:
            raise ValueError("texts is empty")
        if decoding is not None and (decoding_overrides or preset):
            raise ValueError("pass either a decoding config or preset/overrides, not both")
        config = decoding or self.decoding_config(duration, preset, **decoding_overrides)
        if not isinstance(config, self.decoder.config_class):
            raise ValueError(f"a {family_label(self.family)} model decodes with a "
                             f"{self.decoder.config_class.__name__}, got {type(config).__name__}")
        self.check_takes(prompt is not None, infill is not None, rescorer is not None)
        if infill is not None and prompt is None:
            raise ValueError("infill needs the clip to edit as `prompt` (audio or tokens)")
        request = self._request(texts, config, duration, prompt, prompt_sample_rate, infill, seed, progress,
                                extend_stride)
        request_melody(self, request, melody, melody_sample_rate)
        if rescorer is not None and config.rescore_weight < 1.0:
            request.rescorer = rescorer_for(rescorer, texts, request.text_states, request.text_mask,
                                            self.text_encoder)
        tokens = self.decoder.decode(self.model, request)
        return GenerationResult(tokens, self._audio(tokens, decode_audio), self.sample_rate, texts, config)

    def _request(self, texts: list[str | None], config: Any, duration: float | None, prompt, prompt_sample_rate,
                 infill, seed: int | None, progress: ProgressFn | None,
                 extend_stride: float | None = None) -> DecodeRequest:
        """The token-level request of one batch: text states, the prompt's or the edited clip's tokens, lengths."""
        batch = len(texts)
        states, mask = self._text(texts)
        codes = None if prompt is None else self._codes(prompt, prompt_sample_rate, batch,
                                                        "prompt" if infill is None else "infill")
        span = None
        if infill is not None:
            num_frames = codes.shape[-1]
            span = (self._frame(infill[0]), min(self._frame(infill[1]), num_frames))
        else:
            num_frames = self.num_frames(duration or self.segment_duration)
        plan = self.long_form(num_frames, extend_stride, 0 if codes is None or span is not None else codes.shape[-1])
        self._announce(plan)
        window = num_frames if plan is None else plan.window_frames
        return DecodeRequest(config, states, mask, batch, num_frames, codes, span,
                             self.own_prompt_frames(config, min(num_frames, window)), self._generator(seed), progress,
                             fast=self._fast() if self.fast else None,
                             window_frames=None if plan is None else plan.window_frames,
                             stride_frames=None if plan is None else plan.stride_frames)

    def _generator(self, seed: int | None) -> torch.Generator | None:
        return None if seed is None else torch.Generator(device=self.device).manual_seed(int(seed))

    def _audio(self, tokens: torch.Tensor, decode_audio: bool) -> torch.Tensor | None:
        if not decode_audio:
            return None
        if self.codec is None:
            raise ValueError("decode_audio=True needs a codec (or pass decode_audio=False)")
        with torch.no_grad():
            return self.codec.decode(tokens).float()

    def _fast(self) -> FastDecoder:
        if self._fast_decoder is None:
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
