"""Tokenize audio + captions into EnCodec WebDataset shards (see data/README.md).

    python data/tokenize_audio.py --input /data/music --output /data/tokens/music --codec facebook/encodec_32khz

Several GPUs/nodes: launch one process per GPU with RANK/WORLD_SIZE (and LOCAL_RANK) set, e.g.
    torchrun --nproc-per-node 8 data/tokenize_audio.py --input ... --output ...

Arguments and the input are checked before the codec is loaded; a mistake is one line and exit code 2
(``--debug`` or MAGNET_DEBUG=1 shows the traceback).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

import torch

from magnet_lightning.checkpoint.hub import expand_args
from magnet_lightning.cli.help import OneLineParser
from magnet_lightning.codec.codecs import DEFAULT_CODEC, load_codec
from magnet_lightning.codec.melody import MelodyExtractor
from magnet_lightning.codec.stems import htdemucs_files
from magnet_lightning.config import STEM_MODELS, MelodyConfig
from magnet_lightning.data.inputs import scan_inputs
from magnet_lightning.data.tokenize import (
    TokenizeOptions,
    check_output,
    make_plan,
    same_codec_name,
    tokenize_dataset,
)
from magnet_lightning.errors import UserError, pop_debug_flag, user_errors


def default_workers() -> int:
    """4 audio readers, or fewer on a small machine: one core stays for the encoding process itself."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(0, min(4, cores - 1))


def parse_args(argv=None) -> argparse.Namespace:
    p = OneLineParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--input", required=True, help="audio folder (sidecar .json/.txt captions) or .jsonl/.csv manifest")
    p.add_argument("--output", required=True, help="output folder for NAME-000000.tar shards and manifest.json")
    p.add_argument("--codec", default=DEFAULT_CODEC,
                   help="HF EnCodec id or local dir, or encodec_24khz; stereo:NAME for stereo (the codec NAME on each "
                        "channel, codebooks interleaved per channel, as the stereo MusicGen models)")
    p.add_argument("--bandwidth", type=float, default=None, help="codec bandwidth in kbps (chooses K)")
    p.add_argument("--name", default="shard", help="shard name prefix (no dots)")
    p.add_argument("--samples-per-shard", type=int, default=1000)
    p.add_argument("--batch-size", type=int, default=8, help="tracks encoded together")
    p.add_argument("--max-batch-seconds", type=float, default=600.0,
                   help="cap on batch size x longest track in seconds (bounds GPU memory for long tracks)")
    p.add_argument("--num-workers", type=int, default=default_workers(),
                   help="audio-reading processes (default: 4, at most the CPU cores but one)")
    p.add_argument("--min-duration", type=float, default=1.0, help="skip files shorter than this (s)")
    p.add_argument("--silence-threshold", type=float, default=1e-4, help="skip files whose peak is below this")
    p.add_argument("--device", default="auto", help="auto (cuda:LOCAL_RANK if available), cpu, cuda:0, ...")
    p.add_argument("--rank", type=int, default=int(os.environ.get("RANK", 0)))
    p.add_argument("--world-size", type=int, default=int(os.environ.get("WORLD_SIZE", 1)))
    change = p.add_mutually_exclusive_group()
    change.add_argument("--incremental", action="store_true",
                        help="the output holds shards of an older input: re-tokenize only the shards that changed")
    change.add_argument("--force", action="store_true", help="re-tokenize every shard, even finished ones")
    p.add_argument("--no-progress", action="store_true")
    melody = p.add_argument_group("melody conditioning")
    melody.add_argument("--chroma", action="store_true",
                        help="also store each track's chroma (KEY.chroma.npy), so melody models train on the shards "
                             "without audio (audiocraft's ChromaStemConditioner settings: 12 bins, radix2_exp 14, "
                             "argmax)")
    melody.add_argument("--chroma-stems", choices=STEM_MODELS, default="htdemucs",
                        help="htdemucs: drums and bass removed first (the reference; needs its weights); none: the "
                             "chroma of the whole mix")
    melody.add_argument("--stems-model", default="htdemucs",
                        help="where htdemucs is read from: 'htdemucs' (the Hugging Face cache) or a folder holding "
                             "htdemucs.yaml and 955717e8.safetensors")

    return expand_args(p.parse_args(argv), "input", "output", "codec")  # ~ and $VARS in paths


def check_args(args: argparse.Namespace) -> None:
    """Refuse impossible settings before anything is read or loaded."""
    positive = {"--samples-per-shard": args.samples_per_shard, "--batch-size": args.batch_size,
                "--max-batch-seconds": args.max_batch_seconds, "--world-size": args.world_size}
    for flag, value in positive.items():
        if value <= 0:
            raise UserError(f"{flag} must be positive, got {value}")
    if args.num_workers < 0 or args.min_duration < 0 or args.silence_threshold < 0:
        raise UserError("--num-workers, --min-duration and --silence-threshold must be >= 0")
    if not 0 <= args.rank < args.world_size:
        raise UserError(f"--rank {args.rank} must be in [0, --world-size {args.world_size})")
    if not args.name or "." in args.name or "/" in args.name:
        raise UserError(f"--name {args.name!r} must be non-empty and contain no '.' or '/'")
    if Path(args.output).exists() and not Path(args.output).is_dir():
        raise UserError(f"--output {args.output} exists and is not a folder")
    if args.chroma and args.chroma_stems != "none":
        htdemucs_files(args.stems_model)  # its weights are on disk, or one line naming them


def main(argv=None) -> dict:
    args = parse_args(pop_debug_flag(sys.argv[1:] if argv is None else argv))
    logging.basicConfig(level=logging.INFO, format=f"[rank {args.rank}] %(levelname)s %(message)s")
    with user_errors():
        return run(args)


def run(args: argparse.Namespace) -> dict:
    """Check the arguments, the input and the output folder, then load the codec and tokenize."""
    check_args(args)
    on_change = "force" if args.force else "incremental" if args.incremental else "error"
    items = scan_inputs(args.input)
    if not items:
        raise UserError(f"no audio files found in {args.input}")
    check_output(args.output, args.name, make_plan(items, args.samples_per_shard), same_codec_name(args.codec),
                 on_change)

    device = args.device
    if device == "auto":
        device = f"cuda:{os.environ.get('LOCAL_RANK', 0)}" if torch.cuda.is_available() else "cpu"
    codec = load_codec(args.codec, bandwidth=args.bandwidth, device=device)
    opts = TokenizeOptions(samples_per_shard=args.samples_per_shard, batch_size=args.batch_size,
                           max_batch_seconds=args.max_batch_seconds, num_workers=args.num_workers,
                           min_duration=args.min_duration,
                           silence_threshold=args.silence_threshold, progress=not args.no_progress)
    chroma = None
    if args.chroma:
        melody = MelodyConfig(sample_rate=codec.sample_rate, stems=args.chroma_stems)
        chroma = MelodyExtractor(melody, args.stems_model, device)
    summary = tokenize_dataset(items, args.output, codec, name=args.name, opts=opts, rank=args.rank,
                               world_size=args.world_size, on_change=on_change, chroma=chroma)
    summary["manifest"] = str(summary["manifest"]) if summary["manifest"] else None
    print(json.dumps(summary))
    return summary

