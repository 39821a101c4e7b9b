"""Every source of run-to-run drift found in training (issue #27), one test each: the test disturbs what the source
would read (a global generator, worker timing) and requires the same numbers. Each fails when its source is put
back (checked by breaking it once): weights initialised from the global generator, LoRA adapters and their dropout
drawn from it, the demo corpus or its fitted codebooks depending on it (e.g. an unseeded `random.shuffle` of the
tracks), batches depending on which loader worker answers first, a `seeded` block leaking its state."""

from __future__ import annotations

import random
import tarfile
import time

import lightning as L
import numpy as np
import pytest
import torch
from support.helpers import FixedBatches, loader, tiny_module
from support.tiny_codecs import TINY_CODEC
from support.token_data import make_dm

from magnet_lightning.data import pipeline
from magnet_lightning.demo import corpus as corpus_mod
from magnet_lightning.utils.seeding import derive_seed, seeded


def _scramble_global_generators(seed: int) -> None:
    """Put every global generator a source could read into a state that differs with `seed`."""
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed)
    torch.rand(seed % 7 + 1)


def test_seeded_block_starts_from_its_seed_and_restores_the_global_state():
    _scramble_global_generators(1)
    before = torch.get_rng_state()
    with seeded(5):
        a = torch.rand(3)
    _scramble_global_generators(2)
    with seeded(5):
        b = torch.rand(3)
    assert torch.equal(a, b)
    _scramble_global_generators(1)
    with seeded(5):
        torch.rand(100)
    assert torch.equal(torch.get_rng_state(), before)  # what runs after the block sees what it would have seen
    assert derive_seed(1, "init") == derive_seed(1, "init") != derive_seed(1, "mask")


def test_model_weights_depend_on_the_seed_only():
    """Source: the weights drawn from the global generator after whatever ran before (building the demo corpus
    draws from it: a codec's from_pretrained, each DataLoader iterator's base seed)."""
    states = []
    for junk in (1, 2):
        _scramble_global_generators(junk)
        states.append(tiny_module(seed=7).state_dict())
    for name, value in states[0].items():
        assert torch.equal(value, states[1][name]), name
    other = tiny_module(seed=8).state_dict()
    assert any(not torch.equal(v, other[k]) for k, v in states[0].items())


def _lora_module(tmp_path, dropout: float):
    base = tmp_path / "base.ckpt"
    if not base.is_file():
        module = tiny_module()
        torch.save({"hyper_parameters": dict(module.hparams), "state_dict": module.state_dict()}, base)
    return tiny_module(init_from=str(base), lora={"rank": 2, "alpha": 4.0, "dropout": dropout})


class _DrawsFromTheGlobalGenerator(L.Callback):
    """Consumes `n` numbers of the global generator before each step (as a logger or a callback might)."""

    def __init__(self, n: int):
        self.n, self.losses = n, []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        torch.rand(self.n)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.losses.append(float(outputs["loss"]))


@pytest.mark.usefixtures("one_thread")
def test_lora_adapters_and_their_dropout_depend_on_the_seed_and_step_only(tmp_path):
    """Sources: the adapters' initial A drawn from the global generator; their dropout masks drawn from it at each
    step (callbacks and loggers draw from it between steps)."""
    runs = []
    for n in (1, 5):
        _scramble_global_generators(n)
        module = _lora_module(tmp_path, dropout=0.5)
        adapters = {k: v.clone() for k, v in module.state_dict().items() if "lora_" in k}
        probe = _DrawsFromTheGlobalGenerator(n)
        L.Trainer(default_root_dir=tmp_path, max_steps=4, accelerator="cpu", devices=1, logger=False,
                  enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                  callbacks=[probe]).fit(module, loader(FixedBatches(4, vary=True)))
        runs.append((adapters, probe.losses))
    assert runs[0][0].keys() == runs[1][0].keys() and runs[0][0]
    assert all(torch.equal(v, runs[1][0][k]) for k, v in runs[0][0].items())
    assert runs[0][1] == runs[1][1]


def _members(folder, root) -> dict[str, bytes]:
    """{shard/member: bytes} of every tar under `folder`, the corpus `root` in paths written as ROOT (tar headers
    left out: they hold the write time)."""
    out = {}
    for path in sorted(folder.glob("*.tar")):
        with tarfile.open(path) as tar:
            for info in tar.getmembers():
                out[f"{path.name}/{info.name}"] = tar.extractfile(info).read().replace(str(root).encode(), b"ROOT")
    return out


@pytest.mark.usefixtures("one_thread")
def test_demo_corpus_and_its_fitted_codec_are_functions_of_their_settings(tmp_path, monkeypatch):
    """Sources: corpus building (track order, captions, tokenization) and the random codec's weights and k-means
    codebooks reading a global generator, Python's or numpy's (e.g. an unseeded shuffle of the tracks)."""
    monkeypatch.setitem(corpus_mod.RANDOM_CODEC_ARCHS, "nowhere/tiny-codec", TINY_CODEC)
    built = []
    for junk in (1, 2):
        _scramble_global_generators(junk)
        cfg = corpus_mod.DemoConfig(root=str(tmp_path / f"demo{junk}"), num_train=4, num_val=1, track_seconds=1.0,
                                    codec="nowhere/tiny-codec", fit_tracks=3)
        corpus = corpus_mod.prepare_demo_corpus(cfg)
        from magnet_lightning.codec.codecs import load_codec

        weights = {k: v.clone() for k, v in load_codec(corpus.codec).model.state_dict().items()}
        root = tmp_path / f"demo{junk}"
        built.append((corpus.val_captions, _members(root / "shards" / "train", root),
                       _members(root / "shards" / "val", root), weights))
    (captions_a, train_a, val_a, codec_a), (captions_b, train_b, val_b, codec_b) = built
    assert captions_a == captions_b and train_a == train_b and val_a == val_b and len(train_a) == 8
    assert all(torch.equal(v, codec_b[k]) for k, v in codec_a.items())


def _batch_keys(dm, n: int) -> list[list[str]]:
    loader_ = dm.train_dataloader()
    keys = [[m["key"] for m in batch["meta"]] for batch, _ in zip(loader_, range(n))]
    loader_.close()
    return keys


def test_zero_and_one_loader_worker_give_the_same_batches(dataset):
    """Source: the stream of the main process and of a single worker seeded differently."""
    assert _batch_keys(make_dm(dataset, num_workers=1), 5) == _batch_keys(make_dm(dataset, num_workers=0), 5)


def test_batch_order_does_not_follow_worker_timing(dataset, monkeypatch):
    """Source: batches taken from whichever loader worker is ready first. Each of two workers is slowed in turn;
    the batches come in the same order (worker w gives batches w, w + 2, ...)."""
    real = pipeline.iter_shard
    orders = []
    for slow in (0, 1):
        def delayed(*args, slow=slow, **kwargs):
            info = torch.utils.data.get_worker_info()
            if info is not None and info.id == slow:
                time.sleep(0.05)
            yield from real(*args, **kwargs)

        monkeypatch.setattr(pipeline, "iter_shard", delayed)  # forked workers inherit it
        orders.append(_batch_keys(make_dm(dataset, num_workers=2, batches_per_epoch=6), 6))
    assert orders[0] == orders[1]


def test_metrics_trail_keeps_floats_exactly(tmp_path):
    from magnet_lightning.callbacks.metrics_trail import MetricsTrail, read_trail

    trail = MetricsTrail(tmp_path)
    value = torch.tensor(7.4905)
    trail.log_metrics({"train/loss": value, "x": float("nan")}, step=3)
    trail.log_metrics({"train/loss": 1.0}, step=3)  # logged again at that step (a resume): the newest value
    assert read_trail(tmp_path / "metrics.jsonl") == {3: {"train/loss": 1.0, "x": "nan"}}
    assert json_float(float(value)) == float(value)


def json_float(x: float) -> float:
    import json

    return json.loads(json.dumps(x))
