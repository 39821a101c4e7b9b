"""Two-process CPU DDP (gloo) LoRA training of each registered family: the frozen base needs no gradient sync and
no unused-parameter search, both ranks end with identical adapters, and the base is unchanged on both."""

import json
import os
import subprocess
import sys
import textwrap

import pytest
from support.paths import ROOT, TESTS

from magnet_lightning.models.registry import MODEL_FAMILIES

FAMILY_NAMES = list(MODEL_FAMILIES)


SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    import lightning as L
    import torch
    sys.path[:0] = [{root!r}, {tests!r}]
    from support.helpers import FixedBatches, loader, tiny_module

    if __name__ == "__main__":
        base = os.path.join({out!r}, "base.ckpt")
        if not os.path.exists(base):  # written once, before the launcher starts rank 1
            torch.save({{"hyper_parameters": dict(tiny_module(family={family!r}).hparams),
                        "state_dict": tiny_module(family={family!r}).state_dict()}}, base)
        module = tiny_module(family={family!r}, init_from=base, ema_every_n_steps=2,
                             lora={{"rank": 4, "alpha": 8.0, "dropout": 0.1}})
        frozen = {{k: v.clone() for k, v in module.model.state_dict().items() if ".lora_" not in k}}
        trainer = L.Trainer(accelerator="cpu", devices=2, strategy="ddp", max_steps=4, logger=False,
                            enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                            limit_val_batches=0)
        trainer.fit(module, loader(FixedBatches(8, vary=True)))
        state = module.model.state_dict()
        adapters = float(sum(v.double().sum() for k, v in state.items() if ".lora_" in k))
        out = {{"rank": trainer.global_rank, "steps": trainer.global_step, "adapters": adapters,
               "base_unchanged": all(torch.equal(state[k], v) for k, v in frozen.items())}}
        with open(os.path.join({out!r}, f"rank{{trainer.global_rank}}.json"), "w") as f:
            json.dump(out, f)
    """
)


@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_two_process_ddp_lora_training(tmp_path, family):
    script = tmp_path / "train_ddp.py"
    script.write_text(SCRIPT.format(root=str(ROOT), tests=str(TESTS), family=family, out=str(tmp_path)))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "WANDB_MODE": "offline"}
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["steps"] for r in results] == [4, 4]
    assert all(r["base_unchanged"] for r in results)
    assert results[0]["adapters"] == pytest.approx(results[1]["adapters"], rel=1e-12)
    assert results[0]["adapters"] != 0.0
