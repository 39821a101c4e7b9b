"""`DecodingDefaults`: the decoding settings a training run stores in its checkpoint for generation, derived from
the declarations (generation/options.py): a preset, then any decoding option of a registered family (None: the
preset's or the family's own value). `--model.decoding.*` on the training command line, the recipes' YAML and the
checkpoint's `hyper_parameters.decoding` are all this class; generation reads back the options of its family.
"""

from __future__ import annotations

from dataclasses import asdict, field, make_dataclass
from typing import Any, Optional

from magnet_lightning.generation.families import DECODER_FAMILIES
from magnet_lightning.generation.magnet_config import DECODING_PRESETS
from magnet_lightning.generation.options import Declared, declared_options

RECORDED_ONLY = {"two_step_cfg": (bool, "autoregressive family, recorded from audiocraft's xp.cfg: its two-step CFG "
                                        "gives the batched rows' logits here, so it is no option")}
"""Settings an imported checkpoint records that are not options of any family."""
_TYPES = {"bool": bool, "int": int, "float": float, "choice": str, "str": str, "steps": list[int]}


def _union() -> dict[str, tuple[Declared, list[str]]]:
    table: dict[str, tuple[Declared, list[str]]] = {}
    for spec in DECODER_FAMILIES.values():
        for declared in declared_options(spec.config_class):
            table.setdefault(declared.name, (declared, []))[1].append(spec.config_class.__name__)
    return table


def _post_init(self) -> None:
    if self.preset not in DECODING_PRESETS:
        raise ValueError(f"decoding.preset={self.preset!r}: choose one of {sorted(DECODING_PRESETS)}")


def _to_dict(self) -> dict[str, Any]:
    """The preset and the fields that are set (what generation reads from the checkpoint)."""
    return {k: v for k, v in asdict(self).items() if v is not None}


def _build() -> type:
    options = _union()
    doc = ["Decoding settings stored in the checkpoint for generation: a preset, then any field set here (None: "
           "the preset's or the family's value; each family reads its own options).", "", "Args:",
           "    preset: 'music' (temperature 3, top-p 0.9, CFG 10 -> 1) or 'audio' (temperature 3.5, top-p 0.8, "
           "CFG 20 -> 1)."]
    fields_ = [("preset", str, field(default="music"))]
    for name, (declared, classes) in options.items():
        fields_.append((name, Optional[_TYPES[declared.kind]], field(default=None)))  # noqa: UP045 (runtime type)
        doc.append(f"    {name}: {declared.help} ({', '.join(classes)}).")
    for name, (kind, why) in RECORDED_ONLY.items():
        fields_.append((name, Optional[kind], field(default=None)))  # noqa: UP045
        doc.append(f"    {name}: {why}.")
    return make_dataclass("DecodingDefaults", fields_, namespace={
        "__post_init__": _post_init, "to_dict": _to_dict, "__doc__": "\n".join(doc), "__module__": __name__})


DecodingDefaults = _build()
