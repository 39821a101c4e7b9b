"""Melody test material: the fixtures audiocraft made (tests/fixtures/melody, see its README), demucs' stand-in
HTDemucs of those fixtures written the way demucs publishes htdemucs on the Hugging Face hub, and tiny melody
models for the training and generation tests."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import torch

from support import paths

FIXTURES = paths.FIXTURES / "melody"
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


# ---------------------------------------------------------------------------------------------- tiny melody models
TINY_MELODY = dict(sample_rate=3200, n_chroma=12, radix2_exp=8, argmax=True, stems="none", duration=0.5,
                   attribute_dropout=0.0)
"""Chroma at 50 frames/s (hop 64 at 3.2 kHz), like the codec frames: small, fast tests."""


def melody_module(family: str = "magnet", fuse: str = "frames", **overrides):
    """A tiny LightningModule of `family` with melody conditioning (12 chroma bins, fused by `fuse`)."""
    from support.helpers import TINY_MODEL, tiny_module

    model = {**TINY_MODEL, "chroma_bins": 12, "chroma_fuse": fuse, **overrides.pop("model", {})}
    masking = {"per_sample_stage": family == "hybrid"}
    return tiny_module(family=family, model=model, melody=TINY_MELODY, masking=masking, **overrides)


def chroma_classes(batch: int, rows: int, generator: torch.Generator) -> torch.Tensor:
    """long [B, rows]: a pitch class per chroma row, each held for 4 rows."""
    held = torch.randint(0, 12, (batch, -(-rows // 4)), generator=generator)
    return held.repeat_interleave(4, dim=1)[:, :rows]


def melody_batch(seed: int, batch: int = 4, frames: int = 24, shuffle: bool = False) -> dict:
    """A batch whose codes follow its chroma: stream k of frame t is (class + k) mod 16 of the chroma row nearest in
    time (models.melody.frame_indices); `shuffle` pairs the codes with another item's chroma."""
    from magnet_lightning.models.melody import frame_indices

    g = torch.Generator().manual_seed(seed)
    rows = frames + 2  # data.chroma.crop_chroma's length at equal rates
    classes = chroma_classes(batch, rows, g)
    index = frame_indices(frames, 50.0, 50.0, rows).expand(batch, -1)
    per_frame = classes.gather(1, index)  # [B, T]
    codes = (per_frame[:, None, :] + torch.arange(4)[None, :, None]) % 16
    chroma = torch.nn.functional.one_hot(classes, 12).float()
    if shuffle:
        chroma = chroma.roll(1, dims=0)
    texts = ["calm piano"] * batch
    return {"codes": codes, "padding_mask": torch.ones(batch, frames, dtype=torch.bool), "text": texts,
            "meta": [{} for _ in texts], "chroma": chroma, "chroma_offset": torch.zeros(batch, dtype=torch.float64)}


class MelodyBatches(torch.utils.data.Dataset):
    def __init__(self, length: int, **kw):
        self.length, self.kw = length, kw

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict:
        return melody_batch(index, **self.kw)
