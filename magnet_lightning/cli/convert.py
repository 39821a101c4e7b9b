"""`magnet-convert` / `python -m magnet_lightning.convert`: an audiocraft release file (or repo id) or a transformers
MusicGen folder (or repo id) as our Lightning checkpoint, audiocraft's 16 kHz codec as a transformers folder, or a
sharded checkpoint folder of FSDP2 training as one `.ckpt` file (what generate, export and evaluate read)."""

from __future__ import annotations

import sys

from magnet_lightning.checkpoint import hub
from magnet_lightning.checkpoint.audiocraft import convert_audiocraft
from magnet_lightning.checkpoint.audiocraft_config import ConfigError
from magnet_lightning.cli.help import OneLineParser, program_name
from magnet_lightning.codec.audiocraft import CodecFileError, convert_codec
from magnet_lightning.errors import CheckpointError, UserError, pop_debug_flag, user_errors
from magnet_lightning.interop.transformers_musicgen import convert_transformers
from magnet_lightning.training.checkpoint_io import AtomicCheckpointIO
from magnet_lightning.training.sharded_checkpoint import consolidate, is_sharded
from magnet_lightning.utils.stale_files import remove_stale


def main(argv: list[str] | None = None) -> None:
    parser = OneLineParser(prog=program_name("magnet_lightning.convert"), description=__doc__.split("\n\n")[0],
                           epilog="A mistake is one line and exit code 2; --debug shows the traceback.")
    sub = parser.add_subparsers(dest="format", required=True)
    ac = sub.add_parser("audiocraft", help="audiocraft MAGNeT or MusicGen state_dict.bin (or repo id) -> "
                                           "Lightning checkpoint")
    ac.add_argument("src", help="path to state_dict.bin, or a released repo id (facebook/magnet-small-10secs, "
                                "facebook/musicgen-small)")
    ac.add_argument("out", help="output .ckpt path")
    codec = sub.add_parser("audiocraft-codec", help="audiocraft compression_state_dict.bin -> transformers folder")
    codec.add_argument("src", help="path to compression_state_dict.bin, or a released repo id")
    codec.add_argument("out", help="output folder (EncodecModel.save_pretrained layout)")
    tf = sub.add_parser("transformers", help="transformers MusicgenForConditionalGeneration folder (or repo id) -> "
                                             "Lightning checkpoint, with its T5 and EnCodec as folders beside it")
    tf.add_argument("src", help="a folder from MusicgenForConditionalGeneration.save_pretrained, or a hub repo id "
                                "(read from the Hugging Face cache when offline)")
    tf.add_argument("out", help="output .ckpt path (OUT.t5/ and OUT.codec/ are written beside it)")
    tf.add_argument("--force", action="store_true", help="replace OUT and its folders if they exist")
    sharded = sub.add_parser("sharded", help="sharded checkpoint folder (FSDP2 training) -> one .ckpt file")
    sharded.add_argument("src", help="the checkpoint folder, e.g. RUN/checkpoints/last.ckpt")
    sharded.add_argument("out", help="output .ckpt path")
    args = parser.parse_args(pop_debug_flag(sys.argv[1:] if argv is None else argv))

    with user_errors(CheckpointError, CodecFileError, ConfigError, FileExistsError):
        out = hub.expand(args.out)
        remove_stale(out.parent, f".{out.name}.tmp*")  # left by a killed conversion
        if args.format == "audiocraft-codec":
            print(f"wrote {convert_codec(args.src, out)}")
            return
        if args.format == "sharded":
            return convert_sharded(hub.expand(args.src), out)
        if args.format == "transformers":
            return convert_musicgen(args.src, out, args.force)
        if out.is_dir():
            raise UserError(f"output {out} is a folder: give the .ckpt file to write, e.g. {out / 'model.ckpt'}")
        if out.exists() and out.resolve() == hub.expand(args.src).resolve():
            raise UserError(f"output {out} is the input file: give another path")
        ckpt = convert_audiocraft(args.src, out)
    print(f"wrote {args.out}: {ckpt.spec.family} {ckpt.config} ({ckpt.config.num_parameters() / 1e6:.1f} M "
          "parameters)")
    print(f"metadata: {ckpt.metadata}")


def convert_musicgen(src: str, out, force: bool) -> None:
    """A transformers MusicGen as our autoregressive checkpoint (interop/transformers_musicgen.py)."""
    if out.is_dir():
        raise UserError(f"output {out} is a folder: give the .ckpt file to write, e.g. {out / 'model.ckpt'}")
    hparams = convert_transformers(src, out, force)
    print(f"wrote {out}: {hparams['model']['num_layers']} layers x {hparams['model']['dim']}, text encoder "
          f"{hparams['text_encoder']}, codec {hparams['codec']}")


def convert_sharded(src, out) -> None:
    """Consolidate the sharded checkpoint `src` into the file `out` (weights, EMA and hyper-parameters; no optimizer
    state: resume from the folder itself), written atomically."""
    if not is_sharded(src):
        raise UserError(f"{src} is not a sharded checkpoint folder (it needs .metadata and meta.pt): give a "
                        "checkpoint folder written by --trainer.strategy fsdp2, e.g. RUN/checkpoints/last.ckpt")
    if out.resolve() == src.resolve() or out.is_dir():
        raise UserError(f"output {out} is a folder: give the .ckpt file to write, e.g. {out.parent / 'model.ckpt'}")
    checkpoint = consolidate(src)
    AtomicCheckpointIO().save_checkpoint(checkpoint, out)
    count = sum(v.numel() for v in checkpoint["state_dict"].values())
    print(f"wrote {out}: step {checkpoint.get('global_step')}, {count / 1e6:.1f} M weights"
          + (" (EMA in state_dict, live weights in current_model_state)" if "current_model_state" in checkpoint
             else ""))
