"""The generation plan: built once from a checkpoint's facts and the request, before any model is loaded, and
checked there only. It holds the decoding options (the family's config), the lengths in frames, the long-form
windows, the prompt and infill regions, the partner model (rescorer or two-model generation) and the model steps.
`magnet-generate --dry-run` prints it; the generator executes it; the decoders only assert their own invariants.

Every mistake is an `OptionError` (generation/options.py) whose message names the option or input the way the
caller's surface does (Python argument, command-line flag, page control).

Shapes: K codebooks, T frames, Tp prompt frames.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from magnet_lightning.checkpoint.facts import CheckpointFacts
from magnet_lightning.generation.families import DecoderFamily, decoder_family, family_label
from magnet_lightning.generation.hybrid_magnet import DEFAULT_PROMPT_SECONDS
from magnet_lightning.generation.long_form import Window, infill_window_start, plan_windows
from magnet_lightning.generation.magnet_config import decoding_preset
from magnet_lightning.generation.options import OptionError, declared_options
from magnet_lightning.generation.plan_checks import (
    check_config,
    check_options,
    check_partner,
    check_prompt,
    check_rescoring,
    check_takes,
)
from magnet_lightning.generation.request import GenerationRequest
from magnet_lightning.models.delay_pattern import DelayPattern
from magnet_lightning.models.registry import MODEL_FAMILIES


@dataclass(frozen=True)
class GenerationPlan:
    """What one generation does, in frames (see the module docstring)."""

    facts: CheckpointFacts
    config: Any
    """The family's decoding options (of one window)."""
    num_frames: int
    prompt_frames: int = 0
    """Frames kept in front: a continuation prompt, or the two-model partner's."""
    infill: tuple[int, int] | None = None
    """Frames [start, end) of the clip regenerated (everything else kept)."""
    own_prompt_frames: int = 0
    """Frames a family that generates its own prompt (Hybrid-MAGNeT) generates autoregressively (first window)."""
    window_frames: int | None = None
    """Long-form: frames of a window (the segment); None: one decoder call."""
    stride_frames: int | None = None
    windows: tuple[Window, ...] = ()
    steps: int = 0
    """Model steps of the whole generation (every window, the two-model partner's part included): what progress
    counts."""
    rescorer: CheckpointFacts | None = None
    """The autoregressive checkpoint that rescores the spans (with the config's rescore_weight), or None."""
    two_model: GenerationPlan | None = None
    """Two-model generation: the autoregressive partner's plan (its checkpoint generates the first frames)."""
    changed: tuple[str, ...] = ()
    """The options the caller set (the rest follow the checkpoint's rule)."""
    melody: bool = False
    """A melody clip conditions the generation (melody-conditioned checkpoints)."""

    @property
    def spec(self) -> DecoderFamily:
        return decoder_family(self.facts.family)

    @property
    def duration(self) -> float:
        return self.num_frames / self.facts.frame_rate

    def own_prompt(self, num_frames: int) -> int:
        """Hybrid-MAGNeT's autoregressive frames in a window of `num_frames` (fewer than the window)."""
        if not self.spec.own_prompt:
            return 0
        seconds = getattr(self.config, "prompt_seconds", None) or DEFAULT_PROMPT_SECONDS
        return min(int(seconds * self.facts.frame_rate + 1e-6), num_frames - 1)

    def to_dict(self) -> dict[str, Any]:
        """The plan as the manifest records it and --dry-run prints it (JSON-ready)."""
        two_model = None if self.two_model is None else {"ckpt": self.two_model.facts.path,
                                                          "frames": self.two_model.num_frames}
        return {"ckpt": self.facts.path, "family": family_label(self.facts.family), "seconds": self.duration,
                "frames": self.num_frames, "prompt_frames": self.prompt_frames,
                "infill_frames": list(self.infill) if self.infill else None,
                "own_prompt_frames": self.own_prompt_frames,
                "windows": [[w.start, w.end, w.prompt] for w in self.windows], "window_frames": self.window_frames,
                "stride_frames": self.stride_frames, "steps": self.steps,
                "rescorer": self.rescorer.path if self.rescorer else None, "two_model": two_model,
                "decoding": asdict(self.config), "changed": list(self.changed), "melody": self.melody}

    def describe(self) -> str:
        """The plan in a few lines (--dry-run)."""
        f, rate = self.facts, self.facts.frame_rate
        lines = [f"checkpoint {f.path} ({family_label(f.family)}, K={f.num_codebooks}, V={f.codebook_size}, "
                 f"{f.segment_duration:g}-s segment at {rate:g} Hz)",
                 f"generate {self.duration:g} s = {self.num_frames} frames"
                 + (f", the first {self.prompt_frames} given" if self.prompt_frames else "")
                 + (f", frames [{self.infill[0]}, {self.infill[1]}) regenerated" if self.infill else "")
                 + (f", {self.own_prompt_frames} generated autoregressively first" if self.own_prompt_frames else "")]
        if self.window_frames:
            lines.append(f"long-form: {len(self.windows)} windows of {self.window_frames} frames, stride "
                         f"{self.stride_frames} ({self.stride_frames / rate:g} s): " + " ".join(
                             f"[{w.start}, {w.end})" for w in self.windows))
        if self.rescorer:
            lines.append(f"rescorer: {self.rescorer.path} ({family_label(self.rescorer.family)}), spans ranked with "
                         f"weight {self.config.rescore_weight:g} on the checkpoint's own probability")
        if self.melody:
            lines.append("melody: the given clip's chroma conditions every window")
        if self.two_model:
            lines.append(f"two-model: {self.two_model.facts.path} ({family_label(self.two_model.facts.family)}) "
                         f"generates the first {self.two_model.num_frames} frames ({self.two_model.steps} steps)")
        options = ", ".join(f"{d.name}={_value(getattr(self.config, d.name))}{'*' * (d.name in self.changed)}"
                            for d in declared_options(type(self.config)))
        lines += [f"decoding ({type(self.config).__name__}; * = set here): {options}", f"model steps: {self.steps}"]
        return "\n".join(lines)


def _value(value: Any) -> str:
    return " ".join(map(str, value)) if isinstance(value, tuple) else f"{value:g}" if isinstance(value, float) \
        else str(value)


def make_plan(facts: CheckpointFacts, request: GenerationRequest | None = None) -> GenerationPlan:
    """The plan of `request` on the checkpoint `facts`; an OptionError names the first mistake."""
    request = request or GenerationRequest()
    spec = decoder_family(facts.family)
    given = {k: v for k, v in request.options.items() if v is not None}
    two_model_seconds = given.pop("prompt_seconds", None) if request.two_model and not spec.own_prompt else None
    check_takes(facts, spec, request)
    check_options(facts, spec, given, request.preset)
    check_rescoring(facts, spec, request, given if request.config is None else {
        "rescore_weight": getattr(request.config, "rescore_weight", 1.0)})
    if request.config is not None:
        check_config(facts, spec, request.config, given or request.preset)  # prompt_seconds went to the partner
    num_frames, prompt_frames, infill = _lengths(facts, request, two_model_seconds)
    window = min(num_frames, facts.frames(facts.segment_duration))
    config = request.config or window_config(facts, window, request.preset, given)
    partner_frames = check_partner(facts, request, two_model_seconds, num_frames)
    two_model = None
    if request.two_model is not None:
        prompt_frames = partner_frames
        two_model = make_plan(request.two_model, GenerationRequest(duration=partner_frames / facts.frame_rate))
    check_prompt(facts, spec, request, num_frames, prompt_frames, infill)
    windows, window_frames, stride_frames = _windows(facts, spec, request, num_frames, prompt_frames, infill)
    plan = GenerationPlan(facts, config, num_frames, prompt_frames, infill, 0, window_frames, stride_frames,
                          windows, 0, request.rescorer if config_rescores(config) else None, two_model,
                          tuple(sorted(given) + (["preset"] if request.preset else [])), request.melody)
    own = plan.own_prompt(min(num_frames, window))
    steps = _steps(plan) + (two_model.steps if two_model is not None else 0)
    return GenerationPlan(**{**plan.__dict__, "own_prompt_frames": own, "steps": steps})


def config_rescores(config: Any) -> bool:
    """The options rank spans with a rescorer (a rescore_weight below 1)."""
    return getattr(config, "rescore_weight", 1.0) < 1.0


def window_config(facts: CheckpointFacts, window_frames: int, preset: str | None, options: Mapping[str, Any]) -> Any:
    """The decoding config of a window of `window_frames` on this checkpoint (options already checked as taken)."""
    return decoding_config_for(facts.family, facts.decoding or {}, span_len=facts.span_len,
                               segment_duration=facts.segment_duration, num_codebooks=facts.num_codebooks,
                               duration=window_frames / facts.frame_rate, preset=preset, overrides=options)


def options_config(facts: CheckpointFacts, duration: float | None = None, preset: str | None = None,
                   **options: Any) -> Any:
    """The decoding config of a generation of `duration` seconds (one window of it past the segment), without the
    rest of a plan: for a caller that pairs it with a rescorer or partner later (the plan checks those)."""
    spec = decoder_family(facts.family)
    given = {k: v for k, v in options.items() if v is not None}
    check_options(facts, spec, given, preset)
    window = min(facts.frames(duration or facts.segment_duration), facts.frames(facts.segment_duration))
    return window_config(facts, window, preset, given)


def _lengths(facts: CheckpointFacts, request: GenerationRequest, two_model_seconds: float | None):
    """(T, Tp, infill frames): the clip's length for an infill, else the requested duration (default: the
    segment)."""
    if request.infill is not None:
        clip = request.clip_frames or 0
        start, end = (int(s * facts.frame_rate + 1e-6) for s in request.infill)
        return clip, 0, (start, min(end, clip))
    duration = request.duration or facts.segment_duration
    return facts.frames(duration), request.prompt_frames, None


def _windows(facts: CheckpointFacts, spec: DecoderFamily, request: GenerationRequest, num_frames: int,
             prompt_frames: int, infill: tuple[int, int] | None):
    """The long-form windows (one window within the segment), the stride checked against the segment."""
    segment = facts.segment_duration
    stride = request.extend_stride if request.extend_stride is not None else spec.long_form.stride_seconds(segment)
    if stride >= segment or int(stride * facts.frame_rate + 1e-6) < 1:
        raise OptionError("extend_stride", f"{{set}}: must be shorter than the checkpoint's {segment:g}-s segment "
                          f"(each window of long-form generation advances by a stride above 0 and below the "
                          f"checkpoint's {segment:g}-s segment), e.g. {0.6 * segment:g}", stride)
    window = facts.frames(segment)
    stride_frames = int(stride * facts.frame_rate + 1e-6)
    if num_frames <= window:
        return (Window(0, 0, num_frames, prompt_frames),), None, None
    if infill is not None:  # the region is decoded in one window around it
        return (Window(0, infill_window_start(*infill, window, num_frames), window, 0),), window, stride_frames
    return tuple(plan_windows(num_frames, window, stride_frames, prompt_frames)), window, stride_frames


def _steps(plan: GenerationPlan) -> int:
    """Model steps of every window (what the family's `num_steps` counts for one decoder call)."""
    spec, facts = plan.spec, plan.facts
    pattern = None
    if MODEL_FAMILIES[facts.family].delay_pattern:
        pattern = DelayPattern(facts.delays or tuple(range(facts.num_codebooks)))
    return sum(spec.num_steps(pattern, plan.config, w.length, plan.own_prompt(w.length), w.prompt)
               for w in plan.windows)


def decoding_config_for(family: str, recorded: Mapping[str, Any], *, span_len: int, segment_duration: float,
                        num_codebooks: int, duration: float | None = None, preset: str | None = None,
                        overrides: Mapping[str, Any] | None = None) -> Any:
    """The decoding options of one generation (one window): (preset families) the preset (the checkpoint's, else
    'music') <- the options the checkpoint records <- overrides, with the model's training span; (others) the
    config's defaults <- recorded <- overrides. Recorded options of other families are ignored."""
    spec = decoder_family(family)
    options = {d.name for d in declared_options(spec.config_class)}
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    recorded = dict(recorded)
    preset = preset or recorded.pop("preset", None) or "music"
    values = {**{k: v for k, v in recorded.items() if k in options}, **given}
    if not spec.presets:
        return spec.config_class(**values)
    return decoding_preset(preset, duration or segment_duration, num_codebooks, config_class=spec.config_class,
                           **{"span_len": span_len, **values})

