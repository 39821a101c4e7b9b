"""Tokenizing generated audio with tiny codecs of both families into shards, then reading them back."""

import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from support.audio_folders import OPTS, make_audio_folder, read_tar
from support.tiny_codecs import tiny_hf_model, tiny_pkg_model, varied_audio

from magnet_lightning.codec.codecs import EncodecPackageCodec, HFEncodecCodec
from magnet_lightning.codec.fit import fit_codebooks
from magnet_lightning.data.datamodule import TokenDataModule
from magnet_lightning.data.inputs import make_key, scan_inputs
from magnet_lightning.data.shards import read_manifest
from magnet_lightning.data.tokenize import TokenizeOptions, tokenize_dataset
from magnet_lightning.errors import UserError


def fitted(codec):
    return fit_codebooks(codec, varied_audio(), 16000)


@pytest.mark.parametrize("family", ["hf", "pkg"])
def test_tokenize_folder_to_shards_to_batches(tmp_path, family):
    codec = fitted(HFEncodecCodec(tiny_hf_model(), "hf-encodec:tiny") if family == "hf"
                   else EncodecPackageCodec(tiny_pkg_model()))
    audio = make_audio_folder(tmp_path / "audio")
    summary = tokenize_dataset(audio, tmp_path / "tok", codec, opts=OPTS)
    assert summary["written"] == 5
    assert summary["skipped"] == {"unreadable": 1, "silent": 1, "too_short": 1}

    manifest = read_manifest(tmp_path / "tok")
    assert manifest["num_samples"] == 5 and manifest["skipped"]["unreadable"] == 1
    assert (manifest["codec"], manifest["num_codebooks"], manifest["codebook_size"]) == (
        codec.name, codec.num_codebooks, codec.codebook_size)
    assert manifest["frame_rate"] == codec.frame_rate and manifest["sample_rate"] == codec.sample_rate
    distinct = set()
    for shard in manifest["shards"]:
        samples = read_tar(tmp_path / "tok" / shard["url"])
        assert len(samples) == shard["num_samples"]
        for key, members in samples.items():
            assert "." not in key and set(members) == {"codes.npy", "json"}
            codes = np.load(io.BytesIO(members["codes.npy"]))
            meta = json.loads(members["json"])
            assert codes.dtype == np.int16 and codes.shape[0] == codec.num_codebooks
            assert codes.shape[1] == math.ceil(meta["duration"] * codec.frame_rate)
            assert codes.min() >= 0 and codes.max() < codec.codebook_size
            assert Path(meta["source"]).exists()
            distinct.update(np.unique(codes[0]).tolist())
            if key.startswith("sweep"):
                assert meta["caption"].startswith("sweep") and meta["metadata"]["genre"] == "test"
            else:
                assert key == "sub__noise" and meta["caption"] == "stereo noise"
    assert len(distinct) > 4  # fitted codebooks: tokens carry information

    dm = TokenDataModule(train_shards=str(tmp_path / "tok"), val_shards=str(tmp_path / "tok"), batch_size=2,
                         segment_duration=2.0, num_workers=0, shuffle_buffer=2, batches_per_epoch=4,
                         num_codebooks=codec.num_codebooks, codebook_size=codec.codebook_size,
                         frame_rate=codec.frame_rate)
    dm.setup("fit")
    seg = round(2.0 * codec.frame_rate)
    for batch in list(dm.train_dataloader()) + list(dm.val_dataloader()):
        assert batch["codes"].shape[1:] == (codec.num_codebooks, seg) and batch["codes"].dtype == torch.long
        assert batch["padding_mask"].shape == (batch["codes"].shape[0], seg)
        for i, meta in enumerate(batch["meta"]):  # tracks shorter than 2 s are padded, and the mask says so
            real = int(batch["padding_mask"][i].sum())
            assert real == min(seg, math.ceil(meta["duration"] * codec.frame_rate)) or real >= 0.8 * seg


def test_resume_and_multi_rank_merge(tmp_path):
    codec = HFEncodecCodec(tiny_hf_model(), "tiny")
    audio = make_audio_folder(tmp_path / "audio")  # 8 files -> 3 shards of 3
    out = tmp_path / "tok"
    first = tokenize_dataset(audio, out, codec, opts=OPTS, rank=1, world_size=2)
    assert first["shards_done"] == [1] and first["manifest"] is None  # rank 0's shards are not done yet
    assert not (out / "manifest.json").exists()
    second = tokenize_dataset(audio, out, codec, opts=OPTS, rank=0, world_size=2)
    assert second["shards_done"] == [0, 2] and second["manifest"] is not None
    assert read_manifest(out)["num_samples"] == 5
    (out / "shard-000002.tar.done.json").unlink()  # pretend the last shard was interrupted
    again = tokenize_dataset(audio, out, codec, opts=OPTS, rank=0, world_size=2)
    assert again["shards_skipped"] == [0] and again["shards_done"] == [2]
    assert read_manifest(out)["num_samples"] == 5
    other = HFEncodecCodec(tiny_hf_model(codebook_size=32), "other")
    with pytest.raises(UserError, match="another codec"):
        tokenize_dataset(audio, out, other, opts=OPTS)


def test_jsonl_and_csv_manifests(tmp_path):
    audio = make_audio_folder(tmp_path / "audio")
    rows = [{"path": "audio/sweep.0.wav", "caption": "first", "genre": "rock", "moods": ["happy"]},
            {"path": str(audio / "sub" / "noise.flac"), "description": "second", "bpm": 120}]
    (tmp_path / "list.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    items = scan_inputs(tmp_path / "list.jsonl")
    assert [(i.caption, i.metadata) for i in items] == [("first", {"genre": "rock", "moods": ["happy"]}),
                                                         ("second", {"bpm": 120})]
    assert Path(items[0].path).is_file() and "." not in items[0].key
    (tmp_path / "list.csv").write_text("path,caption,genre\naudio/sweep.1.wav,third,jazz\n")
    (item,) = scan_inputs(tmp_path / "list.csv")
    assert (item.caption, item.metadata, item.key) == ("third", {"genre": "jazz"}, "audio__sweep_1")
    summary = tokenize_dataset(tmp_path / "list.jsonl", tmp_path / "tok", HFEncodecCodec(tiny_hf_model(), "t"),
                               opts=OPTS)
    assert summary["written"] == 2


def test_keys_are_dot_free_and_unique(tmp_path):
    assert make_key("a/b.c/song.v2.wav") == "a__b_c__song_v2"
    root = tmp_path / "a"
    root.mkdir()
    for name in ("x.wav", "x.flac"):
        sf.write(root / name, np.zeros(100, np.float32), 8000)
    assert sorted(i.key for i in scan_inputs(root)) == ["x", "x_1"]


def test_script_runs_with_local_codec_dir(tmp_path):
    tiny_hf_model().save_pretrained(tmp_path / "codec")
    audio = make_audio_folder(tmp_path / "audio")
    from magnet_lightning.cli import tokenize as script

    summary = script.main(["--input", str(audio), "--output", str(tmp_path / "tok"), "--codec", str(tmp_path / "codec"),
                           "--samples-per-shard", "4", "--num-workers", "1", "--no-progress", "--rank", "0",
                           "--world-size", "1"])
    assert summary["written"] == 5 and summary["skipped"]["unreadable"] == 1
    assert read_manifest(tmp_path / "tok")["codec"] == "hf-encodec:codec"


def test_batches_respect_max_batch_seconds(tmp_path, monkeypatch):
    import magnet_lightning.data.tokenize as tok

    codec = HFEncodecCodec(tiny_hf_model(), "tiny")
    seen = []
    original = tok._encode_batch

    def spy(codec, wavs):
        seen.append((len(wavs), max(w.shape[-1] for w in wavs) / codec.sample_rate))
        return original(codec, wavs)

    monkeypatch.setattr(tok, "_encode_batch", spy)
    audio = make_audio_folder(tmp_path / "audio")
    opts = TokenizeOptions(samples_per_shard=8, batch_size=8, max_batch_seconds=5.0, num_workers=0, progress=False)
    assert tokenize_dataset(audio, tmp_path / "tok", codec, opts=opts)["written"] == 5
    assert sum(n for n, _ in seen) == 5 and len(seen) > 1
    assert all(n == 1 or n * longest <= 5.0 for n, longest in seen)
