"""Fast, one-process checks of the sharded-training parts: activation checkpointing gives the same loss and gradients
for every family, the strategy names resolve, the shard-wise EMA follows torch's AveragedModel, and a sharded
checkpoint write killed midway leaves the previous checkpoint usable."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import lightning as L
import pytest
import torch
from support.helpers import FixedBatches, tiny_module
from support.paths import ROOT
from torch.optim.swa_utils import AveragedModel

from magnet_lightning.training.ema import ShardAverage, bias_corrected_ema
from magnet_lightning.training.sharded_checkpoint import consolidate, is_sharded, restore_interrupted, save_sharded
from magnet_lightning.training.strategies import LEGACY_NAMES, STRATEGY_NAME, MagnetFSDPStrategy


def _loss_and_grads(family: str, checkpointing: bool) -> tuple[torch.Tensor, dict[str, torch.Tensor], int]:
    torch.manual_seed(0)
    module = tiny_module(family=family, activation_checkpointing=checkpointing)
    module.configure_model()  # no trainer: only the activation-checkpointing switch
    calls = []
    for layer in module.model.transformer.layers:
        layer.register_forward_pre_hook(lambda *_: calls.append(1))  # recomputation may stop before the end
    batch = FixedBatches(1)[0]
    states, mask = module.encode_text(batch["text"])
    gen = torch.Generator().manual_seed(1)
    loss, _ = module._family_loss(batch, states, mask, gen, torch.Generator().manual_seed(2), train=True)
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in module.model.named_parameters() if p.grad is not None}, \
        len(calls)


@pytest.mark.parametrize("family", ["magnet", "musicgen", "hybrid"])
def test_activation_checkpointing_gives_the_same_gradients(family):
    loss, grads, forwards = _loss_and_grads(family, False)
    loss_ac, grads_ac, forwards_ac = _loss_and_grads(family, True)
    torch.testing.assert_close(loss_ac, loss, rtol=0, atol=0)
    assert grads_ac.keys() == grads.keys() and grads
    for name, grad in grads.items():
        torch.testing.assert_close(grads_ac[name], grad, rtol=1e-6, atol=1e-7)
    assert forwards_ac == 2 * forwards  # each layer ran again in the backward pass


@pytest.mark.parametrize("name", [STRATEGY_NAME, *LEGACY_NAMES])
def test_strategy_names_resolve_to_fsdp2(name):
    trainer = L.Trainer(accelerator="cpu", devices=1, strategy=name, logger=False, enable_checkpointing=False)
    assert isinstance(trainer.strategy, MagnetFSDPStrategy)


def test_old_run_folders_class_path_still_imports():
    from magnet_lightning.cli import MagnetFSDPStrategy as Legacy

    assert Legacy is MagnetFSDPStrategy


def test_shard_average_follows_averaged_model():
    """The EMA kept as local shards applies AveragedModel's rule (here on unsharded tensors: one rank's view)."""
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    reference = AveragedModel(model, avg_fn=bias_corrected_ema(0.9), use_buffers=False)
    shards = ShardAverage(model, bias_corrected_ema(0.9))
    for _ in range(4):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        reference.update_parameters(model)
        shards.update(model)
    for average, expected in zip(shards.shards, reference.module.parameters()):
        torch.testing.assert_close(average, expected)
    live = [p.detach().clone() for p in model.parameters()]
    shards.swap(model)
    for p, expected in zip(model.parameters(), reference.module.parameters()):
        torch.testing.assert_close(p.detach(), expected)
    shards.swap(model)
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), live))


KILLED_WRITE = textwrap.dedent(
    """
    import os, signal, sys, torch
    sys.path.insert(0, {root!r})
    import magnet_lightning.training.sharded_checkpoint as sc

    def killed(*args, **kwargs):  # the shards are written, meta.pt not, nothing renamed yet
        os.kill(os.getpid(), signal.SIGKILL)

    sc.torch.save = killed
    sc.save_sharded({path!r}, {{"state_dict": {{"w": torch.full((4, 4), 2.0)}}}}, {{"global_step": 2}}, 0, lambda: None)
    """
)


def test_sigkill_during_a_sharded_save_keeps_the_previous_checkpoint(tmp_path):
    path = tmp_path / "last.ckpt"
    save_sharded(path, {"state_dict": {"w": torch.ones(4, 4)}}, {"global_step": 1}, 0, lambda: None)
    script = tmp_path / "killed.py"
    script.write_text(KILLED_WRITE.format(root=str(ROOT), path=str(path)))
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert (tmp_path / ".last.ckpt.tmp").is_dir()  # the interrupted write
    assert is_sharded(path)
    previous = consolidate(path)
    assert previous["global_step"] == 1 and torch.equal(previous["state_dict"]["w"], torch.ones(4, 4))
    save_sharded(path, {"state_dict": {"w": torch.zeros(4, 4)}}, {"global_step": 3}, 0, lambda: None)
    assert consolidate(path)["global_step"] == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["killed.py", "last.ckpt"]  # temporaries cleaned


def test_a_write_killed_between_its_renames_is_restored(tmp_path):
    """Between 'previous -> .old' and 'new -> target' the target is missing: `--ckpt_path last` renames it back."""
    path = tmp_path / "last.ckpt"
    save_sharded(path, {"state_dict": {"w": torch.ones(2)}}, {"global_step": 1}, 0, lambda: None)
    os.rename(path, tmp_path / ".last.ckpt.old")
    from magnet_lightning.cli.runs import newest_checkpoint, resume_candidates

    assert newest_checkpoint(resume_candidates(tmp_path / "root", [tmp_path])) == path
    assert consolidate(path)["global_step"] == 1
    assert restore_interrupted(tmp_path) == []  # nothing left to restore


def test_a_sharded_folder_given_to_generate_is_one_line_naming_the_conversion(tmp_path, capfd):
    from support.cli_runs import assert_one_line, in_process

    from magnet_lightning.cli.generate import main

    folder = tmp_path / "last.ckpt"
    folder.mkdir()
    (folder / ".metadata").write_bytes(b"")
    (folder / "meta.pt").write_bytes(b"")
    assert is_sharded(folder)
    err = in_process(main, ["--ckpt", str(folder), "--text", "x", "--out", str(tmp_path / "out")], capfd)
    assert_one_line(err, "sharded training checkpoint", "magnet-convert sharded")
    assert not (tmp_path / "out").exists()


def test_every_rank_computes_with_the_threads_of_rank_0(monkeypatch):
    """A rank that Lightning's launcher started (LOCAL_RANK set, no OMP_NUM_THREADS) sets its intra-op threads as the
    first process does (usable cpus / processes), under fsdp2 as under DDP. Before, a spawned fsdp2 rank kept every
    core's thread: a sharded run then differed in the last bits from its --reproduce replay (OMP_NUM_THREADS set)."""
    from lightning.fabric.utilities.distributed import _suggested_max_num_threads

    before = torch.get_num_threads()
    expected = _suggested_max_num_threads(2)
    for key, value in {"LOCAL_RANK": "1", "NODE_RANK": "0", "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1",
                       "MASTER_PORT": "29511"}.items():
        monkeypatch.setenv(key, value)
    try:
        for strategy in ("ddp", STRATEGY_NAME):
            monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
            torch.set_num_threads(expected + 1)  # what a process started without OMP_NUM_THREADS may have
            trainer = L.Trainer(accelerator="cpu", devices=2, strategy=strategy, logger=False,
                                enable_checkpointing=False, enable_progress_bar=False)
            assert trainer.strategy.launcher is not None, strategy
            threads = trainer.strategy.launcher.launch(torch.get_num_threads, trainer=trainer)
            assert (threads, os.environ.get("OMP_NUM_THREADS")) == (expected, str(expected)), strategy
    finally:
        torch.set_num_threads(before)
