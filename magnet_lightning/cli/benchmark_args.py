"""The evaluator's flags for the published benchmarks (``--benchmark``, ``--data``, ``--prepare``, ...), apart from its
decoding flags; `add_benchmark_arguments` is called by `cli.evaluate.build_parser`."""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from magnet_lightning.cli import checks
from magnet_lightning.errors import UserError
from magnet_lightning.metrics.benchmarks.formats import BENCHMARKS, get_benchmark


def add_benchmark_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("published benchmarks (README: Reproducing the published numbers)")
    g.add_argument("--benchmark", choices=sorted(BENCHMARKS), default=None,
                   help="evaluate on a benchmark's own metadata file and the audio downloaded into --data")
    g.add_argument("--data", default=None, help="the benchmark's download folder: its metadata CSV and audio")
    g.add_argument("--benchmark-csv", default=None, help="the metadata CSV (default: DATA/<its published name>)")
    g.add_argument("--eval-set", default=None, help="prepared eval set folder (default: DATA/eval_set-BENCHMARK)")
    g.add_argument("--prepare", action="store_true", help="cut and resample the reference clips, write the eval set, "
                   "then stop")
    g.add_argument("--allow-missing", type=int, default=0, metavar="N",
                   help="accept up to N benchmark items without usable audio (counted, listed, reported)")
    g.add_argument("--generated", default=None, help="folder of generated clips (resumable; default: OUT stem + "
                   "'_generated')")
    g.add_argument("--reference-stats", default=None,
                   help="reference statistics file or folder (default: the eval set folder; named by protocol hash)")
    g.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples of the 95 %% intervals (0: none)")
    g.add_argument("--fad-inf-bootstrap", type=int, default=100, help="bootstrap resamples of FAD-inf's interval")
    g.add_argument("--card", default=None, help="released id whose model-card figures go beside the run's "
                   "(default: --ckpt when it is one)")
    g.add_argument("--markdown", default=None, help="Markdown report (default: --out with .md)")


def check_benchmark_args(args: argparse.Namespace) -> None:
    """One-line errors for the benchmark flags, before anything is loaded."""
    spec = get_benchmark(args.benchmark)
    if args.data is None and (args.prepare or args.eval_set is None):
        raise UserError(f"--benchmark {spec.name} needs --data DIR (the folder holding {spec.csv_name} and the audio)")
    if args.prepare:
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            raise UserError("--prepare runs in one process: start it without torchrun")
        if args.data is None or not Path(args.data).is_dir():
            raise FileNotFoundError(f"--data {args.data} is not a folder")
    else:
        for flag, value in (("--ckpt", args.ckpt), ("--out", args.out)):
            if value is None:
                raise UserError(f"{flag} is required to evaluate (only --prepare runs without it)")
        checks.output_file(args.out)
        if args.prompts is not None or args.reference is not None:
            raise UserError("--benchmark takes its captions and references from the eval set: drop --prompts / "
                            "--reference")
    for flag, value in (("--allow-missing", args.allow_missing), ("--bootstrap", args.bootstrap),
                        ("--fad-inf-bootstrap", args.fad_inf_bootstrap)):
        if value < 0:
            raise UserError(f"{flag} {value}: must be 0 or more")


def paths(args: argparse.Namespace) -> dict[str, Path]:
    """The benchmark run's folders and files, from the flags and their defaults."""
    spec = get_benchmark(args.benchmark)
    data = Path(args.data) if args.data else None
    eval_set = Path(args.eval_set) if args.eval_set else data / f"eval_set-{spec.name}"
    out = Path(args.out) if args.out else None
    return {"csv": Path(args.benchmark_csv) if args.benchmark_csv else (data / spec.csv_name if data else None),
            "data": data, "eval_set": eval_set,
            "generated": Path(args.generated) if args.generated else (
                out.with_name(out.stem + "_generated") if out else None),
            "stats": Path(args.reference_stats) if args.reference_stats else eval_set,
            "markdown": Path(args.markdown) if args.markdown else (out.with_suffix(".md") if out else None)}
