"""A fourth model family, as a user would add one: its own module and nothing else (docs/ARCHITECTURE.md, "Adding a
family"). Boosted-MAGNeT is MAGNeT with one new decoding option, `boost`, added to the sampling temperature. The
tests register it in the family tables for the duration of a test (`register`); every entry point then takes it."""

from __future__ import annotations

from dataclasses import dataclass, replace

from magnet_lightning.checkpoint.audiocraft_families import AUDIOCRAFT_IMPORTS
from magnet_lightning.generation import magnet
from magnet_lightning.generation.families import DECODER_FAMILIES, DecoderFamily
from magnet_lightning.generation.long_form import LongFormDefaults
from magnet_lightning.generation.magnet_config import DecodingConfig
from magnet_lightning.generation.options import option
from magnet_lightning.models.magnet import MagnetTransformer
from magnet_lightning.models.registry import MODEL_FAMILIES, ModelFamily
from magnet_lightning.training.families import TRAINING_FAMILIES

NAME = "boosted"
LABEL = "Boosted-MAGNeT"


class BoostedMagnet(MagnetTransformer):
    """MAGNeT's model; the family differs in decoding only (it declares the same sharded forwards as MAGNeT)."""

    family = NAME


@dataclass(frozen=True)
class BoostedConfig(DecodingConfig):
    """MAGNeT's options and the new one."""

    boost: float = option(0.0, "toy option: added to the sampling temperature of every stage", minimum=0.0,
                          maximum=2.0)


def decode_request(model, request):
    """MAGNeT's decoding at temperature + boost."""
    request.config = replace(request.config, temperature=request.config.temperature + request.config.boost)
    return magnet.decode_request(model, request)


def register(monkeypatch) -> None:
    """One entry in each family table (the entries a new family's module would add)."""
    magnet_family = MODEL_FAMILIES[MagnetTransformer.family]
    monkeypatch.setitem(MODEL_FAMILIES, NAME, ModelFamily(BoostedMagnet, LABEL, delay_pattern=False,
                                                          lora_targets=magnet_family.lora_targets))
    monkeypatch.setitem(DECODER_FAMILIES, NAME, DecoderFamily(
        BoostedConfig, decode_request, magnet.num_steps, "max_cfg_coef", LongFormDefaults(0.6, "MAGNeT's"),
        presets=True, infill=True))
    monkeypatch.setitem(TRAINING_FAMILIES, NAME, TRAINING_FAMILIES[MagnetTransformer.family])
    monkeypatch.setitem(AUDIOCRAFT_IMPORTS, NAME, None)
