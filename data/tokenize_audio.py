"""Tokenize audio + captions into EnCodec WebDataset shards (see data/README.md).

    python data/tokenize_audio.py --input /data/music --output /data/tokens/music --codec facebook/encodec_32khz

Several GPUs/nodes: launch one process per GPU with RANK/WORLD_SIZE (and LOCAL_RANK) set, e.g.
    torchrun --nproc-per-node 8 data/tokenize_audio.py --input ... --output ...
"""

from __future__ import annotations

import argparse
import json
import logging
import os

import torch

from magnet_lightning.codec import DEFAULT_CODEC, load_codec
from magnet_lightning.data.tokenize import TokenizeOptions, tokenize_dataset


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--input", required=True, help="audio folder (sidecar .json/.txt captions) or .jsonl/.csv manifest")
    p.add_argument("--output", required=True, help="output folder for NAME-000000.tar shards and manifest.json")
    p.add_argument("--codec", default=DEFAULT_CODEC, help="HF EnCodec id or local dir, or encodec_24khz")
    p.add_argument("--bandwidth", type=float, default=None, help="codec bandwidth in kbps (chooses K)")
    p.add_argument("--name", default="shard", help="shard name prefix (no dots)")
    p.add_argument("--samples-per-shard", type=int, default=1000)
    p.add_argument("--batch-size", type=int, default=8, help="tracks encoded together")
    p.add_argument("--max-batch-seconds", type=float, default=600.0,
                   help="cap on batch size x longest track in seconds (bounds GPU memory for long tracks)")
    p.add_argument("--num-workers", type=int, default=4, help="audio-reading processes")
    p.add_argument("--min-duration", type=float, default=1.0, help="skip files shorter than this (s)")
    p.add_argument("--silence-threshold", type=float, default=1e-4, help="skip files whose peak is below this")
    p.add_argument("--device", default="auto", help="auto (cuda:LOCAL_RANK if available), cpu, cuda:0, ...")
    p.add_argument("--rank", type=int, default=int(os.environ.get("RANK", 0)))
    p.add_argument("--world-size", type=int, default=int(os.environ.get("WORLD_SIZE", 1)))
    p.add_argument("--no-progress", action="store_true")
    return p.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format=f"[rank {args.rank}] %(levelname)s %(message)s")
    device = args.device
    if device == "auto":
        device = f"cuda:{os.environ.get('LOCAL_RANK', 0)}" if torch.cuda.is_available() else "cpu"
    codec = load_codec(args.codec, bandwidth=args.bandwidth, device=device)
    opts = TokenizeOptions(samples_per_shard=args.samples_per_shard, batch_size=args.batch_size,
                           max_batch_seconds=args.max_batch_seconds, num_workers=args.num_workers,
                           min_duration=args.min_duration,
                           silence_threshold=args.silence_threshold, progress=not args.no_progress)
    summary = tokenize_dataset(args.input, args.output, codec, name=args.name, opts=opts, rank=args.rank,
                               world_size=args.world_size)
    summary["manifest"] = str(summary["manifest"]) if summary["manifest"] else None
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    try:
        main()
    except FileNotFoundError as err:  # missing codec weights or input: the message says what to download / fix
        raise SystemExit(f"error: {err}") from None
