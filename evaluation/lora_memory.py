"""Peak memory of one MAGNeT training step, LoRA vs full fine-tuning, at the released sizes (CPU, float32).

    python evaluation/lora_memory.py                      # small LoRA / full, medium LoRA (+ checkpointing), estimate
    python evaluation/lora_memory.py --cases medium:lora  # one case

Each case runs in a fresh subprocess (its peak RSS is its own): build the transformer of `config.MODEL_PRESETS`
(random weights: memory does not depend on them), attach LoRA (rank 16, every projection) or not, recompute each
layer's activations in the backward pass or not (`lora_ckpt`: model.activation_checkpointing), AdamW over the
trainable parameters, then one step at batch 1 x 10 s (500 frames, K = 4 codebooks, 20 text tokens of t5-base
width): forward at stage 0 (full attention), cross-entropy on that stage's head, backward, optimizer step. The T5
text encoder is not counted (LoRA training runs it without gradients: about 0.9 GB for t5-base in float32).

Full fine-tuning of medium is not run on a 24 GB machine: its estimate is 16 bytes per parameter (weights, gradients,
AdamW's two moments, float32) plus the activations measured for medium with LoRA.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

from magnet_lightning.config import model_preset
from magnet_lightning.lora import LoraConfig, apply_lora
from magnet_lightning.models.registry import build_model

CASES = ("small:lora", "small:full", "medium:lora", "medium:lora_ckpt")
FRAMES, TEXT_TOKENS, RANK = 500, 20, 16


def run_case(size: str, mode: str) -> dict:
    """One training step in this process; returns its figures (peak RSS in GB)."""


    torch.manual_seed(0)
    cfg = model_preset(size)
    model = build_model("magnet", cfg)
    if mode.startswith("lora"):
        apply_lora(model, LoraConfig(rank=RANK, alpha=2.0 * RANK, dropout=0.0))
    model.transformer.activation_checkpointing = mode.endswith("_ckpt")  # model.activation_checkpointing
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-4)
    codes = torch.randint(0, cfg.codebook_size, (1, cfg.num_codebooks, FRAMES))
    states, mask = torch.randn(1, TEXT_TOKENS, cfg.text_dim), torch.ones(1, TEXT_TOKENS, dtype=torch.bool)
    after_build = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    start = time.perf_counter()
    logits = model(codes, states, mask, 0, heads="stage")  # [1, T, V]
    loss = F.cross_entropy(logits.flatten(0, 1), codes[:, 0].flatten())
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return {"case": f"{size}:{mode}", "params_M": round(sum(p.numel() for p in model.parameters()) / 1e6, 1),
            "trainable_M": round(sum(p.numel() for p in trainable) / 1e6, 2),
            "rss_after_build_GB": round(after_build, 2),
            "peak_rss_GB": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 2),
            "step_s": round(time.perf_counter() - start, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", nargs="+", default=list(CASES),
                        help="size:mode, mode lora, full or lora_ckpt (LoRA with activation checkpointing)")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # a single case, in this process (the child)
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(run_case(*args.one.split(":"))))
        return 0
    results = []
    for case in args.cases:
        proc = subprocess.run([sys.executable, __file__, "--one", case], capture_output=True, text=True)
        if proc.returncode:
            print(f"{case}: failed ({proc.returncode}): {proc.stderr.strip().splitlines()[-1:]}", flush=True)
            continue
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        print(json.dumps(results[-1]), flush=True)
    medium = next((r for r in results if r["case"] == "medium:lora"), None)
    if medium is not None:

        params = model_preset("medium").num_parameters()
        activations = medium["peak_rss_GB"] - medium["rss_after_build_GB"]
        print(json.dumps({"case": "medium:full (estimate, not run)", "params_M": round(params / 1e6, 1),
                          "peak_rss_GB": round(16 * params / 1e9 + activations, 1),
                          "how": "16 B/param (fp32 weights, grads, AdamW m and v) + medium:lora's step activations"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
