"""Stereo data and training: the tokenizer writes interleaved [2K, T] codes with a stereo codec (`--codec
stereo:NAME`) and says channels 2 in the manifest; a stereo model trains on them, LoRA included, and its adapter
generates stereo audio; mono shards given to a stereo model, and the reverse, are one line before anything loads."""

from __future__ import annotations

import io
import json
import math
import tarfile

import lightning as L
import numpy as np
import pytest
import soundfile as sf
import torch
from support.cli_runs import assert_one_line, train_error
from support.helpers import TINY_MODEL, tiny_module
from support.tiny_codecs import tiny_hf_model, varied_audio
from support.token_data import INFO, sample, write_dataset

from magnet_lightning.checkpoint.export import export
from magnet_lightning.cli.tokenize import main as tokenize_main
from magnet_lightning.data.datamodule import TokenDataModule
from magnet_lightning.data.shards import ManifestMismatchError, check_compatible, read_manifest
from magnet_lightning.generation.generator import MagnetGenerator

pytestmark = pytest.mark.usefixtures("one_thread")

SR = 16000
STEREO_DELAYS = [0, 0, 1, 1]  # the tiny codec has K=2 per channel


@pytest.fixture(scope="module")
def stereo_shards(tmp_path_factory):
    """A tiny mono codec (K=2, V=64, 250 Hz) saved as a folder, and stereo shards tokenized with stereo:FOLDER from
    three stereo clips (different left and right) and one mono clip."""
    root = tmp_path_factory.mktemp("stereo")
    model = tiny_hf_model()
    with torch.no_grad():  # codebooks drawn from the latents of varied audio (k-means would take 15 s here)
        frames = torch.cat([model.encoder(w[None])[0].T for w in varied_audio()])  # [N, D]
        g = torch.Generator().manual_seed(0)
        for k, layer in enumerate(model.quantizer.layers):
            pick = torch.randperm(frames.shape[0], generator=g)[: layer.codebook.embed.shape[0]]
            layer.codebook.embed.copy_(frames[pick] * 0.5 ** k)
    model.save_pretrained(root / "codec")
    audio = root / "audio"
    audio.mkdir()
    t = np.arange(SR) / SR
    for i in range(3):
        left, right = np.sin(2 * math.pi * 220 * (i + 1) * t), np.sin(2 * math.pi * 330 * (i + 2) * t * (1 + t))
        sf.write(audio / f"duet{i}.wav", (0.4 * np.stack([left, right], 1)).astype(np.float32), SR)
        (audio / f"duet{i}.txt").write_text(f"duet {i}")
    sf.write(audio / "solo.wav", (0.4 * np.sin(2 * math.pi * 500 * t * (1 + t))).astype(np.float32), SR)
    (audio / "solo.txt").write_text("solo")
    summary = tokenize_main(["--input", str(audio), "--output", str(root / "shards"), "--codec",
                             f"stereo:{root / 'codec'}", "--num-workers", "0", "--no-progress"])
    assert summary["written"] == 4
    return root


def _samples(shards):
    out = {}
    for path in sorted(shards.glob("*.tar")):
        with tarfile.open(path) as tar:
            for member in tar.getmembers():
                key, ext = member.name.split(".", 1)
                if ext == "codes.npy":
                    out[key] = np.load(io.BytesIO(tar.extractfile(member).read()))
    return out


def test_tokenizer_writes_interleaved_stereo_codes(stereo_shards):
    manifest = read_manifest(stereo_shards / "shards")
    assert (manifest["channels"], manifest["num_codebooks"], manifest["codec"]) == (2, 4, "stereo:hf-encodec:codec")
    samples = _samples(stereo_shards / "shards")
    assert {codes.shape[0] for codes in samples.values()} == {4} and len(samples) == 4
    assert not np.array_equal(samples["duet0"][0::2], samples["duet0"][1::2])  # left and right codebooks differ
    assert np.array_equal(samples["solo"][0::2], samples["solo"][1::2])  # a mono clip is the same on both channels


def _stereo_module(root, **overrides):
    kwargs = dict(family="musicgen", delays=STEREO_DELAYS, model=dict(TINY_MODEL, num_codebooks=4, codebook_size=64),
                  codec=f"stereo:{root / 'codec'}", sample_rate=SR, frame_rate=250.0, segment_duration=0.2)
    return tiny_module(**{**kwargs, **overrides})


def _fit(module, root, folder, steps):
    dm = TokenDataModule(train_shards=str(root / "shards"), val_shards=str(root / "shards"), batch_size=2,
                         segment_duration=0.2, num_workers=0, shuffle_buffer=2, batches_per_epoch=steps)
    saver = L.pytorch.callbacks.ModelCheckpoint(dirpath=root / folder, filename="last", save_top_k=1)
    trainer = L.Trainer(accelerator="cpu", max_steps=steps, logger=False, enable_progress_bar=False,
                        enable_model_summary=False, callbacks=[saver], default_root_dir=root / folder,
                        num_sanity_val_steps=0, limit_val_batches=1)
    trainer.fit(module, datamodule=dm)
    return root / folder / "last.ckpt", trainer


@pytest.fixture(scope="module")
def stereo_base(stereo_shards):
    """A stereo base checkpoint in our format (untrained)."""
    module = _stereo_module(stereo_shards)
    path = stereo_shards / "base.ckpt"
    torch.save({"hyper_parameters": dict(module.hparams), "state_dict": module.state_dict()}, path)
    return path


def test_stereo_model_trains_and_its_lora_adapter_generates_stereo(stereo_shards, stereo_base):
    root = stereo_shards
    _, trainer = _fit(_stereo_module(root), root, "full", 2)
    assert math.isfinite(float(trainer.callback_metrics["val/loss"]))
    lora = dict(rank=2, alpha=4.0, dropout=0.0)
    adapter, _ = _fit(_stereo_module(root, init_from=str(stereo_base), lora=lora), root, "lora", 2)
    base = stereo_base
    gen = MagnetGenerator.from_pretrained(base, adapter=adapter, device="cpu", allow_random_text_encoder=True)
    assert gen.codec.channels == 2 and gen.model.pattern.delays == tuple(STEREO_DELAYS)
    result = gen.generate(["duet"], duration=0.1, seed=0)
    assert result.tokens.shape == (1, 4, 25) and result.audio.shape == (1, 2, 1600)
    out = export(base, root / "export", adapter=adapter)  # the local mono codec travels inside, named stereo:codec
    assert json.loads((out / "config.json").read_text())["codec"] == "stereo:codec"
    exported = MagnetGenerator.from_pretrained(out, device="cpu", allow_random_text_encoder=True)
    assert exported.codec.channels == 2 and exported.codec.source == str((out / "codec").resolve())


def test_a_stereo_base_is_not_fine_tuned_as_mono(stereo_shards, stereo_base):
    root, base = stereo_shards, stereo_base
    with pytest.raises(ValueError, match="is a stereo model .* is mono: set model.codec"):
        _stereo_module(root, codec=str(root / "codec"), init_from=str(base))
    with pytest.raises(ValueError, match=r"delay pattern \[0, 0, 1, 1\] differs .*set model.delays"):
        _stereo_module(root, delays=[0, 1, 2, 3], init_from=str(base))


def _stereo_shards_info():
    return {**INFO, "name": "stereo:synthetic", "num_codebooks": 8, "channels": 2}


def test_layout_check_names_both_sides():
    mono = {**INFO, "codec": "hf-encodec:facebook/encodec_32khz", "num_codebooks": 4}
    with pytest.raises(ManifestMismatchError, match=r"are mono \(4 codebooks.*model is stereo.*--codec stereo:x"):
        check_compatible(mono, 8, codec="stereo:x")
    stereo = {**mono, "codec": "stereo:hf-encodec:facebook/encodec_32khz", "num_codebooks": 8}
    with pytest.raises(ManifestMismatchError, match=r"are stereo \(8 codebooks.*model is mono"):
        check_compatible(stereo, 4, codec="facebook/encodec_32khz")
    check_compatible(stereo, 8, codec="stereo:facebook/encodec_32khz")  # the same layout passes


def test_training_refuses_mono_shards_for_a_stereo_model_in_one_line(tmp_path, monkeypatch, capfd):
    shards = write_dataset(tmp_path / "mono", [[sample("a", 30)]])  # codec 'synthetic', mono, K=4
    err = train_error(tmp_path, monkeypatch, capfd, "--data.train_shards", str(shards), "--model.codec",
                 "stereo:facebook/encodec_32khz")
    assert_one_line(err, "are mono", "the model is stereo", "--codec stereo:facebook/encodec_32khz")


def test_training_refuses_stereo_shards_for_a_mono_model_in_one_line(tmp_path, monkeypatch, capfd):
    codes = np.zeros((8, 30), np.int16)
    buf = io.BytesIO()
    np.save(buf, codes)
    shards = write_dataset(tmp_path / "stereo", [[("a", {"codes.npy": buf.getvalue(),
                                                          "json": json.dumps({"caption": "x"}).encode()})]],
                           info=_stereo_shards_info())
    err = train_error(tmp_path, monkeypatch, capfd, "--data.train_shards", str(shards))
    assert_one_line(err, "are stereo", "the model is mono")
