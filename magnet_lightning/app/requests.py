"""The page's values -> a checked `Request`, or an `InputError` whose one-line message the page shows.

Checked before anything reaches the model: the checkpoint is loaded, captions (count, length), duration (positive, at
most the checkpoint's limit), seed, the partner (loaded beside it), a clip (readable, finite, not empty, within the
limits), a melody (app/melody.py), the page values (parsed into the options' types); then the generation plan is built
(generation/plan.py), which checks the options, the partner's rescoring weight or prompt and the clip against the
lengths, with the same checks and messages as the command lines, naming the page's controls.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import torch

from magnet_lightning.app.engine import HYBRID, RESCORE, Engine, Loaded, Request, plan_request
from magnet_lightning.app.melody import MelodyError, read_melody
from magnet_lightning.app.traits import PageNames, changed_options
from magnet_lightning.generation.hybrid_magnet import DEFAULT_PROMPT_SECONDS
from magnet_lightning.generation.options import OptionError
from magnet_lightning.utils.audio import read_audio

NO_PARTNER = "none"
CONTINUE, INFILL = "continue", "infill"
DEFAULT_RESCORE_WEIGHT = 0.8
"""The page's rescoring weight (and an API request's that gives none)."""


def prompt_default(model: Loaded) -> float:
    """The partner's seconds of two-model generation a request that gives none gets: 3 s, at most half the
    checkpoint's segment."""
    return round(min(DEFAULT_PROMPT_SECONDS, model.generator.segment_duration / 2), 2)


class InputError(ValueError):
    """A request the app refuses; the message names the problem and the fix, on one line."""


def loaded(engine: Engine, ckpt: str | None) -> Loaded:
    if ckpt not in engine.models:
        raise InputError(f"checkpoint {ckpt!r} is not loaded; choose one of: {', '.join(engine.models)}")
    return engine.models[ckpt]


def captions(text: str | None, engine: Engine) -> tuple[str | None, ...]:
    """One caption a line (blank lines dropped); no caption at all: one unconditional clip."""
    lines = tuple(line.strip() for line in (text or "").splitlines() if line.strip())
    limits = engine.limits
    if len(lines) > limits.max_captions:
        raise InputError(f"{len(lines)} captions: at most {limits.max_captions} per request (one a line)")
    for line in lines:
        if len(line) > limits.max_text_chars:
            raise InputError(f"a caption has {len(line)} characters: at most {limits.max_text_chars}")
    return lines or (None,)


def number(value: Any, what: str) -> float:
    try:
        result = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{what}: {value!r} is not a number") from None
    if not math.isfinite(result):
        raise InputError(f"{what} must be a finite number, got {value!r}")
    return result


def duration(value: Any, model: Loaded) -> float:
    """Seconds to generate (None: the checkpoint's segment)."""
    if value is None:
        return model.generator.segment_duration
    seconds = number(value, "duration")
    if not 0 < seconds <= model.max_duration:
        raise InputError(f"duration {seconds:g} s: choose between 0 and {model.max_duration:g} s for {model.name}")
    return seconds


def seed(value: Any) -> int | None:
    """None, '' or a negative number: a random seed."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    number_ = number(value, "seed")
    if number_ != int(number_) or number_ >= 2 ** 63:
        raise InputError(f"seed {value!r}: a whole number below 2^63 (negative or empty: random)")
    return None if number_ < 0 else int(number_)


def changed(model: Loaded, values: dict[str, Any]) -> dict[str, Any]:
    """The page values that differ from the checkpoint's own options, parsed into the options' types."""
    try:
        return changed_options(model.traits, values)
    except ValueError as err:
        raise InputError(f"decoding options: {' '.join(str(err).split())}") from None


def planned(engine: Engine, request: Request) -> Request:
    """The request with its generation plan, built and checked as the generator will run it (engine.plan_request);
    a mistake is an InputError naming the page's control."""
    try:
        return replace(request, plan=plan_request(engine.models, request))
    except OptionError as err:
        raise InputError(" ".join(err.render(PageNames()).split())) from None


def pairing(model: Loaded, partner: str | None, mode: str | None, weight: Any,
            prompt_seconds: Any) -> tuple[str | None, str | None, dict[str, Any]]:
    """(partner, mode, its options: the rescoring weight or the partner's prompt seconds) of the partner choice."""
    if not partner or partner == NO_PARTNER:
        return None, None, {}
    mode = RESCORE if mode is None else mode
    weight = DEFAULT_RESCORE_WEIGHT if weight is None else weight
    prompt_seconds = prompt_default(model) if prompt_seconds is None else prompt_seconds
    if partner not in model.partners:
        choices = ", ".join(model.partners) or "none is loaded (start the app with an autoregressive --ckpt too)"
        raise InputError(f"{partner!r} cannot be paired with {model.name}; autoregressive partners: {choices}")
    if mode == RESCORE:
        return partner, RESCORE, {"rescore_weight": number(weight, "rescore weight")}
    if mode == HYBRID:
        return partner, HYBRID, {"prompt_seconds": number(prompt_seconds, "hybrid prompt seconds")}
    raise InputError(f"pairing {mode!r}: choose {RESCORE!r} or {HYBRID!r}")


def melody(path: str | None, model: Loaded) -> tuple[torch.Tensor | None, int | None]:
    """The uploaded melody (float [C, N], rate), or (None, None); app/melody.py checks it."""
    try:
        return read_melody(path, model)
    except MelodyError as err:
        raise InputError(str(err)) from None


def generation_request(engine: Engine, ckpt: str, text: str | None, seconds: Any, seed_value: Any,
                       values: dict[str, Any], partner: str | None = None, mode: str | None = None,
                       weight: Any = None, prompt_seconds: Any = None, melody_path: str | None = None) -> Request:
    """A request from captions (and a melody they all follow)."""
    model = loaded(engine, ckpt)
    texts = captions(text, engine)
    seconds = duration(seconds, model)
    partner, mode, extra = pairing(model, partner, mode, weight, prompt_seconds)
    options = tuple(sorted({**changed(model, values), **extra}.items()))
    wav, rate = melody(melody_path, model)
    return planned(engine, Request(ckpt, texts, seconds, seed(seed_value), options, partner, mode,
                                   extra.get("prompt_seconds"), melody=wav, melody_rate=rate))


def clip(path: str | None, model: Loaded) -> tuple[torch.Tensor, int]:
    """A clip from the page (an uploaded or recorded file): float [C, N] and its sample rate."""
    if not path:
        raise InputError("no clip: upload or record one first")
    try:
        wav, rate = read_audio(path)
    except ValueError:
        raise InputError("the clip is not a readable audio file (WAV, FLAC or OGG)") from None
    if not torch.isfinite(wav).all():
        raise InputError("the clip holds NaN or infinite samples")
    seconds = wav.shape[-1] / rate
    if seconds * model.generator.frame_rate < 1:
        raise InputError(f"the clip is {seconds * 1000:.0f} ms long: too short to encode")
    if seconds > model.max_duration:
        raise InputError(f"the clip is {seconds:.2f} s long: at most {model.max_duration:g} s for {model.name}")
    return wav, rate


def edit_request(engine: Engine, ckpt: str, text: str | None, clip_path: str | None, mode: str, seconds: Any,
                 start: Any, end: Any, seed_value: Any, values: dict[str, Any],
                 melody_path: str | None = None) -> Request:
    """A request continuing a clip (CONTINUE, up to `seconds`) or regenerating [start, end) of it (INFILL)."""
    model = loaded(engine, ckpt)
    texts = captions(text, engine)
    if len(texts) > 1:
        raise InputError("continuation and infill take one caption")
    mode = CONTINUE if mode is None else mode
    if mode not in (CONTINUE, INFILL):
        raise InputError(f"mode {mode!r}: choose {CONTINUE!r} or {INFILL!r}")
    if not model.traits.takes_prompt or (mode == INFILL and not model.traits.takes_infill):
        raise InputError(f"{model.name} ({model.traits.label}) cannot {mode} a clip; choose another checkpoint")
    wav, rate = clip(clip_path, model)
    infill = None
    if mode == INFILL:
        infill, seconds = (number(start, "infill start"), number(end, "infill end")), wav.shape[-1] / rate
    else:
        seconds = duration(seconds, model)
    options = tuple(sorted(changed(model, values).items()))
    tune, tune_rate = melody(melody_path, model)
    return planned(engine, Request(ckpt, texts, seconds, seed(seed_value), options, clip=wav, clip_rate=rate,
                                   infill=infill, melody=tune, melody_rate=tune_rate))
