"""The checks of a generation plan (generation/plan.py), one function per concern: what the family takes, which
options it has, the partner model, the prompt and infill lengths. Each raises an `OptionError` whose template names
options as `{option}` so that every surface (Python, command line, app) words the same sentence its own way.

Shapes: K codebooks, T frames, Tp prompt frames.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from magnet_lightning.checkpoint.facts import CheckpointFacts
from magnet_lightning.generation.families import (
    DECODER_FAMILIES,
    DecoderFamily,
    decoder_family,
    families_where,
    family_label,
)
from magnet_lightning.generation.hybrid_magnet import DEFAULT_PROMPT_SECONDS
from magnet_lightning.generation.options import OptionError, declared_options, option_names
from magnet_lightning.generation.request import GenerationRequest


def _families(**capability: bool) -> str:
    return " or ".join(families_where(**capability))


def check_takes(facts: CheckpointFacts, spec: DecoderFamily, request: GenerationRequest) -> None:
    """A continuation prompt, an infill, a rescorer or a two-model partner the family does not take."""
    label, path = family_label(facts.family), facts.path
    if request.infill is not None and not spec.infill:
        raise OptionError("infill", f"{{name}}: {path} is a {label} checkpoint, which does not infill (the {label} "
                          f"family takes no infilling; families that do: {_families(infill=True)})")
    if request.infill is not None and not request.clip_frames:
        raise OptionError("infill", "{name} needs the clip to edit ({prompt})")
    if request.prompt_frames and not spec.prompt:
        raise OptionError("prompt", f"{{name}}: {path} is a {label} checkpoint, which does not continue a prompt")
    for name, partner in (("rescorer", request.rescorer), ("two_model", request.two_model)):
        if partner is not None and not spec.rescored:
            raise OptionError(name, f"{{name}}: {path} is a {label} checkpoint; {{name}} works with a "
                              f"{_families(rescored=True)} checkpoint")
    if request.two_model is not None and (request.prompt_frames or request.infill is not None):
        raise OptionError("two_model", "{name} generates its own prompt: drop {prompt} / {infill}")
    check_melody(facts, request)


MELODY_MODELS = ("facebook/musicgen-melody, facebook/musicgen-melody-large, their stereo versions "
                 "facebook/musicgen-stereo-melody(-large), or a model trained or fine-tuned with melody, e.g. with "
                 "recipes/configs/finetune_melody_magnet_small.yaml")


def check_melody(facts: CheckpointFacts, request: GenerationRequest) -> None:
    """A melody for a checkpoint without melody conditioning, or with a two-model partner."""
    if request.melody and facts.melody is None:
        raise OptionError("melody", f"{{name}}: {facts.path} has no melody conditioning (melody-conditioned "
                          f"checkpoints: {MELODY_MODELS})")
    if request.melody and request.two_model is not None:
        raise OptionError("melody", "{name} with {two_model}: two-model generation takes no melody; drop one of them")


def check_options(facts: CheckpointFacts, spec: DecoderFamily, given: Mapping[str, Any], preset: str | None) -> None:
    """Options the family does not take (named with the family and what it takes); per-codebook options with one
    entry per codebook."""
    label = family_label(facts.family)
    takes = sorted(option_names(spec.config_class)) + (["preset"] if spec.presets else [])
    wrong = sorted(set(given) - option_names(spec.config_class)) + (["preset"] if preset and not spec.presets else [])
    if wrong:
        others = sorted({family_label(name) for name, other in DECODER_FAMILIES.items()
                         if set(wrong) & (option_names(other.config_class) | ({"preset"} if other.presets else set()))})
        raise OptionError(wrong[0], ", ".join(f"{{{name}}}" for name in wrong) + f": not an option of the {label} "
                          f"family of {facts.path} (it takes " + ", ".join(f"{{{name}}}" for name in takes) + ")"
                          + (f"; the {' and '.join(others)} famil{'ies take' if len(others) > 1 else 'y takes'} it"
                             if others else ""))
    for declared in declared_options(spec.config_class):
        value = given.get(declared.name)
        if declared.option.per_codebook and value is not None and len(value) != facts.num_codebooks:
            example = " ".join(["20"] + ["10"] * (facts.num_codebooks - 1))
            raise OptionError(declared.name, f"{{name}} has {len(value)} entries ({' '.join(map(str, value))}) but "
                              f"the checkpoint has {facts.num_codebooks} codebooks: give one number of decoding steps "
                              f"per codebook, e.g. {example}", tuple(value))


def check_config(facts: CheckpointFacts, spec: DecoderFamily, config: Any, also: Any) -> None:
    """A whole decoding config given by the caller: the family's class, one entry per codebook where declared."""
    if also:
        raise OptionError("decoding", "pass either a whole decoding config ({name}) or a preset and options, not "
                          "both")
    if not isinstance(config, spec.config_class):
        raise OptionError("decoding", f"{{name}}: a {family_label(facts.family)} model decodes with a "
                          f"{spec.config_class.__name__}, got {type(config).__name__}")
    check_options(facts, spec, {d.name: getattr(config, d.name) for d in declared_options(type(config))}, None)


def check_rescoring(facts: CheckpointFacts, spec: DecoderFamily, request: GenerationRequest,
                    given: Mapping[str, Any]) -> None:
    """A rescorer needs a rescoring weight below 1, and a weight below 1 needs a rescorer (checked before the
    option's own range, so that the message says what a rescorer needs)."""
    if "rescore_weight" not in spec.options:
        return
    recorded = (facts.decoding or {}).get("rescore_weight", 1.0)
    weight = given.get("rescore_weight", recorded)
    if request.rescorer is not None and not 0 <= weight < 1:
        raise OptionError("rescore_weight", "{rescorer} needs {rescore_weight} W with 0 <= W < 1 (the weight of the "
                          "checkpoint's own probability; 1 - W goes to the rescorer), got {value}", weight)
    if weight < 1 and request.rescorer is None:
        raise OptionError("rescore_weight", "{rescore_weight} below 1 needs {rescorer} (an autoregressive "
                          "checkpoint)", weight)


def check_partner(facts: CheckpointFacts, request: GenerationRequest, two_model_seconds: float | None,
                  num_frames: int) -> int:
    """The partner models' family and codec layout, the two-model partner's prompt length; returns the partner's
    frames (0 without a two-model partner)."""
    for name, other in (("rescorer", request.rescorer), ("two_model", request.two_model)):
        if other is not None and (not decoder_family(other.family).partner or (
                other.num_codebooks, other.codebook_size, other.frame_rate) != (
                facts.num_codebooks, facts.codebook_size, facts.frame_rate)):
            raise OptionError(name, f"{{name}} {other.path}: needs an {_families(partner=True)} checkpoint with "
                              f"K={facts.num_codebooks}, V={facts.codebook_size} at {facts.frame_rate:g} Hz (the same "
                              f"codec); it is {family_label(other.family)} with K={other.num_codebooks}, "
                              f"V={other.codebook_size} at {other.frame_rate:g} Hz")
    if request.two_model is None:
        return 0
    seconds = DEFAULT_PROMPT_SECONDS if two_model_seconds is None else two_model_seconds
    duration = num_frames / facts.frame_rate
    segment = min(facts.segment_duration, request.two_model.segment_duration)
    if not 0 < seconds < duration or seconds >= segment:
        raise OptionError("prompt_seconds", f"{{set}}: must be between 0 and the {duration:g} s generated (and "
                          f"shorter than the {segment:g}-s segment)", seconds)
    return max(1, int(seconds * facts.frame_rate + 1e-6))


def check_prompt(facts: CheckpointFacts, spec: DecoderFamily, request: GenerationRequest, num_frames: int,
                 prompt_frames: int, infill: tuple[int, int] | None) -> None:
    """A continuation prompt shorter than the generation (and than one window past the segment); an infill range
    inside the clip, at most one window long."""
    rate, segment = facts.frame_rate, facts.segment_duration
    if infill is not None:
        _check_infill(facts, request, num_frames, infill)
        return
    if not request.prompt_frames:
        return
    pattern = facts.delays or range(facts.num_codebooks)
    margin = max(pattern) if spec.own_prompt else 0  # every delay-shifted stream keeps the whole prompt
    seconds, window = prompt_frames / rate, facts.frames(segment)
    trim = (f"trim the clip to under {segment:g} s (a generation longer than the checkpoint's {segment:g}-s segment "
            "runs in windows, each continuing a prompt shorter than one window)")
    if prompt_frames + margin >= num_frames:
        longer = "longer than" if prompt_frames > num_frames else "not shorter than"
        needed = f" ({margin} frames more for this family's delays)" if margin else ""
        fix = trim if prompt_frames >= window else \
            f"continuing it needs a longer duration ({{duration}} above {seconds:.2f} s) or a shorter clip"
        raise OptionError("prompt", f"{{name}} is {seconds:.2f} s, {longer} the {num_frames / rate:g} s to generate "
                          f"({prompt_frames} frames, more than a continuation of {num_frames} frames keeps"
                          f"{needed}): {fix}")
    if num_frames > window and prompt_frames >= window:
        raise OptionError("prompt", f"{{name}} is {seconds:.2f} s: a generation longer than the checkpoint's "
                          f"{segment:g}-s segment continues a prompt shorter than one window, and this one is not "
                          f"shorter than the checkpoint's {segment:g}-s segment; trim the clip to under {segment:g} s")


def _check_infill(facts: CheckpointFacts, request: GenerationRequest, clip_frames: int,
                  infill: tuple[int, int]) -> None:
    start, end = request.infill
    seconds, segment = clip_frames / facts.frame_rate, facts.segment_duration
    if not 0 <= start < end or infill[0] >= clip_frames or infill[1] <= infill[0]:
        raise OptionError("infill", f"{{set}}: need 0 <= start < end with start inside the {seconds:.2f} s clip "
                          "({prompt})", (start, end))
    if infill[1] - infill[0] > facts.frames(segment):
        raise OptionError("infill", f"{{set}}: regenerates {end - start:g} s, more than the checkpoint's "
                          f"{segment:g}-s segment (more than one window); infill at most {segment:g} s at a time",
                          (start, end))
