"""Saved artefacts are self-contained and say what was random: checkpoints record absolute local paths and their
random parts, exports carry a local codec, generation manifests record the prompt audio, infill range and the seed
actually used, evaluation names every missing weight at once and reports random parts, missing-T5 errors name
--allow-random-text-encoder, and the smaller newcomer fixes (help texts, workers, .gitignore, resume summary)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from support.helpers import TINY_MODEL, tiny_module
from support.paths import ROOT

from magnet_lightning.errors import DEBUG_ENV, UserError
from magnet_lightning.utils.provenance import RANDOM_MARKER, RANDOM_PARTS_KEY


@pytest.fixture(autouse=True)
def _no_debug(monkeypatch):
    monkeypatch.setenv(DEBUG_ENV, "0")


def _mark_random(folder: Path) -> None:
    (folder / RANDOM_MARKER).write_text(json.dumps({"random_weights": True}))


def _checkpoint(tmp_path: Path, codec: str, text_encoder: str = "random:tiny") -> Path:
    """A tiny checkpoint whose hyper-parameters and random parts went through `on_save_checkpoint`."""
    module = tiny_module(model=dict(TINY_MODEL, codebook_size=64), codec=codec, sample_rate=16000,
                         segment_duration=0.5, text_encoder=text_encoder)
    raw = {"hyper_parameters": dict(module.hparams), "state_dict": module.state_dict()}
    module.on_save_checkpoint(raw)
    path = tmp_path / "tiny.ckpt"
    torch.save(raw, path)
    return path


# ------------------------------------------------------------------------------------------------ 2. paths
def test_checkpoint_records_absolute_local_paths_and_random_parts(assets, tmp_path, monkeypatch):
    import shutil

    shutil.copytree(assets[1] / "codec", tmp_path / "codecs" / "mine")
    _mark_random(tmp_path / "codecs" / "mine")
    monkeypatch.chdir(tmp_path)
    raw = torch.load(_checkpoint(tmp_path, "codecs/mine"), weights_only=True)
    assert raw["hyper_parameters"]["codec"] == str(tmp_path / "codecs" / "mine")
    assert raw[RANDOM_PARTS_KEY] == ["codec", "text_encoder"]
    untouched = torch.load(_checkpoint(tmp_path, "facebook/encodec_32khz", "t5-base"), weights_only=True)
    assert untouched["hyper_parameters"]["codec"] == "facebook/encodec_32khz" and untouched[RANDOM_PARTS_KEY] == []


def test_missing_local_codec_error_names_the_folder_not_hf_download(tmp_path, monkeypatch):
    from magnet_lightning.codec.codecs import load_codec

    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError) as err:
        load_codec("outputs/demo/corpus/codec")
    assert "hf download" not in str(err.value) and str(tmp_path / "outputs/demo/corpus/codec") in str(err.value)


def test_export_carries_its_codec_and_loads_from_anywhere(assets, tmp_path, monkeypatch):
    import shutil

    from magnet_lightning.checkpoint.export import export
    from magnet_lightning.checkpoint.pretrained import load_pretrained
    from magnet_lightning.cli.checks import peek_checkpoint

    work = tmp_path / "work"
    shutil.copytree(assets[1] / "codec", work / "codec_here")
    _mark_random(work / "codec_here")
    monkeypatch.chdir(work)
    out = export(_checkpoint(work, "codec_here"), tmp_path / "exported")
    shutil.rmtree(work)  # the original codec and checkpoint are gone: the export must not need them
    monkeypatch.chdir(tmp_path)
    config = json.loads((out / "config.json").read_text())
    assert config["codec"] == "codec" and config["random_parts"] == ["codec", "text_encoder"]
    assert "RANDOM WEIGHTS" in (out / "README.md").read_text()
    pretrained = load_pretrained(out)
    assert pretrained.codec == str(out / "codec") and pretrained.random_parts == ["codec", "text_encoder"]
    assert peek_checkpoint(out).codec == str(out / "codec")
    from magnet_lightning.codec.codecs import load_codec

    assert load_codec(pretrained.codec).random_weights


# ------------------------------------------------------------------------------------------------ 6. missing T5
def _generate_args(ckpt: Path, out: Path, **extra) -> argparse.Namespace:
    values = dict(infill=None, prompt_audio=None, duration=0.5, batch_size=1, num_samples=1, unconditional=None,
                  out=str(out), ckpt=str(ckpt), steps=None, temperature=None, top_k=None, top_p=None, cfg_max=None,
                  cfg_min=None, span_arrangement=None, span_scoring=None, greedy=False, preset=None, prompts=None,
                  cfg_coef=None, text_encoder=None, allow_random_text_encoder=False)
    return argparse.Namespace(**{**values, **extra})


def test_missing_t5_names_the_random_flag(tmp_path, monkeypatch):
    from magnet_lightning.cli.checks import check_generate_args

    jobs = lambda a: [("0000_x", "x")]  # noqa: E731
    plain = _checkpoint(tmp_path, "facebook/encodec_32khz", text_encoder=str(tmp_path / "no_t5"))
    with pytest.raises(UserError, match="--allow-random-text-encoder") as err:
        check_generate_args(_generate_args(plain, tmp_path / "out"), jobs)
    assert "hf download" not in str(err.value)  # a local folder
    raw = torch.load(plain, weights_only=True)
    raw[RANDOM_PARTS_KEY] = ["text_encoder"]
    torch.save(raw, plain)
    with pytest.raises(UserError, match="trained with a random-weight stand-in.*--allow-random-text-encoder"):
        check_generate_args(_generate_args(plain, tmp_path / "out"), jobs)
    check_generate_args(_generate_args(plain, tmp_path / "out", allow_random_text_encoder=True), jobs)


def test_the_end_of_a_run_says_how_to_generate():
    from magnet_lightning.cli.summary import generate_commands

    [line] = generate_commands("run/last.ckpt", "a calm 'piano'", Path("run"), random_text_encoder=True)
    assert line.startswith("python -m magnet_lightning.generate --ckpt /") and "--allow-random-text-encoder" in line
    assert "--allow-random" not in generate_commands("x.ckpt", "c", Path("o"), random_text_encoder=False)[0]


# ------------------------------------------------------------------------------------------------ 9. evaluation
def test_evaluation_names_every_missing_weight_file_at_once(tmp_path, monkeypatch):
    from magnet_lightning.metrics.suite import AudioEvalSuite

    monkeypatch.setenv("MAGNET_WEIGHTS_DIR", str(tmp_path))
    for name in ("MAGNET_VGGISH_CKPT", "MAGNET_PASST_CKPT", "MAGNET_CLAP_CKPT"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(FileNotFoundError) as err:
        AudioEvalSuite(("fad", "kl", "clap"))
    assert "3 embedder weight file(s) missing" in str(err.value)
    assert all(f"{name}:" in str(err.value) for name in ("vggish", "passt", "clap"))


def test_random_embedder_banner_prints_the_full_paths(tmp_path, monkeypatch, caplog):
    from magnet_lightning.metrics.suite import build_embedder

    monkeypatch.setenv("MAGNET_WEIGHTS_DIR", str(tmp_path))
    monkeypatch.delenv("MAGNET_VGGISH_CKPT", raising=False)
    with caplog.at_level(logging.WARNING):
        embedder = build_embedder("vggish", allow_random=True)
    assert embedder.random_weights
    assert "Searched:)" not in caplog.text and str(tmp_path) in caplog.text and "https://" in caplog.text


def test_evaluation_report_says_which_parts_were_random():
    from types import SimpleNamespace

    from magnet_lightning.cli.evaluate import random_weights

    gen = SimpleNamespace(codec=SimpleNamespace(random_weights=True), text_encoder=SimpleNamespace(is_random=False))
    facts = SimpleNamespace(random_parts=("text_encoder",))
    report = random_weights(facts, gen, SimpleNamespace(random_embedders=["passt"]))
    assert report["codec"] and not report["text_encoder"] and report["embedders"] == ["passt"]
    assert "the codec" in report["note"] and "the metric embedders" in report["note"] and "T5" in report["note"]


# ------------------------------------------------------------------------------------------------ 10. manifest
def test_generation_manifest_records_prompt_infill_and_the_seed(assets, tmp_path):
    from magnet_lightning.cli.generate import main

    ckpt, _ = assets
    clip = tmp_path / "clip.wav"
    sf.write(clip, np.random.default_rng(0).uniform(-0.5, 0.5, 8000).astype(np.float32), 16000)
    out = tmp_path / "out"
    main(["--ckpt", str(ckpt), "--text", "drums", "--prompt-audio", str(clip), "--infill", "0.1", "0.3", "--out",
          str(out), "--steps", "2", "1", "1", "1", "--no-fast"])
    record = json.loads((out / "manifest.jsonl").read_text().splitlines()[0])
    assert record["prompt_audio"] == str(clip) and record["infill"] == [0.1, 0.3]
    assert isinstance(record["seed"], int) and record["random_parts"] == ["text_encoder"]
    assert record["ckpt"] == str(ckpt) and "RANDOM WEIGHTS" in record["random_weights"]


def test_generate_help_says_each_default_once_and_documents_every_option(monkeypatch):
    import re

    from magnet_lightning.cli.generate import build_parser

    monkeypatch.setattr(sys, "argv", ["magnet-generate"])
    parser = build_parser()
    text = parser.format_help()
    assert text.startswith("usage: magnet-generate") and "(default: None)" not in text
    blocks = re.split(r"\n  (?=-)", text.split("options:", 1)[1])
    assert all(block.count("(default:") <= 1 for block in blocks), [b for b in blocks if b.count("(default:") > 1]
    assert all(a.help for a in parser._actions if a.option_strings)


def test_tokenizer_workers_fit_the_cores(monkeypatch):
    from magnet_lightning.cli import tokenize as module
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    assert module.default_workers() == 1
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)))
    assert module.default_workers() == 4


def test_readme_example_folders_are_ignored():
    ignored = (ROOT / ".gitignore").read_text().split()
    assert {"/shards/", "/exports/", "/outputs/"} <= set(ignored)


def test_val_loss_history_survives_a_resume():
    """The callback's state goes into the checkpoint (weights_only-loadable), so the end summary after a resume
    still starts at the run's first validation."""
    import io

    from magnet_lightning.callbacks.monitors import ValLossHistory

    before = ValLossHistory()
    before.history = [(40, 7.1), (80, 6.9)]
    buffer = io.BytesIO()
    torch.save(before.state_dict(), buffer)
    buffer.seek(0)
    after = ValLossHistory()
    after.load_state_dict(torch.load(buffer, weights_only=True))
    assert after.history == [(40, 7.1), (80, 6.9)]


def test_shard_manifest_names_a_local_random_codec(assets, tmp_path):
    import shutil

    from magnet_lightning.codec.codecs import load_codec
    from magnet_lightning.data.shards import write_manifest
    from magnet_lightning.data.tokenize import codec_info

    shutil.copytree(assets[1] / "codec", tmp_path / "codec")
    _mark_random(tmp_path / "codec")
    (tmp_path / "shards").mkdir()
    path = write_manifest(tmp_path / "shards", codec_info(load_codec(str(tmp_path / "codec"))), [])
    manifest = json.loads(path.read_text())
    assert manifest["codec_random_weights"] is True and manifest["codec_source"] == str(tmp_path / "codec")
    (tmp_path / "codec" / RANDOM_MARKER).unlink()
    plain = json.loads(write_manifest(tmp_path / "shards", codec_info(load_codec(str(tmp_path / "codec"))), [])
                       .read_text())
    assert "codec_random_weights" not in plain
