"""`magnet-export` / `python -m magnet_lightning.export`: a checkpoint as a folder another program loads: this
project's slim export (safetensors + config.json + model card), audiocraft's release format, or transformers'
MusicGen (with `--adapter-only`: a peft adapter); optionally pushed to the Hugging Face Hub."""

from __future__ import annotations

import argparse
import sys

from magnet_lightning.checkpoint.audiocraft_config import ConfigError
from magnet_lightning.checkpoint.export import AUDIOCRAFT_LICENSE, DTYPES, push_to_hub
from magnet_lightning.cli.help import OneLineParser, program_name
from magnet_lightning.errors import CheckpointError, pop_debug_flag, user_errors
from magnet_lightning.interop.formats import DEFAULT_DTYPES, FORMATS, export_as

_FORMAT_HELP = ("magnet_lightning: this project's folder (model.safetensors, config.json); audiocraft: its release "
                "format (state_dict.bin, compression_state_dict.bin) for MAGNeT / MusicGen / AudioGen.get_pretrained; "
                "transformers: a MusicgenForConditionalGeneration folder (autoregressive family), with --adapter-only "
                "a peft adapter for it")


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog=program_name("magnet_lightning.export"), description=__doc__.split("\n\n")[0],
                      epilog="A mistake is one line and exit code 2; --debug shows the traceback.")
    p.add_argument("ckpt", help="training checkpoint (.ckpt), converted checkpoint, export folder, audiocraft "
                                "state_dict.bin or released repo id")
    p.add_argument("out", help="new folder to write (an existing one only with --force)")
    p.add_argument("--format", choices=FORMATS, default="magnet_lightning", help=_FORMAT_HELP)
    p.add_argument("--dtype", choices=sorted(DTYPES), default=None,
                   help="dtype of the stored weights (default: " +
                        ", ".join(f"{k} {v}" for k, v in DEFAULT_DTYPES.items()) + ")")
    p.add_argument("--license", default=None,
                   help=f"license of the weights (forced to {AUDIOCRAFT_LICENSE} for audiocraft-derived weights)")
    p.add_argument("--adapter", default=None,
                   help="LoRA adapter folder or LoRA run .ckpt trained on CKPT: export the merged model")
    p.add_argument("--adapter-only", action="store_true",
                   help="with --adapter: write the adapter alone (this project's folder, or for --format "
                        "transformers a peft adapter)")
    p.add_argument("--force", action="store_true", help="replace OUT if it exists (default: refuse)")
    p.add_argument("--push-to-hub", metavar="REPO_ID", default=None, help="also upload OUT to this model repo")
    p.add_argument("--public", action="store_true", help="with --push-to-hub: a public repo (default private)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(pop_debug_flag(sys.argv[1:] if argv is None else argv))
    with user_errors(CheckpointError, ConfigError, ValueError, FileExistsError):
        exported = export_as(args.format, args.ckpt, args.out, license=args.license, dtype=args.dtype,
                             adapter=args.adapter, adapter_only=args.adapter_only, force=args.force)
    sizes = ", ".join(f"{name} ({(exported.folder / name).stat().st_size / 1e6:.2f} MB)"
                      if (exported.folder / name).is_file() else f"{name}/" for name in exported.files)
    print(f"wrote {exported.folder} ({args.format}): {sizes}")
    for note in exported.notes:
        print(f"note: {note}")
    if args.push_to_hub:
        with user_errors():
            print(f"uploaded to {push_to_hub(exported.folder, args.push_to_hub, private=not args.public)}")
    return 0
