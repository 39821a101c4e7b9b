"""Two-process CPU DDP (gloo) training of a tiny model of each family: no hang, no unused-parameter error (MAGNeT
computes only one stage's head each step, and DDP runs with find_unused_parameters=False), and both ranks end with
identical weights and the same synced validation loss."""

import json
import os
import subprocess
import sys
import textwrap

import pytest
from support.paths import ROOT, TESTS

SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    import lightning as L
    import torch
    sys.path[:0] = [{root!r}, {tests!r}]
    from support.helpers import FixedBatches, loader, tiny_module

    if __name__ == "__main__":
        module = tiny_module(family={family!r}, masking={{"per_sample_stage": {per_sample}}}, ema_every_n_steps=2)
        trainer = L.Trainer(accelerator="cpu", devices=2, strategy="ddp", max_steps=4, logger=False,
                            enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                            limit_val_batches=2, val_check_interval=4)
        trainer.fit(module, loader(FixedBatches(8, vary=True)), loader(FixedBatches(4, vary=True)))
        digest = float(sum(p.double().sum() for p in module.model.parameters()))
        out = {{"rank": trainer.global_rank, "steps": trainer.global_step, "digest": digest,
               "val": float(trainer.callback_metrics["val/loss"])}}
        with open(os.path.join({out!r}, f"rank{{trainer.global_rank}}.json"), "w") as f:
            json.dump(out, f)
    """
)


@pytest.mark.parametrize("family,per_sample", [("magnet", False), ("magnet", True), ("musicgen", False),
                                               ("hybrid", True)])
def test_two_process_ddp_training(tmp_path, family, per_sample):
    script = tmp_path / "train_ddp.py"
    source = SCRIPT.format(root=str(ROOT), tests=str(TESTS), family=family, per_sample=per_sample,
                           out=str(tmp_path))
    script.write_text(source)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "WANDB_MODE": "offline"}
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["steps"] for r in results] == [4, 4]
    assert results[0]["digest"] == pytest.approx(results[1]["digest"], rel=1e-9)
    assert results[0]["val"] == pytest.approx(results[1]["val"], rel=1e-6)  # synced across ranks
