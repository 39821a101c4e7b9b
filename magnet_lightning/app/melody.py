"""The app's melody input: an uploaded or recorded melody clip that a melody-conditioned checkpoint follows (its
chroma; README section 14).

The page shows the upload (in the Generate and Continue / infill tabs) only while the chosen checkpoint is
melody-conditioned (`Traits.melody`); choosing another checkpoint hides it and clears it, so a hidden clip is never
sent. The A/B tab's upload shows while A's or B's checkpoint is melody-conditioned; each side whose checkpoint is
follows it, the other generates from its caption alone, and each side's details say whether it followed the melody
(`ab_melodies`). A melody sent anyway for a text-only checkpoint (an API client) is refused by the generation plan's
own check (`generation/plan_checks.py::check_melody`), named as the page names it; a clip too short, silent or at an
odd sample rate (`codec/melody.py::melody_problem`) is one line naming the problem.

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
AB_LABEL = "Melody (A and B each follow it where their checkpoint is melody-conditioned; see each side's details)"


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
        model = _model(engine, name)
        return [gr.Audio(value=None, visible=model.traits.melody) for _ in uploads]

    ckpt.change(changed, ckpt, uploads, queue=False, api_visibility="private")


def ab_melodies(engine: Engine, ckpt_a: str | None, ckpt_b: str | None,
                path: str | None) -> tuple[str | None, str | None]:
    """The melody clip each side of an A/B comparison gets: a side whose checkpoint is melody-conditioned gets it,
    the other none. When neither is, A gets it, so A's request refuses it in one line as /generate does."""
    if not path:
        return None, None
    takes = [_model(engine, name).traits.melody for name in (ckpt_a, ckpt_b)]
    if not any(takes):
        return path, None
    return (path if takes[0] else None), (path if takes[1] else None)


def upload_pair(engine: Engine, ckpt_a: Any, ckpt_b: Any) -> gr.Audio:
    """The A/B tab's melody upload, shown while A's or B's checkpoint takes a melody, hidden and cleared otherwise."""
    def changed(name_a: str, name_b: str):
        if any(_model(engine, name).traits.melody for name in (name_a, name_b)):
            return gr.Audio(visible=True)
        return gr.Audio(value=None, visible=False)

    first = _model(engine, ckpt_a.value).traits.melody or _model(engine, ckpt_b.value).traits.melody
    upload = gr.Audio(sources=["upload", "microphone"], type="filepath", label=AB_LABEL, elem_id="ab-melody",
                      visible=first)
    for ckpt in (ckpt_a, ckpt_b):
        ckpt.change(changed, [ckpt_a, ckpt_b], upload, queue=False, api_visibility="private")
    return upload


def _model(engine: Engine, name: str | None) -> Loaded:
    """The loaded checkpoint `name` (the first one for a name the page does not know: requests refuse it)."""
    return engine.models.get(name) or next(iter(engine.models.values()))
