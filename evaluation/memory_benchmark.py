"""Peak memory per process of loading and training real-size MAGNeT models (issue 18); not a timed test.

    python evaluation/memory_benchmark.py --json OUT.json --md OUT.md          # load (small) + training step (small)
    python evaluation/memory_benchmark.py --cases load --load-sizes small medium --json OUT.json
    python evaluation/memory_benchmark.py --cases train --train-sizes small --json OUT.json

Every variant of every case (evaluation/memory_cases.py) runs in fresh worker processes, one per rank (2 CPU ranks
over gloo for training; on CUDA one GPU per rank over NCCL), so each process's peak resident set (VmHWM; `ru_maxrss`
where there is no /proc) is that variant's alone. Per rank it records the peak RSS, the RSS right after
the imports (`baseline`: the interpreter, torch and its libraries, about 0.5 GB with a CUDA build of torch), the
model's size in the dtype it holds, the seconds of the measured work, and on CUDA `torch.cuda.max_memory_allocated`.

- load: a release-format `state_dict.bin` of magnet-small (420 M parameters) / medium (1.84 B), float16 on disk,
  random weights, written once into --workdir from the released config (tests/support/audiocraft_files.py, which reads
  ../shared/reference/released_configs); our loader in float32 / bfloat16 / float16 against the reference path
  (torch.load + randomly initialised model + load_state_dict copy) in the same run. Issue-18 targets for small: peak
  RSS <= 1.25 x the model's size in the requested dtype, time <= 0.35 x the reference's.
- train: one forward + backward + AdamW step at batch 1 x 10 s (500 frames), DDP vs FSDP2 (fully_shard per layer),
  with and without activation checkpointing.

Medium needs about 12 GB for the reference path: run it alone on a 24 GB machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from a checkout
sys.path.insert(0, str(ROOT / "tests"))  # the release-format file writer (tests/support/audiocraft_files.py)

from evaluation.memory_cases import CASES, RELEASES, RankContext, release_file
from magnet_lightning.config import MODEL_PRESETS

TARGET_RSS, TARGET_TIME = 1.25, 0.35
NOTES = ("peak_over_model", "peak_above_baseline_over_model", "time_over_reference", "before_step_rss_gb",
         "fwd_bwd_peak_rss_gb", "step_peak_rss_gb", "before_step_cuda_gb", "fwd_bwd_peak_cuda_gb", "step_peak_cuda_gb",
         "fwd_bwd_seconds", "local_parameters_m", "loss")
"""The figures a row's notes column shows, when it has them."""


def _status(field: str) -> int | None:
    """A size field of /proc/self/status in bytes (Linux), else None."""
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return None


def _rss_now() -> int:
    """This process's resident set now, bytes (Linux); the peak so far elsewhere."""
    return _status("VmRSS") or _rss_peak()


def _rss_peak() -> int:
    """The peak resident set of this process image: VmHWM on Linux. Not `ru_maxrss` there: at exec Linux folds the
    parent's peak into the child's, so a worker started by a large process would report at least the parent's."""
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB elsewhere
    return _status("VmHWM") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def worker(args: argparse.Namespace) -> None:
    """One rank of one variant: run it, then write its figures to args.out."""
    baseline = _rss_now()
    variant = json.loads(args.variant)
    cuda = args.device == "cuda"
    if args.world_size > 1:
        dist.init_process_group("nccl" if cuda else "gloo", init_method=f"tcp://127.0.0.1:{args.port}",
                                rank=args.rank, world_size=args.world_size)
    device = torch.device(f"cuda:{args.rank}" if cuda else "cpu")
    if cuda:
        torch.cuda.set_device(device)
    torch.set_num_threads(args.threads)
    figures = CASES[args.worker].run(variant, RankContext(args.rank, args.world_size, device, Path(args.workdir)))
    phases = [figures[k] for k in ("fwd_bwd_peak_rss_gb", "step_peak_rss_gb") if k in figures]  # peaks reset there
    peak = max([round(_rss_peak() / 1e9, 3), *phases])
    figures.update(rank=args.rank, peak_rss_gb=peak, baseline_rss_gb=round(baseline / 1e9, 3))
    if cuda:
        figures["cuda_max_allocated_gb"] = round(torch.cuda.max_memory_allocated(device) / 1e9, 3)
    Path(args.out).write_text(json.dumps(figures))
    if dist.is_initialized():
        dist.destroy_process_group()


def _available_gb() -> float | None:
    """MemAvailable of the machine (Linux), GB."""
    meminfo = Path("/proc/meminfo")
    if not meminfo.is_file():
        return None
    for line in meminfo.read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024 / 1e9
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_variant(case: str, variant: dict, args: argparse.Namespace) -> dict:
    """Start the variant's ranks as fresh processes; their figures, or the error of a failed rank."""
    ranks, port = variant["ranks"], _free_port()
    with tempfile.TemporaryDirectory() as tmp:
        procs = []
        for rank in range(ranks):
            cmd = [sys.executable, __file__, "--worker", case, "--variant", json.dumps(variant), "--rank", str(rank),
                   "--world-size", str(ranks), "--port", str(port), "--out", f"{tmp}/{rank}.json",
                   "--workdir", str(args.workdir), "--device", args.device, "--threads", str(args.threads)]
            procs.append(subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True))
        errors = [p.communicate(timeout=args.timeout)[1] if p.returncode is None else "" for p in procs]
        errors = [e if p.returncode else "" for e, p in zip(errors, procs)]
        results = [json.loads(Path(f"{tmp}/{r}.json").read_text()) for r in range(ranks)
                   if Path(f"{tmp}/{r}.json").is_file()]
    row = {"case": case, **variant, "per_rank": results}
    if len(results) < ranks:
        last = next((e.strip().splitlines()[-1] for e in errors if e.strip()), "a rank died (out of memory?)")
        row["error"] = f"failed: {last}"
    return row


def ensure_release_files(sizes: list[str], workdir: Path) -> None:
    """Write the release-format files the load case reads (once; reused by later runs)."""
    from support.audiocraft_files import released_size_state_dict_bin  # noqa: PLC0415  (tests/support, on sys.path above)

    workdir.mkdir(parents=True, exist_ok=True)
    for size in sizes:
        path = release_file(workdir, size)
        if not path.is_file():
            print(f"writing {path} ...", file=sys.stderr, flush=True)
            tmp = path.with_suffix(".tmp")
            released_size_state_dict_bin(tmp, RELEASES[size])
            tmp.replace(path)


def summarise(rows: list[dict]) -> None:
    """Per load variant of ours: peak RSS / model size and time / the reference's of the same size."""
    reference = {r["size"]: r["per_rank"][0] for r in rows if r["case"] == "load" and r.get("loader") == "reference"
                 and r["per_rank"]}
    for row in rows:
        if row["case"] != "load" or row.get("loader") != "ours" or not row["per_rank"]:
            continue
        fig, ref = row["per_rank"][0], reference.get(row["size"])
        fig["peak_over_model"] = round(fig["peak_rss_gb"] / fig["model_gb"], 2)
        fig["peak_above_baseline_over_model"] = round((fig["peak_rss_gb"] - fig["baseline_rss_gb"]) / fig["model_gb"],
                                                      2)
        if ref:
            fig["time_over_reference"] = round(fig["seconds"] / ref["seconds"], 3)


def _label(row: dict) -> str:
    if row["case"] == "load":
        return f"{row['loader']} {row['dtype']}"
    if row["case"] == "train":
        return f"{row['strategy']}{' + act. ckpt' if row['checkpointing'] else ''}, batch {row['batch']}"
    return json.dumps({k: v for k, v in row.items() if k not in ("case", "size", "ranks", "per_rank")})


def markdown(report: dict) -> str:
    lines = ["| case | size | variant | ranks | peak RSS / rank (GB) | RSS after imports (GB) | model (GB) | seconds "
             "| CUDA max alloc (GB) | notes |", "|---|---|---|---|---|---|---|---|---|---|"]
    for row in report["rows"]:
        ranks = row["per_rank"]
        if not ranks:
            lines.append(f"| {row['case']} | {row['size']} | {_label(row)} | {row['ranks']} | - | - | - | - | - | "
                         f"{row.get('error', 'failed')} |")
            continue
        peak = " / ".join(f"{r['peak_rss_gb']:.2f}" for r in ranks)
        cuda = " / ".join(f"{r['cuda_max_allocated_gb']:.2f}" for r in ranks if "cuda_max_allocated_gb" in r) or "-"
        first = ranks[0]
        notes = [f"{key} {first[key]}" for key in NOTES if key in first]
        lines.append(f"| {row['case']} | {row['size']} | {_label(row)} | {row['ranks']} | {peak} | "
                     f"{first['baseline_rss_gb']:.2f} | {first['model_gb']:.2f} | "
                     f"{max(r['seconds'] for r in ranks):.2f} | {cuda} | {', '.join(notes)} |")
    env = report["environment"]
    lines += ["", f"torch {env['torch']}, {env['device']}, {env['threads']} thread(s) per rank, load average "
              f"{env['load_average']}. Targets (load, small): peak RSS <= {TARGET_RSS} x model, time <= "
              f"{TARGET_TIME} x reference."]
    return "\n".join(lines) + "\n"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cases", nargs="+", default=["load", "train"], choices=sorted(CASES))
    p.add_argument("--load-sizes", nargs="+", default=["small"], choices=sorted(RELEASES))
    p.add_argument("--train-sizes", nargs="+", default=["small"], choices=sorted(MODEL_PRESETS),
                   help="model presets (tiny: a quick check of the set-up)")
    p.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "magnet_memory_benchmark",
                   help="where the release-format files are written once and reused")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--threads", type=int, default=1, help="intra-op threads per rank")
    p.add_argument("--timeout", type=float, default=1800, help="seconds per variant")
    p.add_argument("--only", nargs="+", default=[], metavar="KEY=VALUE",
                   help="run only the variants with these fields (strategy=ddp, dtype=float32, checkpointing=True)")
    p.add_argument("--ranks", type=int, help="processes of the multi-process variants (default: theirs, 2)")
    p.add_argument("--force", action="store_true", help="run variants that need more memory than is available")
    p.add_argument("--json", type=Path, help="write the report here")
    p.add_argument("--md", type=Path, help="write the Markdown table here")
    for name in ("--worker", "--variant", "--out"):  # internal: one rank of one variant
        p.add_argument(name, help=argparse.SUPPRESS)
    for name in ("--rank", "--world-size", "--port"):
        p.add_argument(name, type=int, default=0, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.worker:
        worker(args)
        return {}
    if "load" in args.cases:
        ensure_release_files(args.load_sizes, args.workdir)
    rows = []
    for case in args.cases:
        sizes = args.load_sizes if case == "load" else args.train_sizes
        for variant in CASES[case].variants(sizes):
            if any(str(variant.get(key)) != value for key, value in (o.split("=", 1) for o in args.only)):
                continue
            if args.ranks and variant["ranks"] > 1:
                variant["ranks"] = args.ranks
            start = time.perf_counter()
            needs, free = CASES[case].needs_gb(variant), _available_gb()
            if free is not None and needs > free and not args.force:
                skipped = f"skipped: needs about {needs:.1f} GB, {free:.1f} GB available (--force runs it)"
                rows.append({"case": case, **variant, "per_rank": [], "error": skipped})
            else:
                rows.append(run_variant(case, variant, args))
            print(f"{case} {variant}: {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
    summarise(rows)
    load = [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None
    report = {"environment": {"torch": torch.__version__, "device": args.device, "threads": args.threads,
                              "cpu": platform.processor() or platform.machine(), "load_average": load},
              "rows": rows}
    table = markdown(report)
    print(table)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    if args.md:
        args.md.write_text(table)
    return report


if __name__ == "__main__":
    main()
