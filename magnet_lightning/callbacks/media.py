"""Audio and spectrogram media for whatever loggers the trainer has (global rank 0 calls these).

- ``WandbLogger``: ``wandb.Audio`` / ``wandb.Image`` lists and a ``wandb.Table`` (W&B stores a table's media in a run
  artifact; the lists also land in the run's own ``files/media``), keyed with ``trainer/global_step``.
- ``TensorBoardLogger``: ``add_audio`` (mono, as TensorBoard plays one channel), ``add_image`` of the spectrogram
  figure and ``add_text`` of the caption, at the global step.
- any other logger with a ``log_dir`` (``CSVLogger``, ...): files, ``LOG_DIR/media/GROUP/step_N/NN_slug.wav`` and
  ``.png`` plus ``captions.jsonl``.
- a logger with none of these gets no media (said once in the log).

wandb and tensorboard are imported only when such a logger is present. Shapes: C channels, L samples.
"""
from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import Tensor

from magnet_lightning.callbacks.spectrogram import spectrogram_figure
from magnet_lightning.metrics.generation_eval import Example

log = logging.getLogger(__name__)
COLUMNS = ["id", "prompt", "generated", "reference", "clap", "mel_generated", "mel_reference"]
_warned: set[str] = set()


@dataclass
class Clip:
    """One piece of audio to log."""

    tag: str
    """Logger key of this clip, e.g. 'demo/cfg3/00' (TensorBoard tag; file name part elsewhere)."""
    wav: Tensor
    """[C, L] float in [-1, 1]."""
    sample_rate: int
    caption: str
    fields: dict[str, Any] = field(default_factory=dict)
    """Extra table columns (W&B), e.g. {'prompt': ..., 'cfg': 3.0}."""


def _slug(text: str, limit: int = 40) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_")[:limit] or "clip"


# ------------------------------------------------------------------------------------------------ W&B
def _wandb_audio(wav: Tensor, sample_rate: int, caption: str) -> Any:
    import wandb

    data = wav.detach().float().cpu().clamp(-1, 1).numpy().T  # [L, C]
    return wandb.Audio(data[:, 0] if data.shape[1] == 1 else data, sample_rate=sample_rate, caption=caption)


def _wandb_image(wav: Tensor, sample_rate: int, caption: str) -> Any:
    import wandb

    return wandb.Image(spectrogram_figure(wav, sample_rate, caption), caption=caption)


def examples_payload(examples: Sequence[Example], prefix: str = "eval") -> dict[str, Any]:
    """``{prefix}/examples`` (wandb.Table), ``{prefix}/mel`` [wandb.Image], ``{prefix}/audio`` and
    ``{prefix}/audio_reference`` [wandb.Audio], ready for ``wandb.log``."""
    import wandb

    table = wandb.Table(columns=COLUMNS)
    images, audio, references = [], [], []
    for ex in examples:
        mel_gen = _wandb_image(ex.generated, ex.sample_rate, ex.text)
        has_ref = ex.reference is not None
        table.add_data(ex.key, ex.text, _wandb_audio(ex.generated, ex.sample_rate, ex.text),
                       _wandb_audio(ex.reference, ex.sample_rate, "reference") if has_ref else None, ex.clap, mel_gen,
                       _wandb_image(ex.reference, ex.sample_rate, f"reference: {ex.text}") if has_ref else None)
        images.append(mel_gen)
        audio.append(_wandb_audio(ex.generated, ex.sample_rate, ex.text))
        if has_ref:
            references.append(_wandb_audio(ex.reference, ex.sample_rate, f"reference: {ex.text}"))
    payload = {f"{prefix}/examples": table, f"{prefix}/mel": images, f"{prefix}/audio": audio}
    if references:
        payload[f"{prefix}/audio_reference"] = references
    return payload


def clips_payload(clips: Sequence[Clip], group: str, spectrograms: bool = True) -> dict[str, Any]:
    """``{group}/audio`` [wandb.Audio], ``{group}/mel`` [wandb.Image] and ``{group}/samples`` (a table with the
    clips' fields, audio and spectrogram)."""
    import wandb

    names = list(dict.fromkeys(k for c in clips for k in c.fields))
    table = wandb.Table(columns=[*names, "audio"] + (["spectrogram"] if spectrograms else []))
    audio, images = [], []
    for clip in clips:
        audio.append(_wandb_audio(clip.wav, clip.sample_rate, clip.caption))
        row = [clip.fields.get(k) for k in names] + [audio[-1]]
        if spectrograms:
            images.append(_wandb_image(clip.wav, clip.sample_rate, clip.caption))
            row.append(images[-1])
        table.add_data(*row)
    payload = {f"{group}/audio": audio, f"{group}/samples": table}
    if images:
        payload[f"{group}/mel"] = images
    return payload


# ------------------------------------------------------------------------------------------------ the others
def _tensorboard(logger, clips: Sequence[Clip], step: int, spectrograms: bool) -> None:
    writer = logger.experiment
    for clip in clips:
        mono = clip.wav.detach().float().cpu().clamp(-1, 1).mean(0, keepdim=True)  # [1, L]
        writer.add_audio(clip.tag, mono, global_step=step, sample_rate=clip.sample_rate)
        writer.add_text(f"{clip.tag}/caption", clip.caption, global_step=step)
        if spectrograms:
            writer.add_image(f"{clip.tag}/spectrogram", spectrogram_figure(clip.wav, clip.sample_rate, clip.caption),
                             global_step=step, dataformats="HWC")
    writer.flush()


def _files(folder: Path, clips: Sequence[Clip], spectrograms: bool) -> None:
    import soundfile
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "captions.jsonl").open("a", encoding="utf-8") as index:
        for i, clip in enumerate(clips):
            stem = f"{i:02d}_{_slug(clip.tag.split('/', 1)[-1])}"
            wav = clip.wav.detach().float().cpu().clamp(-1, 1).numpy().T
            soundfile.write(str(folder / f"{stem}.wav"), wav, clip.sample_rate, subtype="FLOAT")
            if spectrograms:
                figure = spectrogram_figure(clip.wav, clip.sample_rate, clip.caption)
                Image.fromarray(figure).save(folder / f"{stem}.png")
            index.write(json.dumps({"file": f"{stem}.wav", "tag": clip.tag, "caption": clip.caption,
                                    **clip.fields}, default=str) + "\n")


def log_clips(trainer: Any, clips: Sequence[Clip], group: str, spectrograms: bool = True,
              wandb_payload: dict[str, Any] | None = None) -> None:
    """Log `clips` to every logger of `trainer` at its global step; W&B gets `wandb_payload` when given (instead of
    the clips' own table)."""
    from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger

    if not clips:
        return
    step = trainer.global_step
    for logger in trainer.loggers:
        if getattr(logger, "takes_media", True) is False:
            continue
        if isinstance(logger, WandbLogger):
            payload = wandb_payload if wandb_payload is not None else clips_payload(clips, group, spectrograms)
            logger.experiment.log({**payload, "trainer/global_step": step})
        elif isinstance(logger, TensorBoardLogger):
            _tensorboard(logger, clips, step, spectrograms)
        elif getattr(logger, "log_dir", None):
            _files(Path(logger.log_dir) / "media" / group / f"step_{step}", clips, spectrograms)
        elif type(logger).__name__ not in _warned:
            _warned.add(type(logger).__name__)
            log.warning("%s has no media support here: audio and spectrograms are not logged to it.",
                        type(logger).__name__)


def log_examples(trainer: Any, examples: Sequence[Example], prefix: str = "eval") -> None:
    """Evaluated examples (generated and reference audio, caption, CLAP score) to every logger."""
    clips = []
    for i, ex in enumerate(examples):
        score = f" (CLAP {ex.clap:.3f})" if ex.clap is not None else ""
        clips.append(Clip(f"{prefix}/generated/{i:02d}", ex.generated, ex.sample_rate, f"{ex.text}{score}",
                          {"id": ex.key, "prompt": ex.text}))
        if ex.reference is not None:
            clips.append(Clip(f"{prefix}/reference/{i:02d}", ex.reference, ex.sample_rate, f"reference: {ex.text}",
                              {"id": ex.key, "prompt": ex.text}))
    wandb_payload = None
    if any(type(lg).__name__ == "WandbLogger" for lg in trainer.loggers):
        wandb_payload = examples_payload(examples, prefix) if examples else None
    log_clips(trainer, clips, prefix, wandb_payload=wandb_payload)
