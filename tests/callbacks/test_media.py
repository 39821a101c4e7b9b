"""Logger-agnostic media: spectrogram figures (axes, title, colour bar, one size), audio and pictures to TensorBoard,
to W&B and as files for other loggers; the fixed-prompt demo callback inside a tiny training run."""

from __future__ import annotations

import glob
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import numpy as np
import pytest
import soundfile
import torch
from PIL import Image
from support.helpers import FixedBatches, loader
from support.metric_assets import FRAMES, RATE, make_module, save_tiny_codec

from magnet_lightning.callbacks import AudioDemoCallback
from magnet_lightning.callbacks.media import Clip, log_clips, log_examples
from magnet_lightning.callbacks.spectrogram import _MARGINS, FIGURE_SIZE, spectrogram_figure
from magnet_lightning.metrics.generation_eval import Example

LEFT, TOP, RIGHT, BOTTOM = _MARGINS
PLOT_W, PLOT_H = FIGURE_SIZE[0] - LEFT - RIGHT, FIGURE_SIZE[1] - TOP - BOTTOM


def _tone(seconds: float, hz: float, first_half_only: bool = False) -> torch.Tensor:
    t = torch.arange(int(seconds * RATE)) / RATE
    wav = 0.5 * torch.sin(2 * torch.pi * hz * t)
    if first_half_only:
        wav[len(wav) // 2:] = 0
    return wav[None]


def _plot(figure: np.ndarray) -> np.ndarray:
    return figure[TOP:TOP + PLOT_H, LEFT:LEFT + PLOT_W].astype(int).sum(-1)  # brightness of the plot area


def test_spectrogram_figure_has_one_size_axes_and_colour_bar():
    short, long = spectrogram_figure(_tone(1.0, 300), RATE, "short"), spectrogram_figure(_tone(3.7, 300), RATE, "x")
    assert short.shape == long.shape == (FIGURE_SIZE[1], FIGURE_SIZE[0], 3) and short.dtype == np.uint8
    # time runs left to right over the whole plot: a burst in the first half lights the left half only
    burst = _plot(spectrogram_figure(_tone(2.0, 1000, first_half_only=True), RATE))
    assert burst[:, : PLOT_W // 2 - 10].mean() > 2 * burst[:, PLOT_W // 2 + 10:].mean()
    # frequency runs bottom to top: a low tone's brightest row is low, a high tone's is high
    low, high = _plot(spectrogram_figure(_tone(1.0, 200), RATE)), _plot(spectrogram_figure(_tone(1.0, 6000), RATE))
    assert low.sum(1).argmax() > PLOT_H * 0.6 and high.sum(1).argmax() < PLOT_H * 0.4
    # colour bar: brightest at the top (0 dB), darkest at the bottom
    bar = short[TOP:TOP + PLOT_H, LEFT + PLOT_W + 14].astype(int).sum(-1)
    assert bar[0] > bar[PLOT_H // 2] > bar[-1]
    # labels: ink in the title band, under the plot (time) and left of it (Hz) - and no title ink without a title
    ink = (short < 128).all(-1)
    assert ink[:TOP].any() and ink[TOP + PLOT_H + 2:].any() and ink[TOP:TOP + PLOT_H, :LEFT - 6].any()
    untitled = (spectrogram_figure(_tone(1.0, 300), RATE, "") < 128).all(-1)
    assert not untitled[:TOP - 4].any()


def _clips() -> list[Clip]:
    return [Clip("demo/cfg1/00", _tone(1.0, 300), RATE, "calm piano | cfg 1", {"prompt": "calm piano", "cfg": 1.0}),
            Clip("demo/cfg3/00", _tone(1.5, 600).repeat(2, 1), RATE, "calm piano | cfg 3", {"prompt": "calm piano"})]


def _tensorboard_events(folder: str):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(folder, size_guidance={"audio": 0, "images": 0, "tensors": 0})
    events.Reload()
    return events


def test_clips_reach_tensorboard_and_file_loggers(tmp_path):
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    tb, csv = TensorBoardLogger(tmp_path, name="tb"), CSVLogger(tmp_path, name="csv")
    log_clips(SimpleNamespace(loggers=[tb, csv], global_step=7), _clips(), "demo")
    events = _tensorboard_events(tb.log_dir)
    assert set(events.Tags()["audio"]) == {"demo/cfg1/00", "demo/cfg3/00"}
    assert set(events.Tags()["images"]) == {"demo/cfg1/00/spectrogram", "demo/cfg3/00/spectrogram"}
    audio = events.Audio("demo/cfg3/00")[0]
    import io

    decoded, rate = soundfile.read(io.BytesIO(audio.encoded_audio_string))
    assert audio.step == 7 and rate == RATE and decoded.shape == (int(1.5 * RATE),)  # stereo down-mixed
    image = events.Images("demo/cfg1/00/spectrogram")[0]
    assert (image.width, image.height) == FIGURE_SIZE
    assert {"demo/cfg1/00/caption/text_summary", "demo/cfg3/00/caption/text_summary"} <= set(events.Tags()["tensors"])
    folder = Path(csv.log_dir) / "media" / "demo" / "step_7"
    wav, rate = soundfile.read(folder / "01_cfg3_00.wav")
    assert rate == RATE and wav.shape == (int(1.5 * RATE), 2)
    assert Image.open(folder / "00_cfg1_00.png").size == FIGURE_SIZE
    assert (folder / "captions.jsonl").read_text().count("calm piano | cfg") == 2


def test_the_run_folders_metrics_trail_takes_no_media(tmp_path, caplog):
    """The training CLI adds `MetricsTrail` (numbers only) to every run's loggers: clips skip it, quietly."""
    from lightning.pytorch.loggers import CSVLogger

    from magnet_lightning.callbacks.metrics_trail import MetricsTrail

    csv, trail = CSVLogger(tmp_path, name="csv"), MetricsTrail(tmp_path / "run")
    log_clips(SimpleNamespace(loggers=[csv, trail], global_step=3), _clips(), "eval")
    assert (Path(csv.log_dir) / "media" / "eval" / "step_3" / "01_cfg3_00.wav").is_file()
    assert not (tmp_path / "run").exists() and "no media support" not in caplog.text


def test_evaluated_examples_reach_tensorboard(tmp_path):
    from lightning.pytorch.loggers import TensorBoardLogger

    tb = TensorBoardLogger(tmp_path)
    examples = [Example("a", "calm piano", _tone(1.0, 300), _tone(1.0, 400), RATE, 0.25, 0),
                Example("b", "fast drums", _tone(1.0, 500), None, RATE, None, 1)]
    log_examples(SimpleNamespace(loggers=[tb], global_step=3), examples)
    tags = _tensorboard_events(tb.log_dir).Tags()["audio"]
    assert set(tags) == {"eval/generated/00", "eval/reference/00", "eval/generated/01"}


@pytest.fixture(scope="module")
def codec_dir(tmp_path_factory):
    return save_tiny_codec(tmp_path_factory.mktemp("codec") / "codec")


def test_demo_callback_logs_prompt_by_cfg_clips_with_ema_weights(tmp_path, codec_dir, monkeypatch):
    from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger

    for var in ("WANDB_DATA_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_ARTIFACT_DIR"):
        monkeypatch.setenv(var, str(tmp_path / "wandb_home"))
    module = make_module(codec_dir, ema_every_n_steps=1, ema_decay=0.5)
    demo = AudioDemoCallback(every_n_steps=2, prompts=["calm piano", "fast drums"], cfg_coefs=[1.0, 4.0],
                             duration=0.6, decoding_steps=[2, 1, 1, 1], at_end=False)
    used = []
    real_weights = AudioDemoCallback._weights
    monkeypatch.setattr(AudioDemoCallback, "_weights",
                        lambda self, trainer, pl: used.append(real_weights(self, trainer, pl)) or used[-1])
    tb, wb = TensorBoardLogger(tmp_path, name="tb"), WandbLogger(project="t", save_dir=str(tmp_path), offline=True)
    trainer = L.Trainer(accelerator="cpu", max_steps=4, logger=[tb, wb], enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                        callbacks=[demo])
    trainer.fit(module, loader(FixedBatches(4, frames=FRAMES, vary=True)))
    assert len(used) == 2 and all(m is not module.model for m in used)  # the EMA copy, at steps 2 and 4
    events = _tensorboard_events(tb.log_dir)
    tags = sorted(events.Tags()["audio"])
    assert tags == ["demo/cfg1/00", "demo/cfg1/01", "demo/cfg4/00", "demo/cfg4/01"]
    assert [a.step for a in events.Audio("demo/cfg4/01")] == [2, 4]
    wb.experiment.finish()
    run = glob.glob(str(tmp_path / "wandb" / "offline-run-*"))[0]
    assert len(glob.glob(f"{run}/files/media/audio/**/*.wav", recursive=True)) == 2 * 4
    assert len(glob.glob(f"{run}/files/media/table/demo/samples_*.table.json")) == 2
