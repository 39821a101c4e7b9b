"""Reading audio files (soundfile: torchaudio.load needs TorchCodec in torchaudio 2.11)."""

from __future__ import annotations

from pathlib import Path

import torch

from magnet_lightning.utils.loudness import loudness_normalize


def read_audio(path: str | Path) -> tuple[torch.Tensor, int]:
    """[C, N] float32 and the sample rate; raises ValueError naming the file if it cannot be read or is empty."""
    import soundfile

    try:
        data, sample_rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except Exception as err:  # soundfile raises several types for missing, corrupt or unsupported files
        raise ValueError(f"cannot read audio file {path}: {err}") from err
    if data.shape[0] == 0:
        raise ValueError(f"audio file {path} is empty")
    return torch.from_numpy(data.T.copy()), int(sample_rate)


def write_wav(path: Path, wav: torch.Tensor, sample_rate: int, lufs: float | None = -14.0) -> None:
    """Write [C, N] as 32-bit float WAV, loudness-normalised to `lufs` (None: as is)."""
    import soundfile

    if lufs is not None:
        wav = loudness_normalize(wav, sample_rate, lufs)
    soundfile.write(str(path), wav.detach().cpu().float().numpy().T, sample_rate, subtype="FLOAT")
