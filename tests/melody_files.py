"""Melody test material: the fixtures audiocraft made (tests/fixtures/melody, see its README), demucs' stand-in
HTDemucs of those fixtures written the way demucs publishes htdemucs on the Hugging Face hub, and tiny melody
models for the training and generation tests."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import torch

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "melody"
MELODY_LM = FIXTURES / "musicgen-melody-tiny"


def load(name: str) -> dict:
    return torch.load(FIXTURES / name, weights_only=True)


def standin_htdemucs():
    """The fixtures' stand-in for htdemucs: demucs' BagOfModels of one tiny random-weight HTDemucs."""
    from demucs.apply import BagOfModels
    from demucs.htdemucs import HTDemucs

    data = load("stems.pt")
    model = HTDemucs(segment=Fraction(*data["demucs_segment"]), **data["demucs_kwargs"])
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in data["demucs_state"].items()})
    return BagOfModels([model.eval()])


def htdemucs_folder(folder: Path) -> Path:
    """htdemucs.yaml + 955717e8.safetensors of the stand-in, in the layout and metadata of demucs' hub repo
    (demucs/hf.py reads them: the class, its arguments as JSON, fractions encoded)."""
    from safetensors.torch import save_file

    data = load("stems.pt")
    folder.mkdir(parents=True, exist_ok=True)
    numerator, denominator = data["demucs_segment"]
    kwargs = {**data["demucs_kwargs"], "segment": {"_type": "fraction", "numerator": numerator,
                                                   "denominator": denominator}}
    state = {k: v.float().contiguous() if v.is_floating_point() else v.contiguous()
             for k, v in data["demucs_state"].items()}
    save_file(state, str(folder / "955717e8.safetensors"), metadata={
        "klass": data["demucs_class"], "args": json.dumps([]), "kwargs": json.dumps(kwargs)})
    (folder / "htdemucs.yaml").write_text("models: ['955717e8']\n")
    return folder


class FixtureTexts:
    """A text encoder returning the fixtures' fixed text states for their captions (the reference's T5 stand-in)."""

    def __init__(self, data: dict):
        self.table = {text: (data["text_states"][i], data["text_mask"][i]) for i, text in
                      enumerate(data["descriptions"])}
        self.dim = data["text_states"].shape[-1]

    def to(self, device):
        return self

    def __call__(self, texts):
        states = torch.stack([self.table[t][0] for t in texts])
        mask = torch.stack([self.table[t][1] for t in texts])
        return states, mask
