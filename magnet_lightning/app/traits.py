"""What a loaded checkpoint takes, as the page shows it, read from the generation layer's family table
(`generation/families.py`, the generator's `decoder`): one control per declared decoding option of its family
(generation/options.py: kind, choices, help; default: the checkpoint's own value, `MagnetGenerator.decoding_config()`),
and whether it continues a prompt, infills a clip, takes a melody and can be paired with an autoregressive checkpoint
(rescorer, two-model generation). Messages about options use the page's names for them (`PageNames`).

A control's value from the page is turned back into the option's type here (`parse_value`), and only the options the
user changed are passed to the generator (`changed_options`): an untouched option keeps following the checkpoint's own
rule (e.g. MAGNeT's decoding steps grow with the duration).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from magnet_lightning.generation.families import family_label
from magnet_lightning.generation.options import Names, declared_options, show

PAGE_NAMES = {"rescore_weight": "rescore weight", "prompt_seconds": "hybrid prompt", "duration": "duration",
              "infill": "infill", "prompt": "the clip", "rescorer": "autoregressive partner",
              "two_model": "autoregressive partner", "extend_stride": "long-form stride"}
"""Page names of the options and inputs that are not a control's own label."""


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
    help: str = ""
    """The declaration's help text (the control's info line)."""

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
    melody: bool = False
    """Melody-conditioned: takes a melody clip beside the captions (its chroma; app/melody.py)."""

    def control(self, name: str) -> Control:
        return next(c for c in self.controls if c.name == name)


def controls_of(config: Any) -> tuple[Control, ...]:
    """The controls of a decoding config (a dataclass instance of a family's config class): one per declared option
    that is a page control, its value as the default."""
    controls = []
    for declared in declared_options(type(config)):
        if not declared.option.control:
            continue
        value = getattr(config, declared.name)
        default = " ".join(str(v) for v in value) if declared.kind == "steps" and value is not None else value
        controls.append(Control(declared.name, declared.kind, default, declared.option.choices, declared.optional,
                                declared.help))
    return tuple(controls)


class PageNames(Names):
    """Options named as the page names them (a control's label), for the messages of the plan's checks."""

    UNITS = {"duration": " s", "prompt_seconds": " s", "extend_stride": " s"}

    def name(self, option: str) -> str:
        return PAGE_NAMES.get(option, option)

    def set(self, option: str, value: Any) -> str:
        if option not in PAGE_NAMES:  # a decoding control: its option name, as the details panel shows it
            return f"{option}={show(value)}"
        return f"{self.name(option)} {show(value)}{self.UNITS.get(option, '')}"


def traits_of(generator: Any) -> Traits:
    """The traits of a loaded `MagnetGenerator`: its family's entry in the family table."""
    family = generator.decoder
    config = generator.decoding_config()
    if not isinstance(config, family.config_class):
        raise TypeError(f"the generator's decoding config is a {type(config).__name__}, its family's table says "
                        f"{family.config_class.__name__}")
    return Traits(controls=controls_of(config), takes_prompt=family.prompt, takes_infill=family.infill,
                  takes_partner=family.rescored, autoregressive=family.partner, label=family_label(generator.family),
                  melody=generator.facts.melody is not None)


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
