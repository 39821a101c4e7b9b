"""How well long-form generation joins its windows, for several strides (the study behind the default strides of
generation/families.py):

    python evaluation/long_form_joins.py --synthetic --out joins.json
    python evaluation/long_form_joins.py --ckpt CKPT --strides 0.3 0.45 0.6 0.75 0.9 --out joins.json

`--synthetic` first trains a tiny MAGNeT (CPU, a few minutes) on synthetic token clips with a clip-wide 'key' (each
codebook holds notes drawn from 4 of its V tokens, chosen per clip: the key is known only from context, as a piece's
key or timbre is); `--ckpt` uses a MAGNeT checkpoint as it is. Strides are fractions of the window W (the checkpoint's
segment). For each stride S the same clips are generated as `--windows` windows (T = W + (n - 1) S frames, each window
continuing the previous window's last W - S frames; long_form.py) with the MAGNeT defaults and a fixed seed. Every
frame is embedded in token space (with a checkpoint: the codec quantizer's latent, the sum of the frame's K codebook
vectors; synthetic: a fixed random codebook of the same form), and a *transition* is the pair of consecutive frames
(z_(t-1), z_t).
Reported per stride:
- `join_fad`: the Fréchet distance between the transitions at the joins (`--radius` frames either side of each
  window's first new frame) and the transitions of single-window generations (the reference);
- `inner_fad`: the same for the transitions away from the joins (the floor the join is compared with);
- `new_token_rate`: the fraction of tokens after the first window that the first window never used (the clip's
  'key' lost along the windows; 0 on the synthetic clips' distribution);
- `windows_per_second`: windows per second of audio, the decoding cost of MAGNeT-style families.

Shapes: B batch, K codebooks, T frames, D latent width, F frames pooled.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from a checkout

from magnet_lightning.config import model_preset  # noqa: E402
from magnet_lightning.generation.generator import MagnetGenerator  # noqa: E402
from magnet_lightning.generation.long_form import plan_windows  # noqa: E402
from magnet_lightning.generation.magnet import decode  # noqa: E402
from magnet_lightning.generation.magnet_config import decoding_preset  # noqa: E402
from magnet_lightning.metrics.fad import frechet_distance  # noqa: E402
from magnet_lightning.models.magnet import MagnetTransformer  # noqa: E402
from magnet_lightning.training.masking import draw_stages, sample_training_masks  # noqa: E402
from magnet_lightning.training.objective import masked_cross_entropy, stage_targets  # noqa: E402

STRIDES = (0.3, 0.45, 0.6, 0.75, 0.9)
SYNTHETIC = {"window": 60, "codebook_size": 32, "num_codebooks": 4, "span_len": 3, "steps": (10, 5, 5, 5)}
Decoder = Callable[[int, int | None, int | None], torch.Tensor]
"""decoder(num_frames, window_frames, stride_frames) -> tokens [B, K, T] (one fixed seed)."""


def synthetic_clips(batch: int, frames: int, codebook_size: int, num_codebooks: int,
                    generator: torch.Generator) -> torch.Tensor:
    """Token clips [B, K, T] with a clip-wide 'key': each clip draws 4 of the V tokens per codebook and every
    codebook plays notes of those tokens, each held for 1 to 8 frames (the key is only known from context)."""
    clips = torch.empty(batch, num_codebooks, frames, dtype=torch.long)
    for b in range(batch):
        for k in range(num_codebooks):
            key = torch.randperm(codebook_size, generator=generator)[:4]
            lengths = torch.randint(1, 9, (frames,), generator=generator)
            notes = key[torch.randint(0, 4, (frames,), generator=generator)]
            clips[b, k] = notes.repeat_interleave(lengths)[:frames]
    return clips


def train_synthetic(steps: int, batch: int, seed: int) -> MagnetTransformer:
    """A tiny unconditional MAGNeT trained on `synthetic_clips` of one window (AdamW, MAGNeT's masked stage loss)."""
    torch.manual_seed(seed)
    setup, g = SYNTHETIC, torch.Generator().manual_seed(seed)
    model = MagnetTransformer(model_preset("tiny", dim=64, num_heads=4, num_layers=3, ffn_dim=128,
                                           codebook_size=setup["codebook_size"], num_codebooks=setup["num_codebooks"],
                                           text_dim=8, subcodes_context=3))
    optim = torch.optim.AdamW(model.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.OneCycleLR(optim, max_lr=1e-3, total_steps=steps, pct_start=0.1)
    states, mask = torch.zeros(batch, 1, 8), torch.zeros(batch, 1, dtype=torch.bool)
    for step in range(steps):
        codes = synthetic_clips(batch, setup["window"], setup["codebook_size"], setup["num_codebooks"], g)
        stages = draw_stages(batch, setup["num_codebooks"], per_sample=False, generator=g)
        masked = sample_training_masks(codes, stages, model.mask_token_id, span_len=setup["span_len"], generator=g)
        stage = int(stages[0])
        logits = model(masked.inputs, states, mask, stage, heads="stage")
        loss = masked_cross_entropy(logits, stage_targets(codes, stage), masked.loss_mask)
        optim.zero_grad()
        loss.backward()
        optim.step()
        sched.step()
        if step % 100 == 0 or step == steps - 1:
            print(f"train step {step}: loss {loss.item():.3f}", flush=True)
    return model.eval()


def transitions(latents: torch.Tensor, index: list[int] | range) -> torch.Tensor:
    """latents [B, D, T] -> the transitions (z_(t-1), z_t) at the given t >= 1, as [F, 2D]."""
    index = list(index)
    pairs = torch.cat([latents[..., [t - 1 for t in index]], latents[..., index]], dim=1)  # [B, 2D, F']
    return pairs.permute(0, 2, 1).reshape(-1, pairs.shape[1]).double()


def fad(frames: torch.Tensor, reference: torch.Tensor) -> float:
    """Fréchet distance between two feature sets [F, D]."""
    return float(frechet_distance(frames.mean(0), torch.cov(frames.T), reference.mean(0), torch.cov(reference.T)))


def new_token_rate(tokens: torch.Tensor, window: int) -> float:
    """tokens [B, K, T]: the fraction of tokens after the first window that the first window never used (per clip and
    codebook): how much of the clip's 'key' is lost along the windows."""
    first, rest = tokens[..., :window], tokens[..., window:]
    seen = (rest[..., :, None] == first[..., None, :]).any(dim=-1)  # [B, K, T - W]
    return float(1.0 - seen.float().mean())


def join_steps(num_frames: int, window: int, stride: int, radius: int) -> tuple[list[int], list[int]]:
    """(transition steps t within `radius` of a join, all other steps t >= 1) of a long-form clip."""
    joins = [w.start + w.prompt for w in plan_windows(num_frames, window, stride)[1:]]
    near = sorted({t for j in joins for t in range(max(1, j - radius), min(num_frames, j + radius))})
    return near, [t for t in range(window, num_frames) if t not in set(near)]


def study(decoder: Decoder, embed: Callable[[torch.Tensor], torch.Tensor], window: int, frame_rate: float,
          strides: list[float], windows: int, radius: int) -> dict:
    """The per-stride figures (module docstring) for windows of W frames, strides given as fractions of W."""
    reference = transitions(embed(decoder(window, None, None)), range(1, window))
    result = {"window_frames": window, "windows": windows, "radius": radius, "strides": {}}
    for fraction in strides:
        stride = max(1, round(fraction * window))
        total = window + (windows - 1) * stride
        tokens = decoder(total, window, stride)
        latents = embed(tokens)
        near, inner = join_steps(total, window, stride, radius)
        entry = {"stride_frames": stride, "overlap_frames": window - stride, "frames": total,
                 "join_fad": round(fad(transitions(latents, near), reference), 3),
                 "inner_fad": round(fad(transitions(latents, inner), reference), 3),
                 "new_token_rate": round(new_token_rate(tokens, window), 4),
                 "windows_per_second": round(windows / (total / frame_rate), 4)}
        result["strides"][f"{fraction:g}"] = entry
        print(f"stride {fraction:g} W ({stride} frames): {json.dumps(entry)}", flush=True)
    return result


def synthetic_study(args) -> dict:
    setup = SYNTHETIC
    model = train_synthetic(args.train_steps, 32, args.seed)
    config = decoding_preset("music", 10.0, setup["num_codebooks"], decoding_steps=setup["steps"])
    table = torch.randn(setup["num_codebooks"], setup["codebook_size"], 16, generator=torch.Generator().manual_seed(1))

    def decoder(frames, window, stride):
        g = torch.Generator().manual_seed(args.seed)
        return decode(model, None, None, frames, config, batch_size=args.batch, generator=g, window_frames=window,
                      stride_frames=stride)

    def embed(tokens):  # [B, K, T] -> [B, D, T]: the sum of the frame's K codebook vectors
        return sum(table[k][tokens[:, k]] for k in range(setup["num_codebooks"])).permute(0, 2, 1)

    radius = args.radius or setup["span_len"]
    return {"setup": "synthetic", "train_steps": args.train_steps, "batch": args.batch,
            **study(decoder, embed, setup["window"], 50.0, args.strides, args.windows, radius)}


def checkpoint_study(args) -> dict:
    gen = MagnetGenerator.from_pretrained(args.ckpt, device="cpu", allow_random_text_encoder=True, fast=False)
    window = gen.num_frames(gen.segment_duration)
    config = gen.decoding_config(gen.segment_duration)

    def decoder(frames, window_frames, stride):
        g = torch.Generator().manual_seed(args.seed)
        return decode(gen.model, None, None, frames, config, batch_size=args.batch, generator=g,
                      window_frames=window_frames, stride_frames=stride)

    radius = args.radius or 3 * gen.span_len
    return {"setup": str(args.ckpt), "batch": args.batch,
            **study(decoder, gen.codec.dequantize, window, gen.frame_rate, args.strides, args.windows, radius)}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--synthetic", action="store_true", help="train a tiny MAGNeT on synthetic clips first")
    src.add_argument("--ckpt", help="a MAGNeT checkpoint (ours or audiocraft's state_dict.bin)")
    p.add_argument("--strides", type=float, nargs="+", default=list(STRIDES), help="strides, fractions of the window")
    p.add_argument("--windows", type=int, default=5, help="windows per generation")
    p.add_argument("--batch", type=int, default=64, help="clips per stride (unconditional)")
    p.add_argument("--radius", type=int, default=None, help="steps either side of a join (default: one span)")
    p.add_argument("--train-steps", type=int, default=1500, help="--synthetic: training steps")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="CPU threads (torch.set_num_threads)")
    p.add_argument("--out", required=True, help="JSON report")
    args = p.parse_args(argv)
    if not all(0 < s < 1 for s in args.strides) or args.windows < 2:
        p.error("--strides are fractions of the window in (0, 1), and --windows must be at least 2")
    if args.threads:
        torch.set_num_threads(args.threads)
    result = synthetic_study(args) if args.synthetic else checkpoint_study(args)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    return result


if __name__ == "__main__":
    main()
