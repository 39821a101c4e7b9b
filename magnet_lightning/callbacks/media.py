"""W&B media for evaluated examples: a table (id, prompt, generated / reference audio, CLAP score, mel pictures),
plus the generated clips' audio and mel pictures and the references' audio as plain media lists (W&B stores a
table's media in a run artifact; the lists also land in the run's own ``files/media``). wandb is imported here only.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from magnet_lightning.callbacks.spectrogram import mel_image
from magnet_lightning.metrics.generation_eval import Example

COLUMNS = ["id", "prompt", "generated", "reference", "clap", "mel_generated", "mel_reference"]


def _audio(wav: Any, sample_rate: int, caption: str) -> Any:
    import wandb

    data = wav.detach().float().cpu().clamp(-1, 1).numpy().T  # [L, C]
    return wandb.Audio(data[:, 0] if data.shape[1] == 1 else data, sample_rate=sample_rate, caption=caption)


def examples_payload(examples: Sequence[Example], prefix: str = "eval") -> dict[str, Any]:
    """``{prefix}/examples`` (wandb.Table), ``{prefix}/mel`` [wandb.Image], ``{prefix}/audio`` and
    ``{prefix}/audio_reference`` [wandb.Audio], ready for ``wandb.log``."""
    import wandb

    table = wandb.Table(columns=COLUMNS)
    images, audio, references = [], [], []
    for ex in examples:
        mel_gen = wandb.Image(mel_image(ex.generated, ex.sample_rate), caption=ex.text)
        has_ref = ex.reference is not None
        table.add_data(ex.key, ex.text, _audio(ex.generated, ex.sample_rate, ex.text),
                       _audio(ex.reference, ex.sample_rate, "reference") if has_ref else None, ex.clap, mel_gen,
                       wandb.Image(mel_image(ex.reference, ex.sample_rate), caption="reference") if has_ref else None)
        images.append(mel_gen)
        audio.append(_audio(ex.generated, ex.sample_rate, ex.text))
        if has_ref:
            references.append(_audio(ex.reference, ex.sample_rate, f"reference: {ex.text}"))
    payload = {f"{prefix}/examples": table, f"{prefix}/mel": images, f"{prefix}/audio": audio}
    if references:
        payload[f"{prefix}/audio_reference"] = references
    return payload
