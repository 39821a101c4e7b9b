"""No sample or file is lost silently: per-file tokenizer failures are counted by reason and the rest of the shard
kept; captions under any alias; JSONL errors with their line; a changed input is described, then redone only where
it changed (or everywhere); stale temp files removed; duplicate keys skip one sample; the epoch is a whole number
of optimizer steps; every manifest field the model depends on is checked."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import soundfile as sf
from support.audio_folders import OPTS, SR, make_audio_folder, read_tar
from support.helpers import TINY_MODEL, tiny_module
from support.tiny_codecs import tiny_hf_model
from support.token_data import INFO, K, V, make_dm, sample, write_dataset

from magnet_lightning.codec.codecs import HFEncodecCodec
from magnet_lightning.data.datamodule import TokenDataModule
from magnet_lightning.data.inputs import scan_inputs
from magnet_lightning.data.pipeline import SkipCounter, iter_shard
from magnet_lightning.data.shards import (
    ManifestMismatchError,
    TarShardWriter,
    check_compatible,
    read_manifest,
    resolve_shards,
)
from magnet_lightning.data.tokenize import TokenizeOptions, tokenize_dataset
from magnet_lightning.errors import UserError

DEAD_PID = 2**22 + 12345  # above the default pid_max: never a running process


def tone(seconds=1.5, channels=1, freq=330.0):
    t = np.arange(int(SR * seconds)) / SR
    return np.repeat((0.4 * np.sin(2 * math.pi * freq * t))[:, None], channels, axis=1).astype(np.float32)


def keys_in(out: Path) -> set[str]:
    return {k for shard in read_manifest(out)["shards"] for k in read_tar(out / shard["url"])}


# ------------------------------------------------------------------------------------------------------- tokenizer
def test_per_file_failures_are_counted_by_reason_and_the_shard_kept(tmp_path):
    stereo = HFEncodecCodec(tiny_hf_model(audio_channels=2), "stereo")
    audio = tmp_path / "audio"
    audio.mkdir()
    for i in range(3):
        sf.write(audio / f"good{i}.wav", tone(channels=2, freq=200 + 100 * i), SR)
    sf.write(audio / "surround.wav", tone(channels=6), SR)  # 6 channels into a stereo codec
    nan = tone()
    nan[100:120] = np.nan
    sf.write(audio / "nan.wav", nan, SR, subtype="FLOAT")
    inf = tone()
    inf[5] = np.inf
    sf.write(audio / "inf.wav", inf, SR, subtype="FLOAT")
    (audio / "song.m4a").write_bytes(b"\x00\x00\x00\x20ftypM4A not readable by libsndfile")
    sf.write(audio / "mono.raw_take", tone(), SR, format="WAV")  # unknown extension, readable content
    opts = TokenizeOptions(samples_per_shard=100, batch_size=2, num_workers=0, progress=False)
    summary = tokenize_dataset(audio, tmp_path / "tok", stereo, opts=opts)
    assert summary["skipped"] == {"channels": 1, "non_finite": 2, "unsupported": 1}
    assert summary["written"] == 4
    assert keys_in(tmp_path / "tok") == {"good0", "good1", "good2", "mono"}
    manifest = read_manifest(tmp_path / "tok")
    assert manifest["skipped"]["channels"] == 1 and manifest["skipped"]["non_finite"] == 2
    assert manifest["skipped"]["unsupported"] == 1 and manifest["num_samples"] == 4


def test_caption_aliases_and_empty_caption_count(tmp_path, caplog):
    audio = tmp_path / "audio"
    audio.mkdir()
    for name, sidecar in (("a", {"prompt": "warm pad"}), ("b", {"text": "drums"}), ("c", {"title": "no caption"}),
                          ("d", None)):
        sf.write(audio / f"{name}.wav", tone(freq=300 + ord(name)), SR)
        if sidecar is not None:
            (audio / f"{name}.json").write_text(json.dumps(sidecar))
    with caplog.at_level(logging.WARNING):
        items = scan_inputs(audio)
    assert [(i.key, i.caption) for i in items] == [("a", "warm pad"), ("b", "drums"), ("c", ""), ("d", "")]
    assert "2 of 4 tracks have no caption" in caplog.text and "'title'" in caplog.text
    (tmp_path / "list.jsonl").write_text(json.dumps({"path": "audio/a.wav", "prompt": "from a list"}) + "\n")
    assert scan_inputs(tmp_path / "list.jsonl")[0].caption == "from a list"
    codec = HFEncodecCodec(tiny_hf_model(), "tiny")
    summary = tokenize_dataset(items, tmp_path / "tok", codec, opts=OPTS)
    assert summary["empty_captions"] == 2 and read_manifest(tmp_path / "tok")["empty_captions"] == 2


def test_malformed_jsonl_line_is_named(tmp_path):
    (tmp_path / "list.jsonl").write_text('{"path": "a.wav", "caption": "ok"}\n\n{"path": "b.wav", "caption": \n')
    with pytest.raises(UserError, match=r"list\.jsonl:3: not valid JSON"):
        scan_inputs(tmp_path / "list.jsonl")
    (tmp_path / "list.jsonl").write_text('{"path": "a.wav"}\n{"caption": "no path"}\n')
    with pytest.raises(UserError, match=r"list\.jsonl:2: record without a 'path'"):
        scan_inputs(tmp_path / "list.jsonl")
    (tmp_path / "bad").mkdir()
    sf.write(tmp_path / "bad" / "x.wav", tone(), SR)
    (tmp_path / "bad" / "x.json").write_text("{oops")
    with pytest.raises(UserError, match=r"x\.json: not valid JSON"):
        scan_inputs(tmp_path / "bad")


def test_changed_input_is_described_then_redone_incrementally_or_fully(tmp_path):
    codec = HFEncodecCodec(tiny_hf_model(), "tiny")
    audio = make_audio_folder(tmp_path / "audio")  # 8 files -> shards of 3, 3, 2
    out = tmp_path / "tok"
    tokenize_dataset(audio, out, codec, opts=OPTS)
    first = {i: (out / f"shard-{i:06d}.tar.done.json").stat().st_mtime_ns for i in range(3)}
    sf.write(audio / "zz_new.wav", tone(), SR)  # sorts last: only the last shard changes
    with pytest.raises(UserError, match=r"1 new input file\(s\) \(zz_new\.wav\).*--incremental.*--force"):
        tokenize_dataset(audio, out, codec, opts=OPTS)
    assert read_manifest(out)["num_samples"] == 5  # the refused run changed nothing
    again = tokenize_dataset(audio, out, codec, opts=OPTS, on_change="incremental")
    assert again["shards_done"] == [2] and again["shards_skipped"] == [0, 1]
    assert {i: (out / f"shard-{i:06d}.tar.done.json").stat().st_mtime_ns for i in (0, 1)} == {
        i: first[i] for i in (0, 1)}
    assert read_manifest(out)["num_samples"] == 6 and "zz_new" in keys_in(out)
    (audio / "zz_new.wav").unlink()
    (audio / "sweep.0.wav").unlink()  # every later shard shifts
    (audio / "short.wav").unlink()  # 6 files left: 2 shards
    with pytest.raises(UserError, match=r"3 input file\(s\) gone \(short\.wav, sweep\.0\.wav, zz_new\.wav\)"):
        tokenize_dataset(audio, out, codec, opts=OPTS)
    full = tokenize_dataset(audio, out, codec, opts=OPTS, on_change="force")
    assert full["shards_done"] == [0, 1] and not (out / "shard-000002.tar.done.json").exists()
    assert not (out / "shard-000002.tar").exists() and read_manifest(out)["num_samples"] == 4


def test_stale_temporary_files_are_removed_at_the_next_start(tmp_path):
    codec = HFEncodecCodec(tiny_hf_model(), "tiny")
    audio = make_audio_folder(tmp_path / "audio")
    out = tmp_path / "tok"
    out.mkdir()
    stale = [out / f"shard-000001.tar.tmp{DEAD_PID}", out / "shard-000002.tar.done.tmp",
             out / f"manifest.json.tmp{DEAD_PID}"]
    live = out / "shard-000000.tar.tmp1"  # pid 1 is running: a concurrent writer's file is left alone
    for path in [*stale, live]:
        path.write_bytes(b"half a file")
    tokenize_dataset(audio, out, codec, opts=OPTS)
    assert not any(p.exists() for p in stale) and live.exists()
    assert read_manifest(out)["num_samples"] == 5


def test_script_checks_the_input_before_loading_the_codec(tmp_path, monkeypatch, capsys):
    from magnet_lightning.cli import tokenize as script
    monkeypatch.setattr(script, "load_codec", lambda *a, **k: pytest.fail("the codec was loaded"))
    out = tmp_path / "out"
    for args, message in (
            (["--input", str(tmp_path / "absent")], "does not exist"),
            (["--input", str(tmp_path), "--samples-per-shard", "0"], "--samples-per-shard must be positive"),
            (["--input", str(tmp_path)], "no audio files found")):
        with pytest.raises(SystemExit) as exit_info:
            script.main([*args, "--output", str(out)])
        assert exit_info.value.code == 2 and message in capsys.readouterr().err
    assert not out.exists()


# ------------------------------------------------------------------------------------------------------- reader
def test_duplicate_key_skips_that_sample_only(tmp_path):
    path = tmp_path / "dup-000000.tar"
    with TarShardWriter(path) as sink:
        for key in ("a", "b", "b", "c", "a", "d"):  # b twice in a row, a again later
            sink.write(key, dict([sample(key, 20)])[key])
    counter = SkipCounter()
    keys = [meta["key"] for _, meta in iter_shard(str(path), counter, K, V)]
    assert keys == ["a", "b", "c", "d"]
    assert counter.totals()["duplicate_key"] == 2 and counter.totals()["corrupt_shard"] == 0


def test_manifest_listing_a_missing_shard_is_named(tmp_path):
    root = write_dataset(tmp_path / "ds", [[sample("x", 30)], [sample("y", 30)]])
    (root / "ds-000001.tar").unlink()
    with pytest.raises(FileNotFoundError, match=r"1 of the 2 shards .* missing, e\.g\. .*ds-000001\.tar"):
        resolve_shards(str(root))


# ------------------------------------------------------------------------------------------------------- manifests
MODEL = {"num_codebooks": K, "codebook_size": V, "frame_rate": 50.0, "codec": "synthetic", "sample_rate": 16000,
         "channels": 1}


@pytest.mark.parametrize("field,value", [("num_codebooks", 8), ("codebook_size", 2048), ("frame_rate", 75.0),
                                         ("codec", "hf-encodec:facebook/encodec_32khz"), ("sample_rate", 32000),
                                         ("channels", 2)])
def test_every_manifest_field_the_model_depends_on_is_refused(field, value):
    manifest = {**INFO, "codec": INFO["name"]}
    check_compatible(manifest, **MODEL)
    with pytest.raises(ManifestMismatchError, match=rf"\b{field.split('_')[0]}"):
        check_compatible(manifest, **{**MODEL, field: value})


def test_codec_names_compare_by_identity():
    from magnet_lightning.data.shards import codec_base_name

    assert codec_base_name("hf-encodec:facebook/encodec_32khz") == codec_base_name("facebook/encodec_32khz")
    assert codec_base_name("hf-encodec:codec") == codec_base_name("/data/demo/corpus/codec/")
    assert codec_base_name("encodec-pkg:encodec_24khz@6kbps") == codec_base_name("encodec_24khz")
    assert codec_base_name("hf-encodec:facebook/encodec_24khz") != codec_base_name("facebook/encodec_32khz")


class Steps(L.Callback):
    def __init__(self):
        self.micro = self.optimizer_steps = 0

    def on_train_batch_end(self, *args):
        self.micro += 1

    def on_before_optimizer_step(self, *args):
        self.optimizer_steps += 1


def _fit(tmp_path, dm, module, max_steps):
    steps = Steps()
    trainer = L.Trainer(accelerator="cpu", max_steps=max_steps, accumulate_grad_batches=2, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        num_sanity_val_steps=0, limit_val_batches=0, callbacks=[steps], default_root_dir=tmp_path)
    trainer.fit(module, datamodule=dm)
    return trainer, steps


@pytest.fixture
def tokens(tmp_path):
    return write_dataset(tmp_path / "ds", [[sample(f"s{i}", 60, seed=i) for i in range(6)]])


def test_epoch_is_a_whole_number_of_optimizer_steps(tmp_path, tokens, caplog):
    dm = TokenDataModule(train_shards=str(tokens), batch_size=2, segment_duration=0.5, num_workers=0,
                         shuffle_buffer=2, batches_per_epoch=3)
    module = tiny_module(model=dict(TINY_MODEL, codebook_size=V), codec="synthetic", sample_rate=16000,
                         segment_duration=0.5)
    with caplog.at_level(logging.WARNING):
        trainer, steps = _fit(tmp_path, dm, module, max_steps=4)
    assert trainer.global_step == steps.optimizer_steps == 4
    assert steps.micro == 2 * steps.optimizer_steps  # every optimizer step saw 2 micro-batches
    assert "using 4 batches per epoch" in caplog.text


def test_shards_of_another_codec_stop_training_before_step_one(tmp_path, tokens):
    dm = TokenDataModule(train_shards=str(tokens), batch_size=2, segment_duration=0.5, num_workers=0,
                         shuffle_buffer=2, batches_per_epoch=2)
    module = tiny_module(model=dict(TINY_MODEL, codebook_size=V), codec="facebook/encodec_32khz", sample_rate=32000,
                         segment_duration=0.5)
    steps = Steps()
    with pytest.raises(ManifestMismatchError, match=r"sample rate.*16000.*32000.*codec 'synthetic'"):
        trainer = L.Trainer(accelerator="cpu", max_steps=2, logger=False, enable_checkpointing=False,
                            enable_progress_bar=False, enable_model_summary=False, callbacks=[steps],
                            default_root_dir=tmp_path)
        trainer.fit(module, datamodule=dm)
    assert steps.micro == 0


def test_datamodule_check_names_the_codec_and_sample_rate(tokens):
    dm = make_dm(tokens)
    dm.check_compatible(K, V, 50.0, codec="synthetic", sample_rate=16000)
    with pytest.raises(ManifestMismatchError, match="codec"):
        dm.check_compatible(K, V, 50.0, codec="facebook/encodec_32khz")


def test_output_inside_the_input_is_not_read_as_input(tmp_path):
    codec = HFEncodecCodec(tiny_hf_model(), "tiny")
    audio = make_audio_folder(tmp_path / "audio")
    first = tokenize_dataset(audio, audio / "tokens", codec, opts=OPTS)
    again = tokenize_dataset(audio, audio / "tokens", codec, opts=OPTS)  # shards and done-records now in the input
    assert again["shards_done"] == [] and again["shards_skipped"] == first["shards_done"]
