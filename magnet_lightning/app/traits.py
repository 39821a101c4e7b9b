"""What a loaded checkpoint takes, as the page shows it: one control per decoding option of its family (default: the
checkpoint's own value, `MagnetGenerator.decoding_config()`), and whether it continues a prompt, infills a clip and
can be paired with an autoregressive checkpoint (rescorer, two-model hybrid).

A control's value from the page is turned back into the option's type here (`parse_value`), and only the options
the user changed are passed to the generator (`changed_options`): an untouched option keeps following the
checkpoint's own rule (e.g. MAGNeT's decoding steps grow with the duration).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any, get_type_hints

from magnet_lightning.generation.magnet_config import SPAN_ARRANGEMENTS, SPAN_SCORINGS, STRIDE1_COVERS
from magnet_lightning.models.ar import ARTransformer
from magnet_lightning.models.hybrid import HybridMagnetTransformer
from magnet_lightning.models.magnet import MagnetTransformer

CHOICES = {"span_arrangement": SPAN_ARRANGEMENTS, "span_scoring": SPAN_SCORINGS, "stride1_cover": STRIDE1_COVERS}
"""Options whose value is one of a few names."""
NOT_CONTROLS = {"span_len", "rescore_weight"}
"""Decoding fields without a control of their own: the model's training span (not a choice), and the rescoring
weight (set beside the rescorer, since it only means something with one)."""


@dataclass(frozen=True)
class Control:
    """One decoding option as a page control."""

    name: str
    kind: str
    """'bool', 'int', 'float', 'choice' (one of `choices`) or 'steps' (one integer per codebook, space-separated)."""
    default: Any
    """The checkpoint's own value, in the control's form (steps as text '20 10 10 10')."""
    choices: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        return self.name.replace("_", " ")


@dataclass(frozen=True)
class Traits:
    """What a checkpoint's family takes."""

    controls: tuple[Control, ...]
    takes_prompt: bool
    """Continues a clip (its tokens kept, the rest generated)."""
    takes_infill: bool
    """Regenerates a time range of a clip."""
    takes_partner: bool
    """Can be rescored by an autoregressive checkpoint and continue its prompt (two-model hybrid)."""
    autoregressive: bool
    """A partner for the above (an autoregressive model of tokens)."""

    def control(self, name: str) -> Control:
        return next(c for c in self.controls if c.name == name)


def _kind(name: str, annotation: Any) -> str:
    if name in CHOICES:
        return "choice"
    if annotation is bool:
        return "bool"
    if annotation is int:
        return "int"
    if annotation is float:
        return "float"
    if getattr(annotation, "__origin__", None) is tuple:
        return "steps"
    raise TypeError(f"decoding option {name} has a type the app has no control for: {annotation}")


def controls_of(config: Any) -> tuple[Control, ...]:
    """The controls of a decoding config (a dataclass instance: DecodingConfig or ARDecodingConfig), its values as
    the defaults."""
    hints = get_type_hints(type(config))
    controls = []
    for field in fields(config):
        if field.name in NOT_CONTROLS:
            continue
        kind = _kind(field.name, hints[field.name])
        value = getattr(config, field.name)
        default = " ".join(str(v) for v in value) if kind == "steps" else value
        controls.append(Control(field.name, kind, default, tuple(CHOICES.get(field.name, ()))))
    return tuple(controls)


def traits_of(generator: Any) -> Traits:
    """The traits of a loaded `MagnetGenerator`."""
    model = generator.model
    masked = isinstance(model, MagnetTransformer)
    own_prompt = isinstance(model, HybridMagnetTransformer)  # generates its prompt itself
    return Traits(controls=controls_of(generator.decoding_config()), takes_prompt=not own_prompt,
                  takes_infill=masked, takes_partner=masked,
                  autoregressive=isinstance(model, ARTransformer) and not own_prompt)


def parse_value(control: Control, value: Any) -> Any:
    """A control's value from the page -> the option's value; ValueError naming the option when it is not one."""
    try:
        if control.kind == "bool":
            return bool(value)
        if control.kind == "steps":
            steps = tuple(int(v) for v in str(value).replace(",", " ").split())
            if not steps:
                raise ValueError("empty")
            return steps
        if control.kind == "int":
            number = float(value)
            if number != int(number):
                raise ValueError("not a whole number")
            return int(number)
        if control.kind == "float":
            number = float(value)
            if not math.isfinite(number):
                raise ValueError("not finite")
            return number
    except (TypeError, ValueError):
        raise ValueError(f"{control.label}: {value!r} is not a valid value "
                         f"({'integers separated by spaces' if control.kind == 'steps' else control.kind})") from None
    if value not in control.choices:
        raise ValueError(f"{control.label}: {value!r} is not one of {', '.join(control.choices)}")
    return value


def changed_options(traits: Traits, values: dict[str, Any]) -> dict[str, Any]:
    """The options whose page value differs from the checkpoint's default, parsed (names the family does not take
    are ignored: the page shows only this family's controls)."""
    changed = {}
    for control in traits.controls:
        if control.name not in values or values[control.name] is None:
            continue
        value = parse_value(control, values[control.name])
        if value != parse_value(control, control.default):
            changed[control.name] = value
    return changed
