"""Stem separation for the melody condition: demucs' htdemucs with the drums and the bass removed, as audiocraft's
`ChromaStemConditioner._get_stemmed_wav` does it (the waveform converted to demucs' rate and stereo with demucs'
`convert_audio`, `apply_model` with its defaults, the 'vocals' and 'other' stems summed, converted back to mono at
the caller's rate). `apply_model` shifts the input by a random offset (its `shifts=1`); python's `random` is seeded
with STEMS_SEED around each call (and restored after), so a melody always gives the same stems.

The weights are read from disk only, never downloaded: the Hugging Face cache of demucs' own hub repo
(`adefossez/HTDemucs`: htdemucs.yaml + 955717e8.safetensors, where demucs 4.1 looks first), or a folder holding
those two files. Only demucs' HTDemucs class is built from a file (its safetensors metadata names the class).

Shapes: B batch, N samples.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import torch

HTDEMUCS_REPO = "adefossez/HTDemucs"
HTDEMUCS_FILES = ("htdemucs.yaml", "955717e8.safetensors")
STEMS_SEED = 0
MELODY_STEMS = ("vocals", "other")
_ALLOWED_CLASS = "demucs.htdemucs.HTDemucs"


def _missing(where: str) -> FileNotFoundError:
    return FileNotFoundError(
        f"demucs' htdemucs weights (the melody condition's stem separation) not found: {where}. Download them once "
        f"on a machine with internet, `hf download {HTDEMUCS_REPO} {' '.join(HTDEMUCS_FILES)}` (they land in the "
        "Hugging Face cache, $HF_HOME/hub; copy it here), or put both files in a folder and pass that folder as the "
        "stems model; or use melody stems 'none' (the chroma of the whole mix, no stem separation)")


def htdemucs_files(source: str | Path = "htdemucs") -> tuple[Path, Path]:
    """(bag yaml, model safetensors) of htdemucs: from a folder, or 'htdemucs' from the Hugging Face cache only."""
    if str(source) != "htdemucs":
        folder = Path(source).expanduser()
        files = [folder / name for name in HTDEMUCS_FILES]
        if not all(f.is_file() for f in files):
            raise _missing(f"{folder} does not hold {' and '.join(HTDEMUCS_FILES)}")
        return files[0], files[1]
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        found = [Path(hf_hub_download(HTDEMUCS_REPO, name, local_files_only=True)) for name in HTDEMUCS_FILES]
    except (LocalEntryNotFoundError, FileNotFoundError, OSError):
        raise _missing(f"{' and '.join(HTDEMUCS_FILES)} of {HTDEMUCS_REPO} are not in the Hugging Face cache") from None
    return found[0], found[1]


def load_htdemucs(source: str | Path = "htdemucs"):
    """demucs' BagOfModels of htdemucs, read from `source` (see `htdemucs_files`); weights read as data."""
    import yaml
    from demucs.apply import BagOfModels
    from demucs.hf import load_safetensors_model
    from safetensors import safe_open

    bag_file, weights = htdemucs_files(source)
    with safe_open(str(weights), framework="pt") as handle:
        klass = (handle.metadata() or {}).get("klass")
    if klass != _ALLOWED_CLASS:
        raise ValueError(f"{weights} names model class {klass!r}; only {_ALLOWED_CLASS} is loaded")
    bag = yaml.safe_load(bag_file.read_text()) or {}
    if len(bag.get("models", [])) != 1:
        raise ValueError(f"{bag_file}: expected htdemucs' bag of one model, found {json.dumps(bag.get('models'))}")
    return BagOfModels([load_safetensors_model(weights)], bag.get("weights"), bag.get("segment")).eval()


class StemSeparator:
    """wav [B, 1, N] at `sample_rate` -> [B, 1, N]: the melodic stems (vocals + other) of each item, mono."""

    def __init__(self, model, device: torch.device | str = "cpu"):
        self.model = model.eval()
        self.device = torch.device(device)
        sources = list(model.sources)
        missing = [s for s in MELODY_STEMS if s not in sources]
        if missing:
            raise ValueError(f"the stem model separates {sources}: it has no {missing} stem")
        self.indices = torch.tensor([sources.index(s) for s in MELODY_STEMS])

    @classmethod
    def load(cls, source: str | Path = "htdemucs", device: torch.device | str = "cpu") -> StemSeparator:
        return cls(load_htdemucs(source), device)

    @torch.no_grad()
    def __call__(self, wav: torch.Tensor, sample_rate: int) -> torch.Tensor:
        from demucs.apply import apply_model
        from demucs.audio import convert_audio

        model = self.model
        wav = convert_audio(wav.float().to(self.device), sample_rate, model.samplerate, model.audio_channels)
        state = random.getstate()
        random.seed(STEMS_SEED)
        try:
            stems = apply_model(model, wav, device=self.device)
        finally:
            random.setstate(state)
        mix = stems[:, self.indices.to(stems.device)].sum(1)
        return convert_audio(mix, model.samplerate, sample_rate, 1)
