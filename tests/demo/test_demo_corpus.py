"""The demo's synthetic corpus: deterministic, captions consistent with the audio's musical choices, built once and
reused, a fitted random codec when the real one is missing; the caption cache equals direct encoding; grad norm."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch
from support.cli_runs import assert_one_line, in_process
from support.paths import ROOT
from support.tiny_codecs import TINY_CODEC

from magnet_lightning.demo import corpus as corpus_mod
from magnet_lightning.demo.corpus import DemoConfig, prepare_demo_corpus
from magnet_lightning.demo.synth import MOODS, draw_spec, render
from magnet_lightning.errors import UserError


def test_tracks_are_deterministic_and_captions_match_their_choices():
    for seed in range(20):
        spec = draw_spec(seed)
        mode, (lo, hi), _, genres = MOODS[spec.mood]
        assert spec.mode == mode and lo <= spec.bpm <= hi and spec.genre in genres
        caption = spec.caption()
        for word in (spec.mood, spec.melody, f"{spec.bpm} bpm", spec.key, "drum" if spec.drums else "without drums"):
            assert word in caption
    a, b = render(draw_spec(3), 1.5, 16000), render(draw_spec(3), 1.5, 16000)
    assert a.shape == (24000,) and a.dtype == np.float32 and np.array_equal(a, b)
    assert 0.5 < np.abs(a).max() <= 0.9 + 1e-6
    assert not np.allclose(a, render(draw_spec(4), 1.5, 16000))


def test_cached_text_encoder_matches_batch_encoding():
    from magnet_lightning.demo.text_cache import CachedTextEncoder
    from magnet_lightning.models.conditioning import TextEncoder

    encoder = TextEncoder.random("tiny")
    cached = CachedTextEncoder(encoder)
    texts = ["sad piano in F minor", None, "happy upbeat drums, 128 bpm", "sad piano in F minor"]
    states, mask = encoder(texts)
    got_states, got_mask = cached(texts)
    assert torch.equal(got_mask, mask)
    torch.testing.assert_close(got_states, states, rtol=1e-4, atol=1e-5)
    assert (cached.misses, cached.hits) == (2, 1)
    cached(texts)
    assert cached.misses == 2  # nothing re-encoded


def _tiny_codec_dir(tmp_path):
    from transformers import EncodecConfig, EncodecModel

    torch.manual_seed(0)
    path = tmp_path / "tiny_codec"
    EncodecModel(EncodecConfig(**TINY_CODEC)).save_pretrained(path)
    return str(path)


def test_corpus_is_built_once_then_reused(tmp_path, monkeypatch):
    cfg = DemoConfig(root=str(tmp_path / "demo"), num_train=3, num_val=2, track_seconds=1.5,
                     codec=_tiny_codec_dir(tmp_path))
    first = prepare_demo_corpus(cfg)
    assert not first.random_codec and first.codec == cfg.codec and len(first.val_captions) == 2
    manifest = json.loads((tmp_path / "demo" / "shards" / "train" / "manifest.json").read_text())
    assert manifest["num_samples"] == 3

    monkeypatch.setattr(corpus_mod, "_build", lambda *a: pytest.fail("rebuilt a cached corpus"))
    assert prepare_demo_corpus(cfg) == first
    with pytest.raises(UserError, match=r"other settings \(num_train differ\): delete it \(rm -r "):
        prepare_demo_corpus(DemoConfig(**{**cfg.__dict__, "num_train": 4}))


def test_a_corpus_of_other_settings_is_one_line_at_the_command_line(tmp_path, monkeypatch, capfd):
    from magnet_lightning.cli.train import main

    stale = tmp_path / "outputs" / "demo" / "melody_corpus"  # e.g. made by an earlier version of the recipe
    stale.mkdir(parents=True)
    settings = {"num_train": 48, "num_val": 8, "track_seconds": 4.0, "codec": "facebook/encodec_32khz",
                "fit_tracks": 16, "seed": 0, "chroma": True, "mix": "melody"}
    (stale / "ready.json").write_text(json.dumps({"settings": settings}))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["train_music.py"])
    err = in_process(lambda a: main("demo_melody.yaml", a),
                     ["fit", "--config", str(ROOT / "recipes" / "configs" / "demo_melody.yaml")], capfd)
    assert_one_line(err, "holds a demo corpus built with other settings (num_train differ)",
                    "rm -r outputs/demo/melody_corpus")
    assert sorted(p.name for p in (tmp_path / "outputs" / "demo").iterdir()) == ["melody_corpus"]  # no run folder


def test_missing_codec_gets_a_fitted_random_codec(tmp_path, monkeypatch):
    monkeypatch.setitem(corpus_mod.RANDOM_CODEC_ARCHS, "nowhere/tiny-codec", TINY_CODEC)
    cfg = DemoConfig(root=str(tmp_path / "demo"), num_train=3, num_val=1, track_seconds=1.5,
                     codec="nowhere/tiny-codec", fit_tracks=3)
    corpus = prepare_demo_corpus(cfg)
    assert corpus.random_codec and corpus.codec == str((tmp_path / "demo" / "codec").resolve())

    from magnet_lightning.codec.codecs import load_codec

    codec = load_codec(corpus.codec)  # the saved, fitted codec reloads: decoding uses the same tokens
    wav = torch.from_numpy(render(draw_spec(0), 1.5, 16000))[None, None]
    codes = codec.encode(wav, 16000)
    assert codes[0, 0].unique().numel() > 10  # fitted codebooks: tokens vary (a random codec gives all zeros)
    assert not (tmp_path / "demo" / ".lock").exists()


def test_total_grad_norm_matches_torch():
    from magnet_lightning.callbacks.monitors import total_grad_norm

    model = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.ReLU(), torch.nn.Linear(7, 2))
    model(torch.randn(4, 5)).pow(2).sum().backward()
    expected = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=1e9)
    torch.testing.assert_close(total_grad_norm(model.parameters()), expected)
    halves = total_grad_norm(model.parameters(), reduce=lambda t, reduce_op: 2 * t)  # two equal "shards"
    torch.testing.assert_close(halves, expected * 2 ** 0.5)
