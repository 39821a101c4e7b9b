"""Long-form generation cost (`benchmark.py --long-form`): seconds of compute per second of audio for generations of
1, 2 and 6 windows, per family, batch 1, random weights.

A generation of n windows of W frames with stride S has T = W + (n - 1) * S frames (long_form.py: each window after
the first continues the previous window's last W - S frames). MAGNeT and Hybrid-MAGNeT decode every window in the
same number of steps over all W frames, so their cost grows with the windows (~ n / T per second of audio);
the autoregressive model generates only the new frames (its prompt is one prefill call), so its cost per second
stays about flat.

Shapes: B batch, K codebooks, T frames, W window frames, S stride frames.
"""

from __future__ import annotations

import time

import torch

from magnet_lightning.config import model_preset
from magnet_lightning.generation import hybrid_magnet
from magnet_lightning.generation.autoregressive import ARDecodingConfig, generate
from magnet_lightning.generation.fast import FastDecoder
from magnet_lightning.generation.long_form import decode_windows
from magnet_lightning.generation.magnet import decode
from magnet_lightning.generation.magnet_config import decoding_preset
from magnet_lightning.generation.rescoring import ARRescorer
from magnet_lightning.models.ar import ARTransformer
from magnet_lightning.models.hybrid import HybridMagnetTransformer
from magnet_lightning.models.magnet import MagnetTransformer

WINDOWS = (1, 2, 6)
STRIDE_FRACTION = 0.6
"""The reference's 18-s stride of a 30-s window."""
LONG_FORM_FAMILIES = {"magnet": "MAGNeT", "ar": "autoregressive (KV cache)", "rescored": "MAGNeT + AR rescoring",
                      "hybrid": "Hybrid-MAGNeT (one model: AR prompt, MAGNeT rest)"}


def _text(text_len: int, text_dim: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    states = torch.randn(1, text_len, text_dim, generator=torch.Generator(device).manual_seed(0), device=device)
    return states, torch.ones(1, text_len, dtype=torch.bool, device=device)


def _timed(fn, device: torch.device, runs: int) -> float:
    """Median seconds of `runs` calls after one warm-up call."""
    fn()
    times = []
    for _ in range(runs):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def family_runs(preset: str, model_cfg: dict, text_len: int, window: int, stride: int, device, plain: bool) -> dict:
    """family -> make(frames) -> a callable generating `frames` frames (batch 1, CFG on) in windows of W, stride S."""
    magnet = MagnetTransformer(model_preset(preset, **model_cfg)).to(device).eval()
    ar = ARTransformer(model_preset(preset, **model_cfg, subcodes_context=-1)).to(device).eval()
    hybrid = HybridMagnetTransformer(model_preset(preset, **model_cfg)).to(device).eval()
    states, mask = _text(text_len, magnet.cfg.text_dim, device)
    config = decoding_preset("music", 10.0, magnet.cfg.num_codebooks)
    fast = None if plain else FastDecoder(magnet)
    run = (lambda *a, **k: decode(magnet, *a, **k)) if fast is None else fast.decode

    def magnet_run(frames: int, rescorer=None, cfg=config):
        g = torch.Generator(device).manual_seed(0)

        def one_window(n, **constraints):
            return run(states, mask, n, cfg, generator=g, rescorer=rescorer, **constraints)

        return lambda: decode_windows(one_window, frames, window, stride, magnet.mask_token_id)

    def ar_run(frames: int):
        g = torch.Generator(device).manual_seed(0)
        return lambda: generate(ar, states, mask, frames, ARDecodingConfig(), generator=g, window_frames=window,
                                stride_frames=stride)

    def hybrid_run(frames: int):
        g = torch.Generator(device).manual_seed(0)
        return lambda: hybrid_magnet.generate(hybrid, states, mask, frames, window // 3, config, ARDecodingConfig(),
                                              generator=g, window_frames=window, stride_frames=stride)

    rescored = config.replace(rescore_weight=0.7)
    return {"magnet": magnet_run, "ar": ar_run, "hybrid": hybrid_run,
            "rescored": lambda frames: magnet_run(frames, ARRescorer(ar, states, mask), rescored)}


def bench_long_form(families: list[str], preset: str, model_cfg: dict, text_len: int, window: int, device,
                    runs: int, frame_rate: float, plain: bool = False) -> dict:
    """{family: {windows: {frames, latency_s, compute_s_per_audio_s}}} for 1, 2 and 6 windows."""
    stride = max(1, round(STRIDE_FRACTION * window))
    makers = family_runs(preset, model_cfg, text_len, window, stride, device, plain)
    result = {"window_frames": window, "stride_frames": stride, "batch": 1, "windows": list(WINDOWS)}
    for name in [n for n in families if n in makers]:  # the main benchmark's two-model row has no long-form one
        entry = {}
        for n in WINDOWS:
            frames = window + (n - 1) * stride
            seconds = _timed(makers[name](frames), device, runs)
            per_second = seconds / (frames / frame_rate)
            entry[str(n)] = {"frames": frames, "latency_s": round(seconds, 4),
                             "compute_s_per_audio_s": round(per_second, 4)}
            print(f"long-form {name}: {n} window(s), {frames} frames: {seconds:.3f} s, "
                  f"{per_second:.3f} s of compute per s of audio", flush=True)
        result[name] = {"family": LONG_FORM_FAMILIES[name], **entry}
    return result
