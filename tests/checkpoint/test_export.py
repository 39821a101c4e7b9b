"""Slim exports: EMA weights + config as safetensors + JSON, loadable by load_pretrained / MagnetGenerator / the
generate CLI / --init_from; the license follows the weights' origin; push_to_hub uploads the folder."""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import pytest
import soundfile
import torch
from support.helpers import TINY_MODEL, FixedBatches, loader, tiny_module
from support.metric_assets import save_tiny_codec

from magnet_lightning.checkpoint.export import AUDIOCRAFT_LICENSE, export
from magnet_lightning.checkpoint.pretrained import load_pretrained
from magnet_lightning.cli.export import main


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A training checkpoint with EMA (live and averaged weights differ) and a tiny 16 kHz codec."""
    root = tmp_path_factory.mktemp("export")
    codec = save_tiny_codec(root / "codec")
    module = tiny_module(codec=codec, sample_rate=16000, frame_rate=50.0, segment_duration=0.6, ema_every_n_steps=2,
                         ema_decay=0.5, decoding={"decoding_steps": [2, 1, 1, 1], "temperature": 2.0})
    saver = L.pytorch.callbacks.ModelCheckpoint(dirpath=root / "ckpt", save_last=True)
    trainer = L.Trainer(accelerator="cpu", max_steps=4, logger=False, enable_progress_bar=False,
                        enable_model_summary=False, callbacks=[saver], default_root_dir=root)
    trainer.fit(module, loader(FixedBatches(4, vary=True)))
    return root / "ckpt" / "last.ckpt", codec, root


def test_export_holds_the_ema_weights_and_loads_everywhere(trained, tmp_path):
    import os

    ckpt, codec, _ = trained
    umask = os.umask(0o022)
    try:
        out = export(ckpt, tmp_path / "model", license="mit")
    finally:
        os.umask(umask)
    assert (out / "model.safetensors").stat().st_mode & 0o777 == 0o644  # shareable, as the umask allows
    # a local codec folder travels with the export (a hub codec would be named by its id)
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "codec", "config.json", "model.safetensors"]
    raw = torch.load(ckpt, weights_only=True)
    loaded = load_pretrained(out)
    ema = {k[len("model."):]: v for k, v in raw["state_dict"].items() if k.startswith("model.")}
    live = {k[len("model."):]: v for k, v in raw["current_model_state"].items() if k.startswith("model.")}
    state = loaded.model.state_dict()
    assert state.keys() == ema.keys()
    assert all(torch.equal(state[k], ema[k]) for k in ema)
    assert any(not torch.equal(state[k], live[k]) for k in live)  # the EMA, not the live weights
    reference = load_pretrained(ckpt)
    for field in ("text_encoder", "sample_rate", "frame_rate", "span_len", "segment_duration", "decoding"):
        assert getattr(loaded, field) == getattr(reference, field), field
    assert loaded.codec == str(out / "codec") and Path(reference.codec) == Path(codec)
    assert loaded.model.cfg == reference.model.cfg and loaded.decoding["temperature"] == 2.0
    config = json.loads((out / "config.json").read_text())
    assert config["license"] == "mit" and config["model"]["dim"] == TINY_MODEL["dim"]
    assert (out / "model.safetensors").stat().st_size < ckpt.stat().st_size / 3  # no live copy, no optimizer
    assert load_pretrained(out / "config.json").model.cfg == loaded.model.cfg  # the file names work too


def test_export_generates_through_the_cli_and_initialises_training(trained, tmp_path):
    from magnet_lightning.cli.generate import main as generate_main

    ckpt, codec, _ = trained
    out = export(ckpt, tmp_path / "model")
    wavs = tmp_path / "wavs"
    assert generate_main(["--ckpt", str(out), "--text", "calm piano", "--duration", "0.4", "--out", str(wavs),
                          "--seed", "0"]) == 0
    (wav,) = wavs.glob("*.wav")
    audio, rate = soundfile.read(wav)
    assert rate == 16000 and len(audio) == int(0.4 * 16000)
    module = tiny_module(init_from=str(out))
    assert torch.equal(module.model.heads, load_pretrained(out).model.heads)


def test_bfloat16_export_is_half_the_size(trained, tmp_path):
    ckpt, _, _ = trained
    full, half = export(ckpt, tmp_path / "f32"), export(ckpt, tmp_path / "bf16", dtype="bfloat16")
    ratio = (half / "model.safetensors").stat().st_size / (full / "model.safetensors").stat().st_size
    assert 0.45 < ratio < 0.55
    a, b = load_pretrained(full).model.state_dict(), load_pretrained(half).model.state_dict()
    assert all(torch.allclose(a[k], b[k], rtol=1e-2, atol=1e-2) for k in a)


def test_license_follows_the_origin_of_the_weights(tmp_path):
    from support.tiny_releases import best_state, write

    from magnet_lightning.checkpoint.audiocraft import convert_audiocraft

    src = write(tmp_path / "state_dict.bin", best_state(seed=1))
    convert_audiocraft(src, tmp_path / "converted.ckpt")
    for ckpt in (src, tmp_path / "converted.ckpt"):  # audiocraft's file and our conversion of it
        out = export(ckpt, tmp_path / f"out_{ckpt.stem}")
        assert json.loads((out / "config.json").read_text())["license"] == AUDIOCRAFT_LICENSE
        assert "license: cc-by-nc-4.0" in (out / "README.md").read_text()
        with pytest.raises(ValueError, match="CC|cc-by-nc"):
            export(ckpt, tmp_path / f"mit_{ckpt.stem}", license="mit")
    tuned = tiny_module(model=dict(TINY_MODEL), init_from=None)
    tuned.hparams.init_from = "checkpoints/magnet-small/state_dict.bin"  # fine-tuned from something
    torch.save({"hyper_parameters": dict(tuned.hparams), "state_dict": tuned.state_dict()}, tmp_path / "tuned.ckpt")
    with pytest.raises(ValueError, match="--license"):
        export(tmp_path / "tuned.ckpt", tmp_path / "tuned")
    assert not (tmp_path / "tuned").exists()  # nothing half-written


def test_cli_errors_are_one_line_and_push_to_hub_uploads_the_folder(trained, tmp_path, monkeypatch, capsys):
    ckpt, _, _ = trained
    with pytest.raises(SystemExit) as err:
        main([str(tmp_path / "absent.ckpt"), str(tmp_path / "x")])
    assert err.value.code == 2 and capsys.readouterr().err.startswith("error: ") and not (tmp_path / "x").exists()
    calls = []

    class FakeApi:
        def __init__(self, token=None):
            calls.append(("init", token))

        def create_repo(self, repo_id, **kwargs):
            calls.append(("create_repo", repo_id, kwargs["private"]))
            return f"https://hub.example/{repo_id}"

        def upload_folder(self, repo_id, folder_path, **kwargs):
            files = sorted(p.name for p in __import__("pathlib").Path(folder_path).iterdir())
            calls.append(("upload_folder", repo_id, files))

    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    assert main([str(ckpt), str(tmp_path / "model"), "--license", "mit", "--push-to-hub", "me/magnet-tiny"]) == 0
    assert calls[1:] == [("create_repo", "me/magnet-tiny", True),
                         ("upload_folder", "me/magnet-tiny", ["README.md", "codec", "config.json",
                                                              "model.safetensors"])]
    with pytest.raises(SystemExit):  # never over an existing export
        main([str(ckpt), str(tmp_path / "model")])
    assert "exists" in capsys.readouterr().err
