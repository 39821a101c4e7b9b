"""The interactive app's command line (`magnet-app`, `python -m magnet_lightning.app`).

    magnet-app --ckpt model.ckpt
    magnet-app --ckpt facebook/magnet-small-10secs --ckpt facebook/musicgen-small --device cuda --port 7860

Several --ckpt (repo ids, files, export folders, of any family) are loaded once each and chosen in the page; an
autoregressive checkpoint loaded beside a MAGNeT one can rescore it or give it a prompt (two-model hybrid). The
server listens on 127.0.0.1 and a free port unless --host / --port say otherwise; a public share link only with
--share. Every argument is checked (each checkpoint peeked without building a model) before any model loads; a
mistake is one line and exit code 2.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import socket
import sys
from collections.abc import Sequence

from magnet_lightning.app.settings import Limits, ModelSpec
from magnet_lightning.checkpoint.hub import expand, looks_like_repo_id
from magnet_lightning.cli.checks import peek_checkpoint, positive
from magnet_lightning.codec.stems import htdemucs_files
from magnet_lightning.errors import CheckpointError, UserError, one_line, pop_debug_flag, user_errors

log = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="magnet-app", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--ckpt", action="append", required=True,
                   help="a checkpoint (repo id, .ckpt, state_dict.bin or export folder); repeat for several")
    p.add_argument("--device", default=None, help="cuda, cpu, ... (default: cuda when available)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    p.add_argument("--port", type=int, default=None, help="port (default: a free one)")
    p.add_argument("--share", action="store_true", help="also open a public gradio.live link")
    p.add_argument("--max-duration", type=float, default=None,
                   help="longest generation or edited clip in seconds (default: 30, or a checkpoint's training "
                        "segment if longer); past the segment, generation is long-form (windows)")
    p.add_argument("--max-captions", type=int, default=4, help="captions of one request")
    p.add_argument("--max-batch", type=int, default=8, help="rows of one batched generation")
    p.add_argument("--max-text-chars", type=int, default=300, help="characters of one caption")
    p.add_argument("--max-queue", type=int, default=32, help="requests waiting in the queue (more are refused)")
    p.add_argument("--allow-random-text-encoder", action="store_true",
                   help="demo only: random-weight T5 when its weights are missing")
    p.add_argument("--no-fast", action="store_true", help="plain decoding loop (no static buffers / CUDA graphs)")
    p.add_argument("--stems-model", default="htdemucs", metavar="DIR",
                   help="melody-conditioned checkpoints: where demucs' htdemucs is read from ('htdemucs': the Hugging "
                        "Face cache, or a folder with htdemucs.yaml + 955717e8.safetensors)")
    p.epilog = "A wrong argument is one line and exit code 2; --debug (or MAGNET_DEBUG=1) shows the traceback."
    return p


def free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def check_port(host: str, port: int | None) -> int:
    """The port to serve on: `port` if it can be bound on `host`, else a UserError; None: a free one."""
    if port is not None and not 0 < port < 65536:
        raise UserError(f"--port {port}: choose a port between 1 and 65535 (or omit it for a free one)")
    try:
        if port is None:
            return free_port(host)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((host, port))
        return port
    except socket.gaierror:
        raise UserError(f"--host {host}: not an address of this machine (e.g. 127.0.0.1 or 0.0.0.0)") from None
    except OSError as err:
        raise UserError(f"--port {port} on {host} cannot be used ({err.strerror}): pass another --port or omit "
                        "it for a free one") from None


def check_args(args: argparse.Namespace) -> list:
    """Every check that needs no model; returns the engine's ModelSpecs (names each checkpoint records)."""
    if importlib.util.find_spec("gradio") is None:
        raise UserError("magnet-app needs gradio: pip install 'magnet_lightning[app]'")
    for flag in ("max_duration", "max_captions", "max_batch", "max_text_chars", "max_queue"):
        positive("--" + flag.replace("_", "-"), getattr(args, flag))
    if args.max_captions > args.max_batch:
        raise UserError(f"--max-captions {args.max_captions} is more than --max-batch {args.max_batch}: one "
                        "request must fit in a batch")
    ckpts = [c if looks_like_repo_id(c) else str(expand(c)) for c in args.ckpt]
    if len(set(ckpts)) != len(ckpts):
        raise UserError("--ckpt names the same checkpoint twice: give each once")
    specs = []
    for ckpt in ckpts:
        try:
            facts = peek_checkpoint(ckpt)
        except FileNotFoundError as err:
            raise UserError(f"--ckpt {ckpt}: {one_line(err)}") from None
        except (UserError, CheckpointError):
            raise
        except Exception as err:  # torch's data-only unpickler raises IndexError, KeyError, ... on other files
            raise UserError(f"--ckpt {ckpt} is not a readable checkpoint ({type(err).__name__}: "
                            f"{one_line(err)[:200]})") from None
        check_stems(facts, args.stems_model)
        specs.append(ModelSpec(ckpt, facts.text_encoder, facts.codec))
    args.port = check_port(args.host, args.port)
    return specs


def check_stems(facts, stems_model: str) -> None:
    """A melody-conditioned checkpoint that separates stems has htdemucs' weights on disk (else one line naming the
    download), so that the first melody request does not fail."""
    if facts.melody is not None and facts.melody.get("stems", "htdemucs") != "none":
        htdemucs_files(stems_model)


def main(argv: Sequence[str] | None = None) -> int:
    """Check the arguments, load every checkpoint once, serve until interrupted."""
    args = build_parser().parse_args(pop_debug_flag(sys.argv[1:] if argv is None else argv))
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # gradio's own start-up probes, one line each
    with user_errors(CheckpointError):
        specs = check_args(args)
        os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no calls home from a local app
        from magnet_lightning.app import ui  # entry point: gradio loads only once the arguments are known good
        from magnet_lightning.app.engine import Engine  # entry point: as above

        limits = Limits(max_duration=args.max_duration, max_captions=args.max_captions, max_batch=args.max_batch,
                        max_text_chars=args.max_text_chars, max_queue=args.max_queue)
        engine = Engine.load(specs, limits, device=args.device, fast=False if args.no_fast else None,
                             allow_random_text_encoder=args.allow_random_text_encoder, stems_model=args.stems_model)
        print(f"magnet-app: serving {len(specs)} checkpoint(s) on http://{args.host}:{args.port}", flush=True)
        ui.launch(engine, host=args.host, port=args.port, share=args.share, block=True)
    return 0
