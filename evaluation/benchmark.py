"""MAGNeT and the autoregressive (MusicGen-style) model of the same size side by side, random weights (paper Fig. 2):
generation latency and throughput (seconds of audio per second) for each batch size, the same for MAGNeT rescored by
the AR model and for two-model generation (AR prompt, MAGNeT rest), the autoregressive KV-cache step cost, and training
throughput.

    python evaluation/benchmark.py --json OUT.json                  # the small models, 10 s (500 frames), B = 1..64
    python evaluation/benchmark.py --tiny --json OUT.json           # tiny models, 3 s, B = 1, 2, 4: a CPU run
    python evaluation/benchmark.py --tiny --json OUT.json --png OUT.png --families ar
    python evaluation/benchmark.py --tiny --long-form --json OUT.json   # long-form: 1, 2, 6 windows per family

Generation: end to end from text states [B, S, E] to tokens [B, K, T], with classifier-free guidance (batch doubled),
median of >= 3 runs after a warm-up run. MAGNeT: decoding steps [20, 10, 10, 10], the fast path (static buffers, and
CUDA graphs on CUDA) unless --plain. AR: the reference's sampling (top-k 250, temperature 1, CFG 3), KV cache, T +
max_delay steps. Throughput = B x seconds of audio / latency. The PNG plots latency against throughput per family.
KV cache (AR): the median cost of one generated step at batch 1 (cached forward of one new step over [cond; null]
rows, CFG mix, top-k sampling, token write) against a forward of a single frame without cache (same rows), measured
interleaved; target <= 1.5x. Training: forward + backward + AdamW step on B=16 (MAGNeT's masked stage loss, AR's
delay-pattern loss), bf16 autocast on CUDA.
On CPU the run uses one thread by default and records the load average: on a shared machine, quote it with the figures.
--long-form (benchmark_long_form.py): seconds of compute per second of audio for 1, 2 and 6 windows of T frames
(stride 0.6 T) per family at batch 1; there 'hybrid' is the one-model Hybrid-MAGNeT family.
Targets on one H100 (shared performance notes): MAGNeT small b1 <= 0.12 s, b16 <= 1.1 s; the AR small model b1 <= 3 s,
b16 <= 4 s; MAGNeT's b1 latency >= 10x lower than AR's.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from a checkout

from evaluation.benchmark_long_form import LONG_FORM_FAMILIES, bench_long_form
from evaluation.latency_plot import write_latency_plot
from magnet_lightning.config import model_preset
from magnet_lightning.generation.autoregressive import ARDecodingConfig, decode_step, generate
from magnet_lightning.generation.common import autocast_context, guidance_batch
from magnet_lightning.generation.fast import FastDecoder
from magnet_lightning.generation.magnet import continuation, decode
from magnet_lightning.generation.magnet_config import decoding_preset
from magnet_lightning.generation.rescoring import ARRescorer
from magnet_lightning.generation.sampling import draw_noise
from magnet_lightning.models.ar import ARTransformer
from magnet_lightning.models.kv_cache import KVCache
from magnet_lightning.models.magnet import MagnetTransformer
from magnet_lightning.training.masking import draw_stages, sample_training_masks
from magnet_lightning.training.objective import ar_loss, masked_cross_entropy, stage_targets

SETUPS = {
    # model preset overrides, text tokens S, frames T, default batch sizes
    "small": {"model": {"codebook_size": 2048, "num_codebooks": 4, "text_dim": 768}, "text_len": 20, "frames": 500,
              "batches": [1, 2, 4, 8, 16, 32, 64]},
    "tiny": {"model": {"codebook_size": 256, "num_codebooks": 4, "text_dim": 32}, "text_len": 20, "frames": 150,
             "batches": [1, 2, 4]},
}
FRAME_RATE = 50.0
MAGNET_STEPS = [20, 10, 10, 10]
KV_TARGET = 1.5
RESCORE_WEIGHT = 0.7
AR_PROMPT = 150  # frames: 3 s at 50 Hz, the paper's Hybrid-MAGNeT prompt scale
FAMILIES = {"magnet": "MAGNeT", "ar": "autoregressive (KV cache)", "rescored": "MAGNeT + AR rescoring",
            "two_model": "two-model: AR prompt + MAGNeT"}


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


def _text(batch: int, text_len: int, text_dim: int, device, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator(device).manual_seed(seed)
    states = torch.randn(batch, text_len, text_dim, generator=g, device=device)
    return states, torch.ones(batch, text_len, dtype=torch.bool, device=device)


def magnet_generation(model: MagnetTransformer, fast: FastDecoder | None, batch: int, frames: int, text_len: int,
                      device):
    """A callable generating `batch` items with MAGNeT's default music decoding (CFG on)."""
    config = decoding_preset("music", 10.0, model.cfg.num_codebooks)
    states, mask = _text(batch, text_len, model.cfg.text_dim, device)
    g = torch.Generator(device).manual_seed(0)
    if fast is not None:
        return lambda: fast.decode(states, mask, frames, config, generator=g)
    return lambda: decode(model, states, mask, frames, config, generator=g)


def ar_generation(model: ARTransformer, batch: int, frames: int, text_len: int, device):
    """A callable generating `batch` items autoregressively with the reference's sampling (KV cache, CFG on)."""
    states, mask = _text(batch, text_len, model.cfg.text_dim, device)
    g = torch.Generator(device).manual_seed(0)
    return lambda: generate(model, states, mask, frames, ARDecodingConfig(), generator=g)


def rescored_generation(model: MagnetTransformer, rescorer_model: ARTransformer, fast: FastDecoder | None, batch: int,
                        frames: int, text_len: int, device, weight: float = RESCORE_WEIGHT):
    """MAGNeT generation whose spans are ranked with an AR rescorer's probabilities (one teacher-forced pass a step)."""

    config = decoding_preset("music", 10.0, model.cfg.num_codebooks, rescore_weight=weight)
    states, mask = _text(batch, text_len, model.cfg.text_dim, device)
    rescorer = ARRescorer(rescorer_model, states, mask)
    g = torch.Generator(device).manual_seed(0)
    if fast is not None:
        return lambda: fast.decode(states, mask, frames, config, generator=g, rescorer=rescorer)
    return lambda: decode(model, states, mask, frames, config, generator=g, rescorer=rescorer)


def two_model_generation(model: MagnetTransformer, ar_model: ARTransformer, fast: FastDecoder | None, batch: int,
                      frames: int, text_len: int, device):
    """Two-model generation: the AR model generates the first AR_PROMPT frames (a third of shorter clips), MAGNeT the
    rest with them fixed (generation/two_model.py does the same through generators)."""

    prompt_frames = min(AR_PROMPT, frames // 3)
    config = decoding_preset("music", 10.0, model.cfg.num_codebooks)
    states, mask = _text(batch, text_len, model.cfg.text_dim, device)
    g = torch.Generator(device).manual_seed(0)
    run = fast.decode if fast is not None else (lambda *a, **k: decode(model, *a, **k))

    def once():
        prompt = generate(ar_model, states, mask, prompt_frames, ARDecodingConfig(), generator=g)
        given, fixed = continuation(prompt, frames, model.mask_token_id)
        return run(states, mask, frames, config, generator=g, given=given, fixed=fixed)

    return once


def bench_family(name: str, make_run, batches: list[int], frames: int, device, runs: int) -> dict:
    seconds_of_audio = frames / FRAME_RATE
    latency, throughput = {}, {}
    for batch in batches:
        seconds = _median_time(make_run(batch), device, runs)
        latency[str(batch)] = round(seconds, 4)
        throughput[str(batch)] = round(batch * seconds_of_audio / seconds, 3)
        print(f"{name} B={batch}: {seconds:.4f} s, {throughput[str(batch)]:.2f} s of audio / s", flush=True)
    return {"latency_s": latency, "throughput_audio_s_per_s": throughput}


@torch.no_grad()
def bench_kv_step(model: ARTransformer, frames: int, text_len: int, device, rounds: int, calls: int) -> dict:
    """Median seconds of one cached generation step and of an uncached forward of one frame, batch 1 with CFG,
    at the middle of a generation (the cache half full), interleaved round by round."""
    cfg, pattern = model.cfg, model.pattern
    codes = torch.randint(0, cfg.codebook_size, (1, cfg.num_codebooks, frames), device=device)
    sequence = pattern.build(codes, model.special_token_id)  # [1, K, S]
    position = sequence.shape[-1] // 2
    step = torch.tensor([position], device=device)
    config = ARDecodingConfig()
    with autocast_context(device, None):
        memory = model.prepare_text(*guidance_batch(*_text(1, text_len, cfg.text_dim, device)))
        dtype = torch.get_autocast_dtype(device.type) if torch.is_autocast_enabled(device.type) else None
        cache = KVCache.for_model(model, 2, sequence.shape[-1] - 1, dtype)
        prefix = sequence[..., :position]
        model.forward_cached(torch.cat([prefix, prefix]), memory, cache, torch.arange(position, device=device))
        frame = sequence[..., position:position + 1]
        rows = torch.cat([frame, frame])

        def generated_step():
            noise = draw_noise((1, cfg.num_codebooks, cfg.codebook_size), None, device)
            decode_step(model, memory, cache, sequence, step, True, config, noise)

        fns = {"step": generated_step, "model_step": lambda: model.forward_cached(rows, memory, cache, step),
               "single_frame_forward": lambda: model.forward_sequence(rows, memory)}
        times: dict[str, list[float]] = {key: [] for key in fns}
        for fn in fns.values():
            fn()  # warm-up
        for _ in range(rounds):
            for key, fn in fns.items():
                _sync(device)
                start = time.perf_counter()
                for _ in range(calls):
                    fn()
                _sync(device)
                times[key].append((time.perf_counter() - start) / calls)
    med = {key: statistics.median(values) for key, values in times.items()}
    return {
        "step_s": round(med["step"], 7), "model_step_s": round(med["model_step"], 7),
        "single_frame_forward_s": round(med["single_frame_forward"], 7),
        "step_over_single_frame_forward": round(med["step"] / med["single_frame_forward"], 3),
        "model_step_over_single_frame_forward": round(med["model_step"] / med["single_frame_forward"], 3),
        "target": KV_TARGET, "rounds": rounds, "calls_per_round": calls, "position": position,
        "cache_capacity": sequence.shape[-1] - 1,
    }


def bench_training(model, loss_fn, batch: int, frames: int, text_len: int, device, steps: int) -> float:
    """Frames per second of forward + backward + AdamW step on random codes; loss_fn(codes, states, mask)."""
    cuda = device.type == "cuda"
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=cuda)
    cfg = model.cfg
    g = torch.Generator(device).manual_seed(0)
    codes = torch.randint(0, cfg.codebook_size, (batch, cfg.num_codebooks, frames), generator=g, device=device)
    states, mask = _text(batch, text_len, cfg.text_dim, device)

    def step():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
            loss = loss_fn(codes, states, mask)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    seconds = _median_time(step, device, steps, warmup=2)
    model.eval()
    return batch * frames / seconds


def magnet_loss_fn(model: MagnetTransformer):
    cpu_gen = torch.Generator().manual_seed(0)

    def loss(codes, states, mask):
        stages = draw_stages(codes.shape[0], model.cfg.num_codebooks, per_sample=False, generator=cpu_gen)
        masked = sample_training_masks(codes, stages, model.mask_token_id, span_len=3, generator=cpu_gen)
        stage = int(stages[0])
        logits = model(masked.inputs, states, mask, stage, heads="stage")
        return masked_cross_entropy(logits, stage_targets(codes, stage), masked.loss_mask)

    return loss


def _load() -> list[float] | None:
    return [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None


def _write(result: dict, out: Path) -> dict:
    result["load_average_after"] = _load()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    return result


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--json", required=True, help="where to write the results")
    p.add_argument("--png", default=None, help="latency-vs-throughput chart (default: the --json path with .png)")
    p.add_argument("--tiny", action="store_true", help="tiny models, 150 frames, B = 1, 2, 4 (CPU run)")
    p.add_argument("--families", nargs="+", choices=sorted(set(FAMILIES) | set(LONG_FORM_FAMILIES)),
                   default=list(FAMILIES),
                   help="rescored: MAGNeT with the AR model as rescorer (w=0.7); two_model: AR prompt of 3 s (a third "
                        "of a shorter clip), MAGNeT the rest")
    p.add_argument("--device", default=None, help="default: cuda if available")
    p.add_argument("--runs", type=int, default=3, help="timed generation runs per batch size (median)")
    p.add_argument("--batches", type=int, nargs="+", default=None, help="default 1 2 4 ... 64 (1 2 4 with --tiny)")
    p.add_argument("--frames", type=int, default=None, help="override T (default 500, or 150 with --tiny)")
    p.add_argument("--kv-rounds", type=int, default=15, help="interleaved rounds of the KV-cache step measurement")
    p.add_argument("--kv-calls", type=int, default=20, help="calls per round of the KV-cache step measurement")
    p.add_argument("--plain", action="store_true", help="MAGNeT: plain decoding loop instead of the fast path")
    p.add_argument("--no-graphs", action="store_true", help="MAGNeT: fast path without CUDA graphs")
    p.add_argument("--compile", action="store_true", help="MAGNeT: torch.compile the per-step forward (fast path)")
    p.add_argument("--train-steps", type=int, default=None, help="timed training steps (median); default 10/3")
    p.add_argument("--skip-train", action="store_true")
    p.add_argument("--long-form", action="store_true",
                   help="only long-form generation: compute per second of audio for 1, 2, 6 windows of --frames")
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads (torch.set_num_threads); default: 1 on CPU (timings on a shared machine must not "
                        "fight other jobs for cores), else torch's default")
    args = p.parse_args(argv)
    if min(args.batches or [1]) < 1 or args.runs < 1 or (args.frames is not None and args.frames < 1):
        p.error("--batches, --runs and --frames must be positive")
    return args


def bench_generation_and_training(args: argparse.Namespace, result: dict, cfg, setup: dict,
                                  device: torch.device) -> None:
    """Latency and throughput of each family's generation, the KV-cache step, training speed: into `result`."""
    frames, text_len, batches = result["frames"], result["text_len"], result["batches"]
    steps = args.train_steps or (3 if device.type == "cpu" else 10)
    magnet = MagnetTransformer(cfg).to(device).eval()
    ar = ARTransformer(model_preset("tiny" if args.tiny else "small", **setup["model"],
                                    subcodes_context=-1)).to(device).eval()
    fast = None if args.plain else FastDecoder(magnet, cuda_graphs=False if args.no_graphs else None,
                                               compile=args.compile)
    path = "plain" if fast is None else ("cuda_graphs" if fast.cuda_graphs else "static_buffers_eager")
    path += "+compile" if args.compile else ""
    runs = {
        "magnet": lambda b: magnet_generation(magnet, fast, b, frames, text_len, device),
        "ar": lambda b: ar_generation(ar, b, frames, text_len, device),
        "rescored": lambda b: rescored_generation(magnet, ar, fast, b, frames, text_len, device),
        "two_model": lambda b: two_model_generation(magnet, ar, fast, b, frames, text_len, device),
    }
    for name in [n for n in FAMILIES if n in args.families]:
        entry = {"magnet": {"parameters": sum(p.numel() for p in magnet.parameters()), "decoding_steps": MAGNET_STEPS,
                            "path": path},
                 "ar": {"parameters": sum(p.numel() for p in ar.parameters()), "delays": list(ar.pattern.delays),
                        "decoding": asdict(ARDecodingConfig()) | {"kv_cache": True},
                        "steps": frames + ar.pattern.max_delay},
                 "rescored": {"rescore_weight": RESCORE_WEIGHT, "rescorer": "the AR model (one pass a step)",
                              "path": path},
                 "two_model": {"prompt_frames": min(AR_PROMPT, frames // 3), "path": path}}[name]
        entry.update(bench_family(name, runs[name], batches, frames, device, args.runs))
        result[name] = entry
    runs.clear()
    fast = None  # frees the bf16 copy and the captured graphs before training
    if "ar" in result:
        result["ar"]["kv_cache"] = bench_kv_step(ar, frames, text_len, device, args.kv_rounds, args.kv_calls)
        print(f"ar KV-cache step: {result['ar']['kv_cache']['step_over_single_frame_forward']}x a single-frame "
              f"forward (target <= {KV_TARGET})", flush=True)
    _training_rows(args, result, magnet, ar, steps, device)


def _training_rows(args: argparse.Namespace, result: dict, magnet, ar, steps: int, device: torch.device) -> None:
    frames, text_len, batches = result["frames"], result["text_len"], result["batches"]
    magnet_row, ar_row = result.get("magnet"), result.get("ar")
    if not args.skip_train:
        if magnet_row is not None:
            magnet_row["train_frames_per_s_b16"] = round(
                bench_training(magnet, magnet_loss_fn(magnet), 16, frames, text_len, device, steps), 1)
        if ar_row is not None:
            ar_row["train_frames_per_s_b16"] = round(bench_training(
                ar, lambda c, s, m: ar_loss(ar, c, s, m).loss, 16, frames, text_len, device, steps), 1)
    if magnet_row is not None and ar_row is not None and 1 in batches:
        result["b1_latency_ar_over_magnet"] = round(ar_row["latency_s"]["1"] / magnet_row["latency_s"]["1"], 2)


def main(argv=None) -> dict:
    args = parse_args(argv)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    threads = args.threads or (1 if device.type == "cpu" else None)
    if threads:
        torch.set_num_threads(threads)
    setup = SETUPS["tiny" if args.tiny else "small"]
    torch.manual_seed(0)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
    cfg = model_preset("tiny" if args.tiny else "small", **setup["model"])
    frames, text_len, batches = args.frames or setup["frames"], setup["text_len"], args.batches or setup["batches"]
    result = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({platform.machine()})",
        "dtype": "bfloat16" if device.type == "cuda" else "float32", "setup": "tiny" if args.tiny else "small",
        "frames": frames, "seconds_of_audio": frames / FRAME_RATE, "text_len": text_len, "cfg": True,
        "batches": batches, "torch": torch.__version__, "runs": args.runs, "cpu_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(), "load_average_before": _load(),
    }
    if args.long_form:
        result["long_form"] = bench_long_form(args.families, "tiny" if args.tiny else "small", setup["model"],
                                              text_len, frames, device, args.runs, FRAME_RATE, args.plain)
        return _write(result, Path(args.json))
    bench_generation_and_training(args, result, cfg, setup, device)
    out = Path(args.json)
    _write(result, out)
    series = {FAMILIES[name]: [(int(b), result[name]["latency_s"][b], result[name]["throughput_audio_s_per_s"][b])
                               for b in result[name]["latency_s"]] for name in FAMILIES if name in result}
    png = write_latency_plot(series, args.png or out.with_suffix(".png"),
                             title=f"{result['setup']} models, {frames / FRAME_RATE:g} s, {result['device']}")
    print(json.dumps(result, indent=2))
    print(f"wrote {png}")
    return result


if __name__ == "__main__":
    main()
