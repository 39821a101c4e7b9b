"""Sharded training (FSDP2, `MagnetFSDPStrategy`) in two CPU processes (gloo), against DDP on the same seed: the same
losses step by step, each rank holding half of the parameters, the same EMA, exact resume from a sharded checkpoint
(also on another number of processes), and a consolidated file that generation reads. Each run is
tests/support/fsdp_worker.py, a tiny model of 30k parameters."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from support.paths import ROOT, TESTS

from magnet_lightning.training.sharded_checkpoint import consolidate, is_sharded

WORKER = TESTS / "support" / "fsdp_worker.py"
STEPS = 6


def run_worker(out: Path, **cfg) -> list[dict]:
    """Run one training (2 processes unless `devices`); the per-rank figures."""
    out.mkdir(parents=True, exist_ok=True)
    config = out / "config.json"
    config.write_text(json.dumps({"out": str(out), **cfg}))
    # One intra-op thread in every process of every run, whatever the number of processes: without it Lightning
    # gives a lone process cpu_count threads and each of two processes cpu_count / 2, and a matrix product split
    # over another number of threads may round differently (on some CPUs), so 1- and 2-process runs would not be
    # comparable bit for bit.
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "WANDB_MODE": "offline",
           "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(WORKER), str(config)], cwd=out, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return [json.loads((out / f"rank{r}.json").read_text()) for r in range(cfg.get("devices", 2))]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """DDP and FSDP2 of the same seed (EMA every 2 steps, checkpoints at steps 3 and 6), FSDP2 resumed from step 3
    on 2 processes and on 1. The same batch every step (a resumed epoch restarts its dataloader); masks and text
    dropout still change with the step."""
    root = tmp_path_factory.mktemp("fsdp")
    common = dict(steps=STEPS, ema=2, vary=False, save_every=3)
    result = {"root": root}
    result["ddp"] = run_worker(root / "ddp", strategy="ddp", ac=True, **common)
    result["fsdp"] = run_worker(root / "fsdp", strategy="fsdp2", **common)
    step3 = str(root / "fsdp" / "checkpoints" / "step=3.ckpt")
    result["resumed"] = run_worker(root / "resumed", strategy="fsdp2", resume=step3, ac=True, **common)
    result["one_rank"] = run_worker(root / "one_rank", strategy="fsdp2", resume=step3, devices=1,
                                    **{**common, "steps": 4})
    return result


@pytest.mark.slow
def test_fsdp2_and_ddp_give_the_same_losses(runs):
    for rank in (0, 1):
        ddp, fsdp = runs["ddp"][rank]["losses"], runs["fsdp"][rank]["losses"]
        assert len(ddp) == len(fsdp) == STEPS
        assert fsdp == pytest.approx(ddp, rel=1e-5)
        assert runs["fsdp"][rank]["val"] == pytest.approx(runs["ddp"][rank]["val"], rel=1e-5)
    assert runs["fsdp"][0]["losses"] != runs["fsdp"][1]["losses"]  # ranks draw their own masks


@pytest.mark.slow
def test_each_rank_holds_half_of_the_parameters(runs):
    total = runs["fsdp"][0]["total_params"]
    local = [r["local_params"] for r in runs["fsdp"]]
    assert sum(local) == total and all(0.45 * total <= n <= 0.55 * total for n in local)
    assert [r["local_params"] for r in runs["ddp"]] == [total, total]


@pytest.mark.slow
def test_sharded_checkpoint_holds_the_same_weights_and_ema_as_ddp(runs):
    """EMA under sharding: each rank averaged its own shards; consolidated, the average and the live weights are
    DDP's (whose EMA is a full copy)."""
    ckpt_dir = runs["root"] / "fsdp" / "checkpoints" / "last.ckpt"
    assert is_sharded(ckpt_dir) and len(list(ckpt_dir.glob("*.distcp"))) == 2
    sharded = consolidate(ckpt_dir)
    ddp = torch.load(runs["root"] / "ddp" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert sharded["global_step"] == ddp["global_step"] == STEPS
    for key in ("state_dict", "current_model_state"):
        assert sharded[key].keys() == ddp[key].keys()
        for name, value in ddp[key].items():
            torch.testing.assert_close(sharded[key][name], value, rtol=1e-5, atol=1e-6)
    moved = [n for n, v in sharded["state_dict"].items() if not torch.equal(v, sharded["current_model_state"][n])]
    assert moved  # the average is not the live weights
    assert sharded["averaging_state"]["n_averaged"] == ddp["averaging_state"]["n_averaged"] == STEPS // 2


@pytest.mark.slow
def test_resume_from_a_sharded_checkpoint_is_exact(runs):
    for rank in (0, 1):
        assert runs["resumed"][rank]["losses"] == runs["fsdp"][rank]["losses"][3:]
        assert runs["resumed"][rank]["val"] == runs["fsdp"][rank]["val"]  # validated on the restored EMA
    done = consolidate(runs["root"] / "fsdp" / "checkpoints" / "last.ckpt")
    again = consolidate(runs["root"] / "resumed" / "checkpoints" / "last.ckpt")
    for key in ("state_dict", "current_model_state"):
        for name, value in done[key].items():
            assert torch.equal(again[key][name], value), name


@pytest.mark.slow
def test_resume_on_another_number_of_processes(runs):
    """Written by 2 ranks, read by 1: the weights at the start equal the 2-rank run's, and the first step's loss
    (rank 0 draws the same masks) too. Equal by design, so compared exactly: the restored weights are the same bits
    (each full tensor gathered from the shards), rank 0's batch, stage and masks are the same, the forward pass
    never crosses processes, and every process computes with one thread (`run_worker`), so the same kernels run on
    the same numbers in the same order."""
    one = runs["one_rank"][0]
    assert one["threads"] == runs["fsdp"][0]["threads"] == 1
    assert one["start_digest"] == runs["resumed"][0]["start_digest"]  # the same bits, summed in the same order
    assert one["losses"] == runs["fsdp"][0]["losses"][3:4]
    assert one["local_params"] == one["total_params"]


@pytest.mark.slow
def test_convert_sharded_checkpoint_for_generation(runs, tmp_path, capsys):
    from magnet_lightning.checkpoint.pretrained import load_pretrained
    from magnet_lightning.cli.convert import main as convert

    src, out = runs["root"] / "fsdp" / "checkpoints" / "last.ckpt", tmp_path / "model.ckpt"
    convert(["sharded", str(src), str(out)])
    assert "step 6" in capsys.readouterr().out
    pretrained = load_pretrained(out)
    ddp = torch.load(runs["root"] / "ddp" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    for name, value in pretrained.model.state_dict().items():
        torch.testing.assert_close(value, ddp["state_dict"][f"model.{name}"], rtol=1e-5, atol=1e-6)  # the EMA
    with pytest.raises(SystemExit) as exit_info:
        convert(["sharded", str(tmp_path), str(tmp_path / "x.ckpt")])
    assert exit_info.value.code == 2 and "not a sharded checkpoint folder" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize("family", ["musicgen", "hybrid"])
def test_other_families_shard_like_ddp(tmp_path, family):
    """Every family under FSDP2 with activation checkpointing: DDP's losses."""
    fsdp = run_worker(tmp_path / "fsdp", strategy="fsdp2", family=family, steps=2, ac=True)
    ddp = run_worker(tmp_path / "ddp", strategy="ddp", family=family, steps=2)
    for rank in (0, 1):
        assert fsdp[rank]["losses"] == pytest.approx(ddp[rank]["losses"], rel=1e-5)
        assert fsdp[rank]["local_params"] < fsdp[rank]["total_params"]
