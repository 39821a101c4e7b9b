"""Load test of the interactive app (`magnet-app`): C concurrent clients, each sending R generation requests one
after the other through `gradio_client`; every request must be answered (none lost, none refused), and the
client-side latency percentiles (submission to result, queue included), the throughput and the rows of the batched
generations are reported.

    python evaluation/app_load_test.py --clients 8 --requests 3                # a tiny random model, started here
    python evaluation/app_load_test.py --clients 8 --requests 3 --seeded       # every request seeded: none batched
    python evaluation/app_load_test.py --url http://127.0.0.1:7860/ --ckpt NAME --clients 8 --requests 3

Without --url the app is started in this process on a free 127.0.0.1 port, with --ckpt (a checkpoint path or repo
id) or, without it, a tiny MAGNeT checkpoint with random weights built in a temporary folder (random T5, a tiny
random EnCodec: no download). Requests without a seed and of identical settings are batched by the app; --seeded
gives each request its own seed, so each runs alone. Exit code 1 when a request is lost or fails.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from a checkout
# torch, gradio and the package are imported inside the functions that need them, so that --help answers at once.

TINY = dict(dim=64, num_heads=4, num_layers=2, ffn_dim=128, num_codebooks=4, codebook_size=64, text_dim=32,
            subcodes_context=3)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--clients", type=int, default=8, help="concurrent clients")
    p.add_argument("--requests", type=int, default=3, help="requests per client, one after the other")
    p.add_argument("--url", default=None, help="a running app (default: start one here)")
    p.add_argument("--ckpt", default=None, help="checkpoint to serve or, with --url, to choose in the app "
                                                "(default: a tiny random one built here)")
    p.add_argument("--duration", type=float, default=1.0, help="seconds per clip")
    p.add_argument("--seeded", action="store_true", help="give every request its own seed (no batching)")
    p.add_argument("--max-batch", type=int, default=8, help="the started app's --max-batch")
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", default=None, help="also write the report here")
    return p


def tiny_checkpoint(folder: Path, seconds: float) -> Path:
    """A MAGNeT checkpoint with random weights: random T5 ('random:tiny'), a tiny random 16 kHz EnCodec (50 Hz)."""
    import torch
    from transformers import EncodecConfig, EncodecModel

    from magnet_lightning.training.lit_module import MagnetLightningModule  # entry point: after --help

    torch.manual_seed(0)
    codec = EncodecModel(EncodecConfig(sampling_rate=16000, num_filters=4, hidden_size=16, codebook_dim=16,
                                       codebook_size=64, upsampling_ratios=[8, 5, 4, 2], target_bandwidths=[1.2],
                                       num_lstm_layers=1, use_causal_conv=False, use_conv_shortcut=False))
    codec.save_pretrained(folder / "codec")
    module = MagnetLightningModule(model=TINY, text_encoder="random:tiny", codec=str(folder / "codec"),
                                   sample_rate=16000, frame_rate=50.0, segment_duration=seconds)
    path = folder / "tiny.ckpt"
    torch.save({"hyper_parameters": dict(module.hparams), "state_dict": module.state_dict()}, path)
    return path


def start_app(ckpt: str, args: argparse.Namespace):
    from magnet_lightning.app import ui  # entry point: after --help
    from magnet_lightning.app.engine import Engine  # entry point: after --help
    from magnet_lightning.app.settings import Limits  # entry point: after --help
    from magnet_lightning.cli.app import build_parser as app_parser  # entry point: after --help
    from magnet_lightning.cli.app import check_args  # entry point: after --help

    app_args = app_parser().parse_args(["--ckpt", ckpt, "--max-batch", str(args.max_batch)])
    specs = check_args(app_args)
    limits = Limits(max_duration=max(args.duration, 1e-3), max_batch=args.max_batch,
                    max_queue=max(32, args.clients * 2))
    engine = Engine.load(specs, limits, device=args.device, allow_random_text_encoder=True)
    return ui.launch(engine, host="127.0.0.1", port=app_args.port)


def page_inputs(client, ckpt: str, seconds: float, seed: int) -> list:
    """The /generate endpoint's inputs: checkpoint, caption, duration, seed, then the pairing (no partner) and every
    decoding control at the defaults the endpoint declares (the first checkpoint's)."""
    params = client.view_api(print_info=False, return_format="dict")["named_endpoints"]["/generate"]["parameters"]
    fixed = [ckpt, None, seconds, seed]
    return fixed + [p["parameter_default"] for p in params[len(fixed):]]


def run_clients(url: str, ckpt: str, args: argparse.Namespace) -> tuple[list[dict], list[str], float]:
    from gradio_client import Client

    records, failures, lock = [], [], threading.Lock()

    def client_loop(index: int) -> None:
        client = Client(url, verbose=False)
        inputs = page_inputs(client, ckpt, args.duration, -1)
        for r in range(args.requests):
            inputs[1] = f"client {index} request {r}: lo-fi piano"
            inputs[3] = index * 1000 + r if args.seeded else -1
            start = time.perf_counter()
            try:
                out = client.predict(*inputs, api_name="/generate")
            except Exception as err:  # counted: a lost or refused request fails the test
                with lock:
                    failures.append(f"client {index} request {r}: {err}")
                continue
            latency = time.perf_counter() - start
            info = out[-1]
            with lock:
                records.append({"client": index, "request": r, "latency_s": latency,
                                "server_latency_s": info["latency_s"], "batch_rows": info["batch_rows"],
                                "audio_ok": bool(out[0]) and Path(out[0]).is_file()})

    threads = [threading.Thread(target=client_loop, args=(i,)) for i in range(args.clients)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return records, failures, time.perf_counter() - start


def report(records: list[dict], failures: list[str], wall: float, args: argparse.Namespace) -> dict:
    import numpy as np

    latencies = np.array([r["latency_s"] for r in records]) if records else np.zeros(1)
    expected = args.clients * args.requests
    return {
        "clients": args.clients, "requests_per_client": args.requests, "expected": expected,
        "answered": len(records), "with_audio": sum(r["audio_ok"] for r in records), "failed": len(failures),
        "lost": expected - len(records) - len(failures), "seeded": args.seeded, "duration_s": args.duration,
        "latency_s": {f"p{q}": round(float(np.percentile(latencies, q)), 3) for q in (50, 90, 99)},
        "latency_max_s": round(float(latencies.max()), 3),
        "generation_s_median": round(float(np.median([r["server_latency_s"] for r in records] or [0])), 3),
        "batch_rows_mean": round(float(np.mean([r["batch_rows"] for r in records] or [0])), 2),
        "batch_rows_max": max([r["batch_rows"] for r in records] or [0]),
        "wall_s": round(wall, 2), "requests_per_s": round(len(records) / wall, 2),
        "failures": failures[:5], "torch_threads": __import__("torch").get_num_threads(),
        "load_average": list(os.getloadavg()),
    }


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    server, folder = None, tempfile.TemporaryDirectory(prefix="app-load-")
    ckpt = args.ckpt
    try:
        if args.url is None:
            ckpt = ckpt or str(tiny_checkpoint(Path(folder.name), args.duration))
            server = start_app(ckpt, args)
        records, failures, wall = run_clients(args.url or server.url, ckpt, args)
    finally:
        if server is not None:
            server.close()
        folder.cleanup()
    result = report(records, failures, wall, args)
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0 if result["answered"] == result["expected"] and result["with_audio"] == result["expected"] else 1


if __name__ == "__main__":
    sys.exit(main())
