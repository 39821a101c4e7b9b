"""Generation latency and training throughput of MAGNeT with random weights.

    python evaluation/benchmark.py --json OUT.json           # the paper's small model, 10 s (500 frames)
    python evaluation/benchmark.py --tiny --json OUT.json    # a tiny model and 3 s: a CPU smoke run (< 1 min)

Generation: end to end from text states [B, S, E] to tokens [B, K, T] (text K/V preparation, every decoding step
with CFG, sampling), steps [20, 10, 10, 10], median of >= 3 runs after a warm-up run (which also captures the CUDA
graphs of the fast path). Training: forward + backward + optimizer step on B=16, masked cross-entropy on one random
stage (the objective of magnet_lightning.objective), AdamW (fused on CUDA), bf16 autocast on CUDA.
Targets on one H100 (docs: shared performance notes): b1 <= 0.12 s, b16 <= 1.1 s, training >= 120k frames/s.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from a checkout

from magnet_lightning.config import model_preset
from magnet_lightning.decoding import decode, decoding_preset
from magnet_lightning.fast_decoding import FastDecoder
from magnet_lightning.masking import draw_stages, sample_training_masks
from magnet_lightning.models.magnet import MagnetTransformer
from magnet_lightning.objective import masked_cross_entropy, stage_targets

SETUPS = {
    # model preset overrides, text tokens S, frames T
    "small": {"model": {"codebook_size": 2048, "num_codebooks": 4, "text_dim": 768}, "text_len": 20, "frames": 500},
    "tiny": {"model": {"codebook_size": 256, "num_codebooks": 4, "text_dim": 32}, "text_len": 20, "frames": 150},
}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _median_time(fn, device: torch.device, runs: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_generation(model, batch: int, frames: int, text_len: int, device, runs: int, fast: FastDecoder | None,
                     seed: int = 0) -> float:
    """Median seconds of one generation of `batch` items (CFG on, default music decoding)."""
    config = decoding_preset("music", 10.0, model.cfg.num_codebooks)
    g = torch.Generator(device).manual_seed(seed)
    states = torch.randn(batch, text_len, model.cfg.text_dim, generator=g, device=device)
    mask = torch.ones(batch, text_len, dtype=torch.bool, device=device)

    def run():
        if fast is not None:
            return fast.decode(states, mask, frames, config, generator=g)
        return decode(model, states, mask, frames, config, generator=g)

    return _median_time(run, device, runs)


def bench_training(model, batch: int, frames: int, text_len: int, device, steps: int) -> float:
    """Frames per second of forward + backward + AdamW step on random codes."""
    cuda = device.type == "cuda"
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=cuda)
    g = torch.Generator(device).manual_seed(0)
    cfg = model.cfg
    codes = torch.randint(0, cfg.codebook_size, (batch, cfg.num_codebooks, frames), generator=g, device=device)
    states = torch.randn(batch, text_len, cfg.text_dim, generator=g, device=device)
    mask = torch.ones(batch, text_len, dtype=torch.bool, device=device)
    cpu_gen = torch.Generator().manual_seed(0)

    def step():
        stages = draw_stages(batch, cfg.num_codebooks, per_sample=False, generator=cpu_gen)
        masked = sample_training_masks(codes, stages, model.mask_token_id, span_len=3, generator=cpu_gen)
        stage = int(stages[0])
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
            logits = model(masked.inputs, states, mask, stage, heads="stage")
            loss = masked_cross_entropy(logits, stage_targets(codes, stage), masked.loss_mask)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    seconds = _median_time(step, device, steps, warmup=2)
    model.eval()
    return batch * frames / seconds


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--json", required=True, help="where to write the results")
    p.add_argument("--tiny", action="store_true", help="tiny model, 150 frames (CPU smoke run)")
    p.add_argument("--device", default=None, help="default: cuda if available")
    p.add_argument("--runs", type=int, default=3, help="timed generation runs per batch size (median)")
    p.add_argument("--train-steps", type=int, default=None, help="timed training steps (median); default 10/3")
    p.add_argument("--batches", type=int, nargs="+", default=[1, 4, 16])
    p.add_argument("--frames", type=int, default=None, help="override T (default 500, or 150 with --tiny)")
    p.add_argument("--plain", action="store_true", help="plain decoding loop instead of the fast path")
    p.add_argument("--no-graphs", action="store_true", help="fast path without CUDA graphs")
    p.add_argument("--compile", action="store_true", help="torch.compile the per-step forward (fast path)")
    p.add_argument("--skip-train", action="store_true")
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads (torch.set_num_threads); default: 1 with --tiny on CPU (a smoke run that must not "
                        "fight other jobs for a few shared cores), else torch's default")
    args = p.parse_args(argv)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    threads = args.threads or (1 if args.tiny and device.type == "cpu" else None)
    if threads:
        torch.set_num_threads(threads)

    setup = SETUPS["tiny" if args.tiny else "small"]
    torch.manual_seed(0)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
    cfg = model_preset("tiny" if args.tiny else "small", **setup["model"])
    model = MagnetTransformer(cfg).to(device).eval()
    frames, text_len = args.frames or setup["frames"], setup["text_len"]
    fast = None
    if not args.plain:
        fast = FastDecoder(model, cuda_graphs=False if args.no_graphs else None, compile=args.compile)
    result = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({platform.machine()})",
        "dtype": "bfloat16" if device.type == "cuda" else "float32",
        "setup": "tiny" if args.tiny else "small", "parameters": sum(p.numel() for p in model.parameters()),
        "frames": frames, "text_len": text_len, "decoding_steps": [20, 10, 10, 10], "cfg": True,
        "path": "plain" if fast is None else ("cuda_graphs" if fast.cuda_graphs else "static_buffers_eager")
        + ("+compile" if args.compile else ""),
        "torch": torch.__version__, "runs": args.runs, "cpu_threads": torch.get_num_threads(),
    }
    for batch in args.batches:
        seconds = bench_generation(model, batch, frames, text_len, device, args.runs, fast)
        result[f"gen_latency_s_b{batch}"] = round(seconds, 4)
        print(f"generation B={batch}: {seconds:.4f} s", flush=True)
    if not args.skip_train:
        del fast  # frees the bf16 copy and the captured graphs before training
        if device.type == "cuda":
            torch.cuda.empty_cache()
        steps = args.train_steps or (3 if device.type == "cpu" else 10)
        rate = bench_training(model, 16, frames, text_len, device, steps)
        result["train_frames_per_s_b16"] = round(rate, 1)
        print(f"training B=16 x {frames}: {rate:,.0f} frames/s", flush=True)
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
