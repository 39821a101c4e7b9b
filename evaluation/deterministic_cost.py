#!/usr/bin/env python
"""What ``--trainer.deterministic true`` costs per training step: the demo's model (demo_music.yaml sizes, random
text states) trained on one device with ``torch.use_deterministic_algorithms`` off and on, in alternating rounds
(so a change of load hits both), one intra-op thread by default. Prints the median step time of each and their ratio.

    python evaluation/deterministic_cost.py                     # CPU
    python evaluation/deterministic_cost.py --device cuda       # a GPU (CUBLAS_WORKSPACE_CONFIG set first)
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a fresh clone

import torch

from magnet_lightning.config import MaskingConfig, ModelConfig
from magnet_lightning.models.registry import build_model
from magnet_lightning.training.families import TRAINING_FAMILIES, BatchInputs


def step_times(model, optimizer, codes, states, mask, steps: int, device: str) -> list[float]:
    times = []
    for i in range(steps):
        began = time.perf_counter()
        gen = torch.Generator().manual_seed(i)
        inputs = BatchInputs(codes, None, states, mask, MaskingConfig(span_len=3), gen, gen, i % codes.shape[1])
        loss = TRAINING_FAMILIES["magnet"].objective(model, inputs).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - began)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=8)
    args = parser.parse_args()
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = ModelConfig(dim=256, num_heads=4, num_layers=4, ffn_dim=1024, num_codebooks=4, codebook_size=2048,
                      text_dim=768, subcodes_context=5)
    model = build_model("magnet", cfg).to(args.device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    codes = torch.randint(0, 2048, (8, 4, 150), device=args.device)  # batch 8 x 3 s, as the demo
    states, mask = torch.randn(8, 20, 768, device=args.device), torch.ones(8, 20, dtype=torch.bool, device=args.device)
    step_times(model, optimizer, codes, states, mask, 2, args.device)  # warm-up
    times = {False: [], True: []}
    for _ in range(args.rounds):
        for deterministic in (False, True):
            torch.use_deterministic_algorithms(deterministic)
            times[deterministic] += step_times(model, optimizer, codes, states, mask, args.steps, args.device)
    torch.use_deterministic_algorithms(False)
    off, on = statistics.median(times[False]), statistics.median(times[True])
    print(f"{args.device}, {args.threads} thread(s), load average {os.getloadavg()[0]:.1f}: median step "
          f"{off * 1000:.0f} ms (deterministic off) vs {on * 1000:.0f} ms (on): x{on / off:.3f}")


if __name__ == "__main__":
    main()
