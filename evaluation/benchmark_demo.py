"""CPU demo of the published-benchmark protocol, end to end, with no download.

    python evaluation/benchmark_demo.py                       # writes outputs/benchmark_demo/

1. The demo corpus (what `python recipes/train_music.py` builds under outputs/demo/corpus, built here if absent).
2. A tiny MusicCaps-format CSV (the nine published columns) over its validation tracks, each "video" a demo track
   and each clip [start_s, end_s) of it, with the tracks as ``<ytid>.wav``: outputs/benchmark_demo/data.
3. The newest demo checkpoint under outputs/demo/runs (run the training demo first for a trained one), else a
   random-weight model of the demo's sizes saved once (announced).
4. The documented commands, run as a user would:
   magnet-evaluate --benchmark musiccaps --data outputs/benchmark_demo/data --prepare
   magnet-evaluate --benchmark musiccaps --data outputs/benchmark_demo/data --ckpt CKPT --out REPORT.json ...
   with random-weight PaSST and CLAP (the real architectures; named loudly in the log and the report) and FAD /
   KAD / FAD-inf on the demo codec's latents (random VGGish embeddings are nearly constant).
The report (JSON + Markdown) and the wall time per clip are printed at the end. The numbers only show that the
protocol runs: every weight that matters is random.
"""
from __future__ import annotations

import argparse
import csv
import shutil
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT))

from magnet_lightning.cli import evaluate  # noqa: E402
from magnet_lightning.demo.corpus import DemoConfig, prepare_demo_corpus  # noqa: E402
from magnet_lightning.demo.lora_base import demo_lora_base  # noqa: E402
from magnet_lightning.metrics.benchmarks.formats import BENCHMARKS  # noqa: E402

CONFIG = ROOT / "recipes" / "configs" / "demo_music.yaml"


def write_dataset(corpus_root: Path, data: Path, clips: int, seconds: float) -> int:
    """musiccaps-public.csv + <ytid>.wav over the demo corpus's validation tracks; returns the number of rows."""
    import json

    data.mkdir(parents=True, exist_ok=True)
    tracks = sorted((corpus_root / "audio" / "val").glob("*.wav"))[:clips]
    with open(data / "musiccaps-public.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(BENCHMARKS["musiccaps"].columns)
        for track in tracks:
            ytid = f"demo-{track.stem}"
            caption = json.loads(track.with_suffix(".json").read_text())["caption"]
            shutil.copyfile(track, data / f"{ytid}.wav")
            writer.writerow([ytid, 0.5, 0.5 + seconds, "/m/04rlf", "['demo']", caption, 0, False, True])
    return len(tracks)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", default="outputs/benchmark_demo")
    p.add_argument("--corpus", default=None, help="demo corpus folder (default: demo_music.yaml's)")
    p.add_argument("--runs", default="outputs/demo/runs", help="where the training demo's checkpoints are")
    p.add_argument("--clips", type=int, default=8)
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--bootstrap", type=int, default=200)
    args = p.parse_args(argv)
    config = yaml.safe_load(CONFIG.read_text())
    demo = {k: v for k, v in config["demo"].items() if k != "enabled"}
    if args.corpus:
        demo["root"] = args.corpus
    corpus = prepare_demo_corpus(DemoConfig(**demo))
    root, data = Path(args.root), Path(args.root) / "data"
    count = write_dataset(Path(demo["root"]), data, args.clips, args.seconds)
    module_args = {**config["model"], "codec": corpus.codec}
    ckpt = demo_lora_base(module_args, args.runs, root / "model")
    out = root / "report.json"
    prepare = ["--benchmark", "musiccaps", "--data", str(data), "--prepare"]
    run = ["--benchmark", "musiccaps", "--data", str(data), "--ckpt", ckpt, "--out", str(out), "--codec",
           corpus.codec, "--fad-embedder", "codec", "--allow-random-embedders", "--allow-random-text-encoder",
           "--batch-size", "4", "--bootstrap", str(args.bootstrap), "--fad-inf-bootstrap", "20", "--device", "cpu"]
    for command in (prepare, run):
        print("magnet-evaluate " + " ".join(command), flush=True)
        start = time.perf_counter()
        if evaluate.main(command) != 0:
            return 1
        elapsed = time.perf_counter() - start
    print(out.with_suffix(".md").read_text())
    print(f"{count} clips: generation, embedding and scoring took {elapsed:.1f} s, {elapsed / count:.1f} s per clip")
    return 0


if __name__ == "__main__":
    sys.exit(main())
