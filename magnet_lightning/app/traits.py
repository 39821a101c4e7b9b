"""What a loaded checkpoint takes, as the page shows it, read from the generation layer's family table
(`generation/families.py`, the generator's `decoder`): one control per decoding option of its family (default: the
checkpoint's own value, `MagnetGenerator.decoding_config()`), and whether it continues a prompt, infills a clip and
can be paired with an autoregressive checkpoint (rescorer, two-model hybrid).

A control's value from the page is turned back into the option's type here (`parse_value`), and only the options
the user changed are passed to the generator (`changed_options`): an untouched option keeps following the
checkpoint's own rule (e.g. MAGNeT's decoding steps grow with the duration).
"""

from __future__ import annotations

import math
import types
from dataclasses import dataclass, fields
from typing import Any, Union, get_args, get_origin, get_type_hints

from magnet_lightning.generation.families import family_label
from magnet_lightning.generation.magnet_config import SPAN_ARRANGEMENTS, SPAN_SCORINGS, STRIDE1_COVERS

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
    optional: bool = False
    """An empty value means the option's own default (e.g. Hybrid-MAGNeT's prompt_seconds)."""

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
    label: str = ""
    """The family's name in the page ('MAGNeT', ...)."""

    def control(self, name: str) -> Control:
        return next(c for c in self.controls if c.name == name)


def _optional(annotation: Any) -> tuple[Any, bool]:
    """(T, True) for `T | None`, else (annotation, False)."""
    args = get_args(annotation)
    if get_origin(annotation) in (Union, types.UnionType) and type(None) in args and len(args) == 2:
        return next(a for a in args if a is not type(None)), True
    return annotation, False


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
        annotation, optional = _optional(hints[field.name])
        kind = _kind(field.name, annotation)
        value = getattr(config, field.name)
        default = " ".join(str(v) for v in value) if kind == "steps" and value is not None else value
        controls.append(Control(field.name, kind, default, tuple(CHOICES.get(field.name, ())), optional))
    return tuple(controls)


def traits_of(generator: Any) -> Traits:
    """The traits of a loaded `MagnetGenerator`: its family's entry in the family table."""
    family = generator.decoder
    config = generator.decoding_config()
    if not isinstance(config, family.config_class):
        raise TypeError(f"the generator's decoding config is a {type(config).__name__}, its family's table says "
                        f"{family.config_class.__name__}")
    return Traits(controls=controls_of(config), takes_prompt=family.prompt, takes_infill=family.infill,
                  takes_partner=family.rescored, autoregressive=family.partner, label=family_label(generator.family))


def parse_value(control: Control, value: Any) -> Any:
    """A control's value from the page -> the option's value; ValueError naming the option when it is not one."""
    if control.optional and (value is None or (isinstance(value, str) and not value.strip())):
        return None
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
