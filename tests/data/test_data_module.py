"""TokenDataModule: batch format, padding, epoch length, seeding, bad samples, manifests, validation split."""

import json

import numpy as np
import pytest
import torch
from support.token_data import INFO, RATE, K, V, make_dm, npy, sample, write_dataset

from magnet_lightning.data.datamodule import TokenDataModule
from magnet_lightning.data.shards import ManifestMismatchError


def test_train_batches_format_and_padding(dataset):
    dm = make_dm(dataset)
    batches = list(dm.train_dataloader())
    assert len(batches) == 6
    saw_padding = False
    for b in batches:
        assert set(b) == {"codes", "padding_mask", "text", "meta"}
        assert b["codes"].shape == (4, K, 50) and b["codes"].dtype == torch.long
        assert b["padding_mask"].shape == (4, 50) and b["padding_mask"].dtype == torch.bool
        assert len(b["text"]) == len(b["meta"]) == 4
        assert int(b["codes"].min()) >= 0 and int(b["codes"].max()) < V
        for i, meta in enumerate(b["meta"]):
            valid = int(b["padding_mask"][i].sum())
            # real frames come first, then padding; a short track is padded, not cropped
            assert b["padding_mask"][i, :valid].all() and not b["padding_mask"][i, valid:].any()
            assert min(meta["num_frames"], 40) <= valid <= meta["num_frames"]
            saw_padding |= valid < 50
    assert saw_padding


def test_crop_keeps_real_tokens(tmp_path):
    ramp = np.tile(np.arange(200, dtype=np.int16) % V, (K, 1))
    ds = write_dataset(tmp_path / "r", [[("ramp", {"codes.npy": npy(ramp), "json": b'{"caption": "r"}'})]])
    dm = make_dm(ds, shuffle_buffer=1, batches_per_epoch=10)
    for b in dm.train_dataloader():
        for i in range(4):
            n = int(b["padding_mask"][i].sum())
            row = b["codes"][i, 0, :n]
            assert n >= 40  # min_segment_ratio 0.8 of 50 frames
            assert torch.equal(row, (row[0] + torch.arange(n)) % V)  # a contiguous slice of the track


def test_epoch_length_from_samples_and_world(dataset):
    dm = TokenDataModule(train_shards=str(dataset), batch_size=4, samples_per_epoch=100, num_workers=0)
    dm.setup("fit")
    assert len(dm.train_dataloader()) == 25
    assert dm._batches_per_epoch(world_size=8) == 4  # ceil(100 / 32)
    dm2 = TokenDataModule(train_shards=str(dataset), batch_size=3, num_workers=0)
    dm2.setup("fit")
    assert len(dm2.train_dataloader()) == 7  # one manifest pass: ceil(20 / 3)


def keys_of(dm, epochs=1):
    loader = dm.train_dataloader()
    return [m["key"] for _ in range(epochs) for b in loader for m in b["meta"]]


def test_stream_seeded_by_seed_rank_and_start_step(dataset):
    base = keys_of(make_dm(dataset))
    assert keys_of(make_dm(dataset)) == base  # same seed, step, rank: same stream
    assert keys_of(make_dm(dataset, seed=1)) != base
    resumed = make_dm(dataset)
    resumed.set_start_step(1000)
    assert keys_of(resumed) != base  # a resumed run does not replay the stream


def test_epochs_continue_the_stream(dataset):
    dm = make_dm(dataset, batches_per_epoch=3)
    loader = dm.train_dataloader()
    first = [m["key"] for b in loader for m in b["meta"]]
    second = [m["key"] for b in loader for m in b["meta"]]
    assert len(first) == len(second) == 12 and first != second


def test_workers_give_full_batches_and_differ(dataset):
    dm = make_dm(dataset, num_workers=2, batches_per_epoch=4)
    loader = dm.train_dataloader()
    batches = list(loader)
    loader.close()
    assert len(batches) == 4 and all(b["codes"].shape == (4, K, 50) for b in batches)
    # batches 0 and 1 come from different workers with different seeds
    assert [m["key"] for m in batches[0]["meta"]] != [m["key"] for m in batches[1]["meta"]]


def test_text_augmentation_train_only(dataset):
    dm = make_dm(dataset, val=dataset, merge_text_p=1.0, drop_desc_p=1.0, drop_other_p=0.0)
    train_texts = [t for b in dm.train_dataloader() for t in b["text"]]
    assert all("genre: rock" in t and "bpm: 100" in t and "caption" not in t for t in train_texts)
    val_texts = [t for b in dm.val_dataloader() for t in b["text"]]
    assert all(t.startswith("caption ") for t in val_texts)
    plain = make_dm(dataset, text_augment=False)
    assert all(t.startswith("caption ") for b in plain.train_dataloader() for t in b["text"])


def test_dataset_weights(tmp_path, dataset):
    other = write_dataset(tmp_path / "other", [[sample(f"o{j}", 60, seed=j) for j in range(4)]], name="other")
    only_other = make_dm([str(dataset), str(other)], train_weights=[0.0, 1.0])
    assert all(k.startswith("o") for k in keys_of(only_other))
    mixed = make_dm([str(dataset), str(other)], train_weights=[1.0, 1.0], batches_per_epoch=50)
    frac = np.mean([k.startswith("o") for k in keys_of(mixed)])
    assert 0.35 < frac < 0.65
    with pytest.raises(ValueError, match="train_weights"):
        TokenDataModule(train_shards=[str(dataset)], train_weights=[1.0, 2.0])


def test_bad_samples_are_skipped_and_counted(tmp_path, caplog):
    good = [sample(f"g{j}", 60, seed=j) for j in range(6)]
    bad = [
        ("nojson", {"codes.npy": npy(np.zeros((K, 60), np.int16))}),
        ("wrongdtype", {"codes.npy": npy(np.zeros((K, 60), np.float32)), "json": b"{}"}),
        ("wrongshape", {"codes.npy": npy(np.zeros((K + 1, 60), np.int16)), "json": b"{}"}),
        ("toolarge", {"codes.npy": npy(np.full((K, 60), V, np.int16)), "json": b"{}"}),
        ("badjson", {"codes.npy": npy(np.zeros((K, 60), np.int16)), "json": b"{not json"}),
    ]
    root = write_dataset(tmp_path / "mixed", [good[:3] + bad, good[3:]])
    (root / "ds-000002.tar").write_bytes(b"this is not a tar file" * 100)
    manifest = json.loads((root / "manifest.json").read_text())
    manifest["shards"].append({"url": "ds-000002.tar", "num_samples": 3})
    (root / "manifest.json").write_text(json.dumps(manifest))
    dm = make_dm(root, val=root, batches_per_epoch=20)
    keys = keys_of(dm)
    assert set(keys) <= {f"g{j}" for j in range(6)}
    counts = dm.skip_counts()
    for reason in ("missing_member", "bad_dtype", "bad_shape", "token_out_of_range", "bad_json", "corrupt_shard"):
        assert counts[f"data/skipped_train_{reason}"] > 0, reason
    val_keys = {m["key"] for b in dm.val_dataloader() for m in b["meta"]}
    assert val_keys == {f"g{j}" for j in range(6)}
    assert dm.skip_counts()["data/skipped_val_corrupt_shard"] == 1
    assert dm.skip_counts()["data/skipped_val_bad_dtype"] == 1
    assert "skipped bad sample" in caplog.text


def test_shards_with_no_valid_samples_raise(tmp_path):
    root = write_dataset(tmp_path / "bad", [[("x", {"codes.npy": npy(np.zeros((K, 9), np.float32)), "json": b"{}"})]])
    dm = make_dm(root, val=root)
    with pytest.raises(RuntimeError, match="no valid samples"):
        list(dm.train_dataloader())
    with pytest.raises(RuntimeError, match="no valid samples"):
        dm.val_dataloader()


def test_manifest_mismatch_raises(dataset):
    with pytest.raises(ManifestMismatchError, match="codebook_size"):
        make_dm(dataset, codebook_size=2048)
    with pytest.raises(ManifestMismatchError, match="frame_rate"):
        make_dm(dataset, frame_rate=75.0)
    dm = make_dm(dataset)
    dm.check_compatible(num_codebooks=K, codebook_size=V, frame_rate=RATE)
    with pytest.raises(ManifestMismatchError, match="num_codebooks"):
        dm.check_compatible(num_codebooks=8, codebook_size=V, frame_rate=RATE)


def test_datasets_must_agree(tmp_path, dataset):
    other = write_dataset(tmp_path / "o", [[sample("o", 60)]], info={**INFO, "frame_rate": 75.0})
    with pytest.raises(ManifestMismatchError, match="frame_rate"):
        make_dm([str(dataset), str(other)])


def test_validation_is_deterministic_and_split_evenly(tmp_path):
    root = write_dataset(tmp_path / "v", [[sample(f"v{i}_{j}", 30 + 11 * j, seed=j) for j in range(n)]
                                          for i, n in enumerate([4, 3])])  # 7 samples
    dm = make_dm(root, val=root, val_batch_size=2)
    once = [b["codes"] for b in dm.val_dataloader()]
    again = make_dm(root, val=root, val_batch_size=2)
    assert all(torch.equal(a, b) for a, b in zip(once, [b["codes"] for b in again.val_dataloader()]))
    per_rank = []
    for rank in range(3):
        split = make_dm(root, val=root, val_batch_size=2)
        split._rank_world = lambda rank=rank: (rank, 3)
        per_rank.append([m["key"] for b in split.val_dataloader() for m in b["meta"]])
    assert [len(keys) for keys in per_rank] == [3, 3, 3]  # 7 samples padded to 9
    assert set(sum(per_rank, [])) == {f"v{i}_{j}" for i, n in enumerate([4, 3]) for j in range(n)}
