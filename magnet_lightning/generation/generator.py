"""The generation API: `MagnetGenerator` (a loaded model with its text encoder and codec) and `generate` (one call,
with a cache of loaded checkpoints). What each family's decoder takes is its entry in `generation/families.py`; the
generator turns captions, audio and seconds into a token-level `DecodeRequest` and hands it to that decoder.

Shapes: B batch, K codebooks, T frames, C channels, N samples.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

from magnet_lightning.checkpoint.facts import CheckpointFacts
from magnet_lightning.checkpoint.pretrained import load_pretrained
from magnet_lightning.codec.codecs import load_codec
from magnet_lightning.codec.melody import MelodyExtractor
from magnet_lightning.generation.common import ProgressFn
from magnet_lightning.generation.families import decoder_family, family_label
from magnet_lightning.generation.fast import FastDecoder
from magnet_lightning.generation.melody import request_melody
from magnet_lightning.generation.plan import GenerationPlan, make_plan, options_config
from magnet_lightning.generation.request import DecodeRequest, GenerationRequest
from magnet_lightning.generation.rescoring import rescorer_for
from magnet_lightning.models.conditioning import TextEncoder
from magnet_lightning.models.registry import DEFAULT_FAMILY
from magnet_lightning.utils.startup import start_up

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

    The family is the model's (`model.family`); `self.decoder` is its entry in the family table. Each generation
    runs a plan (generation/plan.py) built from the checkpoint's facts (`self.facts`) and the request before any
    decoding: `plan(...)` builds one, `generate(...)` builds one unless it is given.

    Args:
        model: a model of a registered family (eval mode, on its device).
        text_encoder: TextEncoder (or anything with its call contract), or None for unconditional use only.
        codec: Codec, or None (tokens only; prompts and edits must then be given as tokens).
        frame_rate, sample_rate, span_len, segment_duration: the checkpoint's metadata.
        decoding_defaults: decoding options recorded in the checkpoint (its family's option names; 'preset').
        fast: FastDecoder (static buffers, CUDA graphs, bf16 weights); default: on CUDA for families that have one.
        compile: torch.compile the per-step forward in the fast path.
        name: the checkpoint as the user named it (messages, plans).
        melody: a melody-conditioned model's chroma settings (config.MelodyConfig or its dict; the checkpoint's).
        stems_model: where htdemucs is read from for melodies ('htdemucs': the Hugging Face cache; a folder), or a
            StemSeparator.
    """

    def __init__(self, model, text_encoder=None, codec=None, *, frame_rate: float = 50.0, sample_rate: int = 32000,
                 span_len: int = 3, segment_duration: float = 10.0, decoding_defaults: dict | None = None,
                 fast: bool | None = None, compile: bool = False, name: str = "the model", melody: Any = None,
                 stems_model: Any = "htdemucs"):
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
        self._announced: tuple | None = None
        cfg = model.cfg
        if cfg.chroma_bins and melody is None:
            raise ValueError("a melody-conditioned model needs its chroma settings (melody=, the checkpoint's)")
        self.melody_extractor = MelodyExtractor(melody, stems_model, self.device) if cfg.chroma_bins else None
        if codec is not None and (codec.num_codebooks, codec.codebook_size) != (cfg.num_codebooks, cfg.codebook_size):
            raise ValueError(f"codec {codec.name!r} has K={codec.num_codebooks}, V={codec.codebook_size} but the model "
                             f"expects K={cfg.num_codebooks}, V={cfg.codebook_size}")
        pattern = getattr(model, "pattern", None)
        self.facts = CheckpointFacts(
            self.family, cfg.num_codebooks, cfg.codebook_size, segment_duration, getattr(codec, "name", ""), "",
            span_len, self.decoding_defaults, name, self.frame_rate, (), self.sample_rate,
            pattern.delays if pattern is not None else None,
            asdict(self.melody_extractor.cfg) if self.melody_extractor else None)

    @classmethod
    def from_pretrained(cls, ckpt: str | Path, *, device: str | torch.device | None = None,
                        text_encoder: Any = None, codec: Any = None, allow_random_text_encoder: bool = False,
                        fast: bool | None = None, compile: bool = False,
                        dtype: str | torch.dtype | None = None,
                        adapter: str | Path | None = None, stems_model: Any = "htdemucs") -> MagnetGenerator:
        """Load our Lightning checkpoint or an audiocraft state_dict.bin (checkpoint.load_pretrained), after the
        start-up every entry point runs (the hub is probed once and set offline without a network).

        dtype: the transformer's weights (float32, bfloat16 or float16; default float32), loaded straight onto `device`.

        text_encoder / codec: a name or path overriding the checkpoint's, or a ready object; codec=False skips it.
        adapter: a LoRA adapter folder or LoRA run checkpoint trained on `ckpt`, merged into its weights.
        stems_model: a melody model's stem separation (htdemucs from the Hugging Face cache, or a folder).
        """
        start_up()
        device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        pre = load_pretrained(ckpt, device=device, dtype=dtype, adapter=adapter)
        if text_encoder is None or isinstance(text_encoder, str):
            text_encoder = TextEncoder.from_pretrained(text_encoder or pre.text_encoder,
                                                       allow_random=allow_random_text_encoder).to(device)
        if codec is None or isinstance(codec, str):
            codec = load_codec(codec or pre.codec, device=device)
        return cls(pre.model.eval(), text_encoder, codec or None, frame_rate=pre.frame_rate,
                   sample_rate=pre.sample_rate, span_len=pre.span_len, segment_duration=pre.segment_duration,
                   decoding_defaults=pre.decoding, fast=fast, compile=compile, name=str(ckpt), melody=pre.melody,
                   stems_model=stems_model)

    @property
    def guidance_option(self) -> str:
        """The decoding option of the guidance strength (`cfg_coef`, or MAGNeT's `max_cfg_coef` at the first step)."""
        return self.decoder.guidance_option

    # -- plans -----------------------------------------------------------------------------------------------------

    def plan(self, duration: float | None = None, *, extend_stride: float | None = None, preset: str | None = None,
             decoding: Any = None, prompt_frames: int = 0, infill: tuple[float, float] | None = None,
             clip_frames: int | None = None, rescorer: MagnetGenerator | None = None,
             two_model: MagnetGenerator | None = None, melody: bool = False, **options) -> GenerationPlan:
        """The plan of one generation on this checkpoint (generation/plan.py); an OptionError names a mistake.
        `decoding`: a whole config of the family's class instead of preset + recorded defaults + `options`."""
        request = GenerationRequest(duration, extend_stride, preset, options, prompt_frames, infill, clip_frames,
                                    None if rescorer is None else rescorer.facts,
                                    None if two_model is None else two_model.facts, melody, config=decoding)
        return make_plan(self.facts, request)

    def decoding_config(self, duration: float | None = None, preset: str | None = None, **overrides) -> Any:
        """The options of one generation (of one window of it when it is longer than the segment): preset <-
        the checkpoint's recorded options <- overrides (None overrides are ignored); the plan checks the rest
        (a rescorer for a rescore_weight below 1, ...) when the config is used."""
        return options_config(self.facts, duration, preset, **overrides)

    def num_steps(self, config: Any = None, duration: float | None = None, extend_stride: float | None = None) -> int:
        """Model steps of one generation of `duration` seconds without a prompt, every long-form window counted."""
        return self.plan(duration, extend_stride=extend_stride, decoding=config).steps

    def default_stride(self) -> float:
        """The family's default long-form stride for this checkpoint's segment, in seconds (its table entry)."""
        return self.decoder.long_form.stride_seconds(self.segment_duration)

    def num_frames(self, duration: float) -> int:
        return self.facts.frames(duration)

    def _announce(self, plan: GenerationPlan) -> None:
        """One log line per new long-form plan."""
        key = (plan.num_frames, plan.window_frames, plan.stride_frames, plan.prompt_frames)
        if plan.window_frames is not None and plan.infill is None and key != self._announced:
            log.info("long-form generation: %g s is longer than the checkpoint's %g-s segment, so it runs in %d "
                     "windows, each continuing the last %g s of the one before (stride %g s; extend_stride / "
                     "--extend-stride to change it)", plan.duration, self.segment_duration, len(plan.windows),
                     (plan.window_frames - plan.stride_frames) / self.frame_rate,
                     plan.stride_frames / self.frame_rate)
            self._announced = key

    # -- conditioning and inputs -----------------------------------------------------------------------------------

    def _text(self, texts: list[str | None]) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        if all(not t for t in texts):
            return None, None
        if self.text_encoder is None:
            raise ValueError("this generator has no text encoder: only unconditional generation (texts None)")
        states, mask = self.text_encoder(texts)
        return states.to(self.device), mask.to(self.device)

    def input_frames(self, x: torch.Tensor, sample_rate: int | None = None) -> int:
        """Frames of a prompt or clip: tokens [K, T] / [B, K, T] (T), or audio [C, N] / [B, C, N] at `sample_rate`
        (the frames the codec gives)."""
        if _is_codes(x):
            return x.shape[-1]
        if sample_rate is None:
            raise ValueError("prompt audio needs its sample rate (prompt_sample_rate)")
        return self.facts.audio_frames(x.shape[-1], sample_rate)

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
        seed: int | Sequence[int] | None = None,
        decode_audio: bool = True,
        progress: ProgressFn | None = None,
        rescorer: MagnetGenerator | None = None,
        extend_stride: float | None = None,
        plan: GenerationPlan | None = None,
        melody: Any = None, melody_sample_rate: int | None = None,
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
            seed: seeds a torch.Generator on the model's device (same seed -> same tokens); a sequence of one seed per
                row gives each row its own generator, so a row's tokens do not depend on the batch it is in.
            rescorer: an autoregressive generator (e.g. MusicGen-small for MAGNeT-small) whose probabilities rank the
                spans with weight 1 - rescore_weight (paper section 3.3, Eq. 5; see rescoring.py); per window.
            extend_stride: seconds; a duration beyond the checkpoint's segment is generated in windows of the segment,
                each continuing the last (segment - stride) seconds of the one before (long_form.py; logged once).
                Default: the family's (`default_stride`: 18 s for a 30-s MusicGen, as the reference).
            plan: a plan built beforehand (`plan(...)`, the command lines' `make_plan`) instead of the arguments
                above that it covers (duration, infill, decoding, preset, extend_stride, decoding_overrides).
            melody: melody-conditioned models: [C, N] (every item), [B, C, N] or a list of [C, N] / None (None: no
                melody for that item) at `melody_sample_rate` (generation/melody.py).
        """
        texts = list(texts) if texts is not None else [None] * (num_samples or 1)
        if not texts:
            raise ValueError("texts is empty")
        if plan is None:
            frames = 0 if prompt is None else self.input_frames(prompt, prompt_sample_rate)
            plan = self.plan(duration, extend_stride=extend_stride, preset=preset, decoding=decoding,
                             prompt_frames=0 if infill is not None else frames, infill=infill,
                             clip_frames=frames if infill is not None else None, rescorer=rescorer,
                             melody=melody is not None, **decoding_overrides)
        self._check_plan(plan, prompt, rescorer, melody)
        request = self._request(plan, texts, prompt, prompt_sample_rate, seed, progress)
        request_melody(self, request, melody, melody_sample_rate)
        if plan.rescorer is not None:
            request.rescorer = rescorer_for(rescorer, texts, request.text_states, request.text_mask,
                                            self.text_encoder)
        tokens = self.decoder.decode(self.model, request)
        return GenerationResult(tokens, self._audio(tokens, decode_audio), self.sample_rate, texts, plan.config)

    def _check_plan(self, plan: GenerationPlan, prompt, rescorer, melody) -> None:
        """The plan is one of this checkpoint's, for the inputs given (the caller's invariants, not user checks)."""
        mine, theirs = self.facts, plan.facts
        if (theirs.family, theirs.num_codebooks, theirs.codebook_size, theirs.frame_rate) != (
                mine.family, mine.num_codebooks, mine.codebook_size, mine.frame_rate):
            raise ValueError(f"the plan is for a {family_label(theirs.family)} checkpoint with K={theirs.num_codebooks}"
                             f", V={theirs.codebook_size}, not this {family_label(mine.family)} one")
        if (prompt is not None) != bool(plan.prompt_frames or plan.infill) or (plan.rescorer is None) != (
                rescorer is None or plan.config.rescore_weight >= 1) or plan.melody != (melody is not None):
            raise ValueError("the plan and the inputs disagree on the prompt, the rescorer or the melody")

    def _request(self, plan: GenerationPlan, texts: list[str | None], prompt, prompt_sample_rate, seed: int | None,
                 progress: ProgressFn | None) -> DecodeRequest:
        """The token-level request of one batch: text states, the prompt's or the edited clip's tokens, lengths."""
        batch = len(texts)
        states, mask = self._text(texts)
        codes = None if prompt is None else self._codes(prompt, prompt_sample_rate, batch,
                                                        "prompt" if plan.infill is None else "infill")
        expected = plan.num_frames if plan.infill is not None else plan.prompt_frames
        if codes is not None and codes.shape[-1] != expected:
            raise ValueError(f"the prompt has {codes.shape[-1]} frames, the plan {expected}")
        self._announce(plan)
        return DecodeRequest(plan.config, states, mask, batch, plan.num_frames, codes, plan.infill,
                             plan.own_prompt_frames, self._generator(seed, batch), progress,
                             fast=self._fast() if self.fast else None, window_frames=plan.window_frames,
                             stride_frames=plan.stride_frames)

    def _generator(self, seed: int | Sequence[int] | None, batch: int):
        """A torch.Generator of `seed`, or one per row for a seed per row (None: the global stream)."""
        if seed is None:
            return None
        if isinstance(seed, Sequence):
            if len(seed) != batch:
                raise ValueError(f"{len(seed)} seeds for {batch} rows: give one seed, or one per row")
            return [torch.Generator(device=self.device).manual_seed(int(s)) for s in seed]
        return torch.Generator(device=self.device).manual_seed(int(seed))

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
