"""Chroma in the token shards: the tokenizer stores each track's chroma (--chroma), batches carry the chroma of each
segment aligned with its codes, and a melody model refuses shards without chroma (or made otherwise), in one line
before anything is built."""

from __future__ import annotations

import io
import json
import math
import sys
from dataclasses import asdict

import numpy as np
import pytest
import soundfile as sf
from support.audio_folders import read_tar
from support.cli_runs import assert_one_line, in_process
from support.paths import ROOT
from support.tiny_codecs import tiny_hf_model
from support.token_data import INFO, npy, write_dataset

from magnet_lightning.codec.codecs import HFEncodecCodec
from magnet_lightning.codec.melody import MelodyExtractor
from magnet_lightning.config import MelodyConfig
from magnet_lightning.data.datamodule import TokenDataModule
from magnet_lightning.data.shards import ManifestMismatchError, read_manifest
from magnet_lightning.data.tokenize import TokenizeOptions, tokenize_dataset
from magnet_lightning.errors import UserError

TONES = {"a440": (440.0, 9), "c523": (523.25, 0)}  # librosa's chroma: bin 0 is C, bin 9 is A


def test_tokenizer_stores_each_tracks_chroma(tmp_path):
    folder = tmp_path / "audio"
    folder.mkdir()
    for name, (hz, _) in TONES.items():
        t = np.arange(int(22050 * 1.3)) / 22050
        sf.write(folder / f"{name}.wav", (0.5 * np.sin(2 * math.pi * hz * t)).astype(np.float32), 22050)
        (folder / f"{name}.txt").write_text(f"a tone at {hz} Hz")
    codec = HFEncodecCodec(tiny_hf_model(), name="tiny")
    chroma = MelodyExtractor(MelodyConfig(sample_rate=codec.sample_rate, stems="none"))
    opts = TokenizeOptions(samples_per_shard=4, batch_size=2, num_workers=0, progress=False)
    tokenize_dataset(folder, tmp_path / "shards", codec, name="t", opts=opts, chroma=chroma)
    manifest = read_manifest(tmp_path / "shards")
    assert manifest["chroma"] == {"n_chroma": 12, "radix2_exp": 14, "argmax": True, "stems": "none",
                                  "sample_rate": 16000, "hop_length": 4096, "chroma_rate": 16000 / 4096}
    samples = read_tar(tmp_path / "shards" / "t-000000.tar")
    for key, members in samples.items():
        rows = np.load(io.BytesIO(members["chroma.npy"]))
        assert rows.dtype == np.float16 and rows.shape == (1 + int(1.3 * 16000) // 4096, 12)
        pitch = TONES[next(name for name in TONES if name in json.loads(members["json"])["source"])][1]
        assert (rows.argmax(1) == pitch).mean() > 0.9  # the tone's pitch class


def _chroma_dataset(root, with_chroma=True):
    rng = np.random.default_rng(0)
    tracks = {}
    samples = []
    for i in range(3):
        codes = rng.integers(0, 64, (4, 200)).astype(np.int16)  # 4 s at 50 Hz
        chroma = np.eye(12, dtype=np.float16)[rng.integers(0, 12, 36)]  # 4 s at 9 frames/s (hop 1600 at 14.4 kHz)
        meta = {"caption": f"track {i}", "metadata": {}, "num_frames": 200}
        members = {"codes.npy": npy(codes), "json": json.dumps(meta).encode()}
        if with_chroma:
            members["chroma.npy"] = npy(chroma)
        samples.append((f"k{i}", members))
        tracks[f"k{i}"] = (codes, chroma.astype(np.float32))
    settings = {"n_chroma": 12, "radix2_exp": 12, "argmax": True, "stems": "none", "sample_rate": 6400}
    write_dataset(root, [samples], INFO)
    if with_chroma:  # the manifest of a --chroma tokenization
        manifest = json.loads((root / "manifest.json").read_text())
        manifest["chroma"] = {**settings, "hop_length": 1024, "chroma_rate": 6400 / 1024}
        (root / "manifest.json").write_text(json.dumps(manifest))
    return tracks, {**settings, "duration": 1.0, "attribute_dropout": 0.5}


def test_batches_carry_each_segments_chroma_aligned_with_its_codes(tmp_path):
    tracks, melody = _chroma_dataset(tmp_path / "ds")
    dm = TokenDataModule(str(tmp_path / "ds"), str(tmp_path / "ds"), batch_size=3, segment_duration=1.0, num_workers=0,
                         shuffle_buffer=1, batches_per_epoch=2, text_augment=False)
    dm.setup()
    dm.check_compatible(4, 64, 50.0, chroma=melody)
    rate = 6400 / 1024
    batch = next(iter(dm.val_dataloader()))
    assert batch["chroma"].shape == (3, int(1.0 * rate) + 2, 12) and batch["chroma_offset"].shape == (3,)
    for item in range(3):
        codes, chroma = tracks[batch["meta"][item]["key"]]
        start = next(s for s in range(200) if np.array_equal(codes[:, s:s + 50], batch["codes"][item].numpy()))
        first = int(start / 50.0 * rate)
        rows = chroma[first:first + batch["chroma"].shape[1]]
        assert np.array_equal(batch["chroma"][item, : rows.shape[0]].numpy(), rows)
        assert batch["chroma_offset"][item] == pytest.approx(start / 50.0 * rate - first)
        assert "chroma" not in batch["meta"][item] and "chroma_rows" not in batch["meta"][item]
    train = next(iter(dm.train_dataloader()))
    assert train["chroma"].shape == (3, int(1.0 * rate) + 2, 12)


def test_melody_model_refuses_shards_without_chroma_or_made_otherwise(tmp_path):
    _, melody = _chroma_dataset(tmp_path / "plain", with_chroma=False)
    dm = TokenDataModule(str(tmp_path / "plain"), batch_size=2, num_workers=0)
    dm.setup()
    with pytest.raises(ManifestMismatchError, match="hold no chroma features.*--chroma"):
        dm.check_compatible(4, 64, 50.0, chroma=melody)
    _chroma_dataset(tmp_path / "other")
    dm = TokenDataModule(str(tmp_path / "other"), batch_size=2, num_workers=0)
    dm.setup()
    with pytest.raises(ManifestMismatchError, match="stems 'none' in the shards, 'htdemucs' in the model"):
        dm.check_compatible(4, 64, 50.0, chroma={**melody, "stems": "htdemucs"})


def test_melody_recipe_on_shards_without_chroma_is_one_line(tmp_path, monkeypatch, capfd):
    from magnet_lightning.cli.train import main

    info = {"name": "facebook/encodec_32khz", "sample_rate": 32000, "frame_rate": 50.0, "num_codebooks": 4,
            "codebook_size": 2048, "channels": 1}
    codes = np.zeros((4, 100), np.int16)
    write_dataset(tmp_path / "shards", [[("a", {"codes.npy": npy(codes), "json": b'{"caption": "x"}'})]], info)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["train_music.py"])
    config = ROOT / "recipes" / "configs" / "demo_melody.yaml"
    err = in_process(lambda a: main("demo_melody.yaml", a), [
        "fit", "--config", str(config), "--demo.enabled", "false", "--trainer.logger", "false",
        "--data.train_shards", str(tmp_path / "shards"), "--data.val_shards", str(tmp_path / "shards")], capfd)
    assert_one_line(err, "hold no chroma features", "--chroma")
    assert not (tmp_path / "outputs").exists()


def test_melody_settings_must_fit_the_model():
    from support.helpers import TINY_MODEL, tiny_module

    with pytest.raises(UserError, match="needs model.melody"):
        tiny_module(model={**TINY_MODEL, "chroma_bins": 12, "chroma_fuse": "frames"})
    with pytest.raises(ValueError, match="MAGNeT family takes no prepended conditions"):
        tiny_module(model={**TINY_MODEL, "chroma_bins": 12}, melody=asdict(MelodyConfig(stems="none")))
