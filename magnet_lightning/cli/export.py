"""`magnet-export` / `python -m magnet_lightning.export`: a slim inference export (safetensors + config.json + model
card) of any checkpoint, optionally pushed to the Hugging Face Hub."""

from __future__ import annotations

import argparse
import json

from magnet_lightning.checkpoint.export import (
    AUDIOCRAFT_LICENSE,
    CARD_NAME,
    CONFIG_NAME,
    DTYPES,
    WEIGHTS_NAME,
    export,
    push_to_hub,
)
from magnet_lightning.cli.help import OneLineParser, program_name
from magnet_lightning.errors import CheckpointError


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog=program_name("magnet_lightning.export"), description=__doc__.split("\n\n")[0])
    p.add_argument("ckpt", help="training checkpoint (.ckpt), converted checkpoint or audiocraft state_dict.bin")
    p.add_argument("out", help="new folder for model.safetensors, config.json and README.md")
    p.add_argument("--dtype", choices=sorted(DTYPES), default="float32", help="dtype of the stored weights")
    p.add_argument("--license", default=None,
                   help=f"license of the weights (forced to {AUDIOCRAFT_LICENSE} for audiocraft-derived weights)")
    p.add_argument("--push-to-hub", metavar="REPO_ID", default=None, help="also upload OUT to this model repo")
    p.add_argument("--public", action="store_true", help="with --push-to-hub: a public repo (default private)")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        out = export(args.ckpt, args.out, args.license, args.dtype)
    except (FileNotFoundError, FileExistsError, CheckpointError, ValueError) as err:
        parser.exit(2, f"error: {err}\n")
    size = (out / WEIGHTS_NAME).stat().st_size / 1e6
    print(f"wrote {out}: {WEIGHTS_NAME} ({size:.1f} MB), {CONFIG_NAME} (license "
          f"{json.loads((out / CONFIG_NAME).read_text())['license']}), {CARD_NAME}")
    if args.push_to_hub:
        print(f"uploaded to {push_to_hub(out, args.push_to_hub, private=not args.public)}")
    return 0
