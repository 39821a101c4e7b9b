"""The page's values -> a checked `Request`, or an `InputError` whose one-line message the page shows.

Checked before anything reaches the model: the checkpoint is loaded, captions (count, length), duration (positive,
at most the checkpoint's limit), seed, decoding options (parsed, and the config built as the generator will), the
autoregressive partner (loaded, compatible, rescoring weight in [0, 1), hybrid prompt shorter than the clip), and a
clip to continue or edit (readable, finite, not empty, within the limits, the infill range inside it).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from magnet_lightning.app.engine import HYBRID, RESCORE, Engine, Loaded, Request
from magnet_lightning.app.traits import changed_options
from magnet_lightning.utils.audio import read_audio

NO_PARTNER = "none"
CONTINUE, INFILL = "continue", "infill"


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


def options(model: Loaded, values: dict[str, Any], seconds: float, extra: dict[str, Any] | None = None) -> tuple:
    """The decoding options changed from the checkpoint's, checked by building the config the generator will."""
    try:
        changed = {**changed_options(model.traits, values), **(extra or {})}
        config = model.generator.decoding_config(seconds, **changed)
        if hasattr(config, "check"):
            config.check(model.generator.model.cfg.num_codebooks)
    except (ValueError, TypeError) as err:
        raise InputError(f"decoding options: {' '.join(str(err).split())}") from None
    return tuple(sorted(changed.items()))


def pairing(model: Loaded, partner: str | None, mode: str | None, weight: Any, prompt_seconds: Any,
            seconds: float) -> tuple[str | None, str | None, dict[str, Any], float | None]:
    """(partner, mode, extra decoding options, hybrid prompt seconds) of the partner choice."""
    if not partner or partner == NO_PARTNER:
        return None, None, {}, None
    if partner not in model.partners:
        choices = ", ".join(model.partners) or "none is loaded (start the app with an autoregressive --ckpt too)"
        raise InputError(f"{partner!r} cannot be paired with {model.name}; autoregressive partners: {choices}")
    if mode == RESCORE:
        w = number(weight, "rescore weight")
        if not 0 <= w < 1:
            raise InputError(f"rescore weight {w:g}: choose 0 <= w < 1 (the weight of the masked model's own "
                             "probability)")
        return partner, RESCORE, {"rescore_weight": w}, None
    if mode == HYBRID:
        prompt = number(prompt_seconds, "hybrid prompt seconds")
        if not 0 < prompt < seconds:
            raise InputError(f"hybrid prompt {prompt:g} s: must be between 0 and the {seconds:g} s generated")
        return partner, HYBRID, {}, prompt
    raise InputError(f"pairing {mode!r}: choose {RESCORE!r} or {HYBRID!r}")


def generation_request(engine: Engine, ckpt: str, text: str | None, seconds: Any, seed_value: Any,
                       values: dict[str, Any], partner: str | None = None, mode: str | None = None,
                       weight: Any = None, prompt_seconds: Any = None) -> Request:
    """A request from captions."""
    model = loaded(engine, ckpt)
    texts = captions(text, engine)
    seconds = duration(seconds, model)
    partner, mode, extra, prompt = pairing(model, partner, mode, weight, prompt_seconds, seconds)
    return Request(ckpt, texts, seconds, seed(seed_value), options(model, values, seconds, extra), partner, mode,
                   prompt)


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
                 start: Any, end: Any, seed_value: Any, values: dict[str, Any]) -> Request:
    """A request continuing a clip (CONTINUE, up to `seconds`) or regenerating [start, end) of it (INFILL)."""
    model = loaded(engine, ckpt)
    texts = captions(text, engine)
    if len(texts) > 1:
        raise InputError("continuation and infill take one caption")
    if mode not in (CONTINUE, INFILL):
        raise InputError(f"mode {mode!r}: choose {CONTINUE!r} or {INFILL!r}")
    if not model.traits.takes_prompt or (mode == INFILL and not model.traits.takes_infill):
        raise InputError(f"{model.name} ({model.traits.label}) cannot {mode} a clip; choose another checkpoint")
    wav, rate = clip(clip_path, model)
    length = wav.shape[-1] / rate
    infill = None
    if mode == INFILL:
        infill = (number(start, "infill start"), number(end, "infill end"))
        if not 0 <= infill[0] < infill[1] or infill[0] >= length:
            raise InputError(f"infill {infill[0]:g}-{infill[1]:g} s: need 0 <= start < end with start inside the "
                             f"{length:.2f} s clip")
        seconds = length
    else:
        seconds = duration(seconds, model)
        if length >= seconds:
            raise InputError(f"the clip is {length:.2f} s long: continuing it needs a longer duration than that "
                             f"(now {seconds:g} s)")
    return Request(ckpt, texts, seconds, seed(seed_value), options(model, values, seconds), clip=wav,
                   clip_rate=rate, infill=infill)
