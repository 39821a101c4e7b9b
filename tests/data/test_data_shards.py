"""Shard manifests, shard specs, npy parsing and music text augmentation."""

import io
import random

import numpy as np
import pytest

from magnet_lightning.data.augment import TextAugmentConfig, augment_music_text
from magnet_lightning.data.pipeline import load_npy
from magnet_lightning.data.shards import (
    ManifestMismatchError,
    TarShardWriter,
    check_compatible,
    read_manifest,
    resolve_shards,
    write_manifest,
)

INFO = {"name": "tiny", "sample_rate": 16000, "frame_rate": 50.0, "num_codebooks": 4, "codebook_size": 2048,
        "channels": 1}


def make_folder(root, counts, name="ds"):
    root.mkdir(parents=True, exist_ok=True)
    shards = []
    for i, n in enumerate(counts):
        with TarShardWriter(root / f"{name}-{i:06d}.tar") as w:
            for j in range(n):
                w.write(f"k{i}_{j}", {"codes.npy": b"x", "json": b"{}"})
        shards.append({"url": f"{name}-{i:06d}.tar", "num_samples": n})
    write_manifest(root, INFO, shards)
    return root


def test_manifest_round_trip(tmp_path):
    make_folder(tmp_path, [3, 2])
    m = read_manifest(tmp_path)
    assert m["format"] == "magnet_lightning.shards" and m["num_samples"] == 5
    assert m["num_codebooks"] == 4 and m["codebook_size"] == 2048 and m["frame_rate"] == 50.0
    assert [s["num_samples"] for s in m["shards"]] == [3, 2]
    with pytest.raises(FileNotFoundError, match="tokenize_audio"):
        read_manifest(tmp_path / "nowhere")


@pytest.mark.parametrize("field,kw", [("num_codebooks", {"num_codebooks": 8}),
                                      ("codebook_size", {"codebook_size": 1024}),
                                      ("frame_rate", {"frame_rate": 75.0})])
def test_check_compatible_rejects_each_mismatch(field, kw):
    manifest = {**INFO, "codec": "tiny"}
    check_compatible(manifest, num_codebooks=4, codebook_size=2048, frame_rate=50.0)
    with pytest.raises(ManifestMismatchError, match=field):
        check_compatible(manifest, **kw)


def test_resolve_shard_specs(tmp_path):
    make_folder(tmp_path / "a", [3, 2, 4])
    by_dir = resolve_shards(str(tmp_path / "a"))
    assert len(by_dir.urls) == 3 and by_dir.total_samples == 9
    by_manifest = resolve_shards(str(tmp_path / "a" / "manifest.json"))
    assert by_manifest.urls == by_dir.urls
    brace = resolve_shards(str(tmp_path / "a" / "ds-{000001..000002}.tar"))
    assert [u[-10:] for u in brace.urls] == ["000001.tar", "000002.tar"] and brace.num_samples == [2, 4]
    globbed = resolve_shards(str(tmp_path / "a" / "*.tar"))
    assert globbed.total_samples == 9 and globbed.manifest is not None
    s3 = resolve_shards("s3://bucket/ds-{000000..000001}.tar")
    assert s3.urls == ["pipe:aws s3 cp s3://bucket/ds-000000.tar -", "pipe:aws s3 cp s3://bucket/ds-000001.tar -"]
    assert s3.total_samples is None and s3.manifest is None
    assert resolve_shards("pipe:cat /x/a.tar").urls == ["pipe:cat /x/a.tar"]
    with pytest.raises(FileNotFoundError, match="matches no files"):
        resolve_shards(str(tmp_path / "missing-*.tar"))


def test_writer_rejects_dotted_keys(tmp_path):
    with TarShardWriter(tmp_path / "x.tar") as w, pytest.raises(ValueError, match="no '.'"):
        w.write("song.v2", {"json": b"{}"})


def test_load_npy_matches_numpy_and_rejects_truncation():
    arr = np.random.randint(0, 2048, (4, 37)).astype(np.int16)
    buf = io.BytesIO()
    np.save(buf, arr)
    data = buf.getvalue()
    out = load_npy(data)
    assert out.dtype == np.int16 and np.array_equal(out, arr)
    with pytest.raises(ValueError, match="truncated"):
        load_npy(data[:-10])


META = {"genre": "jazz", "bpm": 96.0, "key": "C minor", "moods": ["calm", "warm"], "instrument": "piano"}


def test_augment_off_and_full():
    rng = random.Random(0)
    assert augment_music_text("a song", META, rng, TextAugmentConfig(merge_text_p=0.0)) == "a song"
    only_meta = augment_music_text("a song", META, rng, TextAugmentConfig(1.0, 1.0, 0.0))
    assert "a song" not in only_meta
    for phrase in ("genre: jazz", "bpm: 96", "key: C minor", "moods: calm, warm", "instrument: piano"):
        assert phrase in only_meta
    kept = augment_music_text("a song.", META, rng, TextAugmentConfig(1.0, 0.0, 0.0))
    assert kept.startswith("a song. ") and "genre: jazz" in kept
    assert augment_music_text("a song", {}, rng, TextAugmentConfig(1.0, 1.0, 0.0)) == "a song"


def test_augment_rates_follow_probabilities():
    rng = random.Random(0)
    cfg = TextAugmentConfig()  # 0.25 / 0.5 / 0.5
    outs = [augment_music_text("desc", META, rng, cfg) for _ in range(4000)]
    changed = sum(o != "desc" for o in outs) / len(outs)
    # changed unless merge is skipped or every field was dropped (prob 0.5**5)
    assert abs(changed - 0.25 * (1 - 0.5**5)) < 0.03
    merged = [o for o in outs if o != "desc"]
    dropped_desc = sum(not o.startswith("desc") for o in merged) / len(merged)
    assert abs(dropped_desc - 0.5) < 0.06
    genre_kept = sum("genre: jazz" in o for o in merged) / len(merged)
    assert abs(genre_kept - 0.5 / (1 - 0.5**5)) < 0.06
    with pytest.raises(ValueError):
        TextAugmentConfig(merge_text_p=1.5)
