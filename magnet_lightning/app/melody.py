"""The app's melody input: an uploaded or recorded melody clip that a melody-conditioned checkpoint follows (its
chroma; README section 14).

The page shows the upload (in the Generate and Continue / infill tabs) only while the chosen checkpoint is
melody-conditioned (`Traits.melody`); choosing another checkpoint hides it and clears it, so a hidden clip is never
sent. A melody sent anyway for a text-only checkpoint (an API client) is refused by the generation plan's own check
(`generation/plan_checks.py::check_melody`), named as the page names it; a clip too short, silent or at an odd
sample rate (`codec/melody.py::melody_problem`) is one line naming the problem.

Shapes: C channels, N samples.
"""

from __future__ import annotations

from typing import Any

import gradio as gr
import torch

from magnet_lightning.app.engine import Engine, Loaded
from magnet_lightning.app.traits import PageNames
from magnet_lightning.codec.melody import melody_problem
from magnet_lightning.generation.options import OptionError
from magnet_lightning.generation.plan_checks import check_melody
from magnet_lightning.generation.request import GenerationRequest
from magnet_lightning.utils.audio import read_audio

LABEL = "Melody (melody-conditioned checkpoints: its chroma guides the clips)"


class MelodyError(ValueError):
    """A melody the app refuses; one line naming the problem and the fix."""


def read_melody(path: str | None, model: Loaded) -> tuple[torch.Tensor | None, int | None]:
    """The melody clip of a request: (float [C, N], sample rate), or (None, None) when none is given."""
    if not path:
        return None, None
    try:
        check_melody(model.generator.facts, GenerationRequest(melody=True))
    except OptionError as err:
        raise MelodyError(" ".join(err.render(PageNames()).split())) from None
    try:
        wav, rate = read_audio(path)
    except ValueError:
        raise MelodyError("the melody is not a readable audio file (WAV, FLAC or OGG)") from None
    problem = melody_problem(wav, rate, model.generator.melody_extractor.cfg)
    if problem:
        raise MelodyError(f"the melody: {problem}")
    return wav, rate


def upload(model: Loaded, elem_id: str) -> gr.Audio:
    """The melody upload, visible when `model` takes a melody."""
    return gr.Audio(sources=["upload", "microphone"], type="filepath", label=LABEL, elem_id=elem_id,
                    visible=model.traits.melody)


def wire(engine: Engine, ckpt: Any, uploads: list) -> None:
    """Show the uploads for a melody-conditioned checkpoint, hide and clear them for another."""
    def changed(name: str):
        model = engine.models.get(name) or next(iter(engine.models.values()))
        return [gr.Audio(value=None, visible=model.traits.melody) for _ in uploads]

    ckpt.change(changed, ckpt, uploads, queue=False, api_visibility="private")
