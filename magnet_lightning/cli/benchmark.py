"""``magnet-evaluate --benchmark musiccaps|song-describer|audiocaps``: the model cards' protocol end to end.

Order: flags; ``--prepare`` (then stop); the eval set (checksums, sample rate); the checkpoint's facts; the embedders
(their weights); the reference statistics file if one exists (its protocol); only then the model. Then: generate the
missing clips (ranks share the batches), embed the references once (cached under the protocol's hash) and the
generated clips (ranks share the items), and on rank 0 the figures, the JSON report and the Markdown table.
"""
from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from magnet_lightning.cli import checks
from magnet_lightning.cli.benchmark_args import check_benchmark_args, paths
from magnet_lightning.cli.distributed import init_distributed
from magnet_lightning.cli.evaluate_melody import add_benchmark_chroma, benchmark_melody
from magnet_lightning.codec.codecs import load_codec
from magnet_lightning.errors import UserError
from magnet_lightning.generation.generator import MagnetGenerator
from magnet_lightning.metrics.benchmarks.cards import card_for
from magnet_lightning.metrics.benchmarks.evalset import (
    load_eval_set,
    load_stats,
    protocol_hash,
    save_stats,
    stats_path,
    unpack,
)
from magnet_lightning.metrics.benchmarks.formats import get_benchmark
from magnet_lightning.metrics.benchmarks.generate import check_settings, generate_missing
from magnet_lightning.metrics.benchmarks.prepare import prepare
from magnet_lightning.metrics.benchmarks.report import markdown
from magnet_lightning.metrics.benchmarks.score import ROLES, embed_clip, figures
from magnet_lightning.metrics.suite import build_embedder
from magnet_lightning.utils.audio import read_audio
from magnet_lightning.utils.provenance import describe_random

log = logging.getLogger("evaluate")
PROTOCOL_VERSION = 1


def build_embedders(args: argparse.Namespace, spec: Any, kwargs: dict[str, dict], codec: Any) -> dict[str, Any]:
    """role -> embedder: the distribution embedder (--fad-embedder), PaSST (the benchmark's window) and CLAP; every
    missing weight file is named in one error."""
    names = {"distribution": args.fad_embedder, "kl": args.kl_embedder, "clap": args.clap_embedder}
    built, missing = {}, []
    for role, name in names.items():
        options = dict(kwargs.get(name, {}))
        if name in ("passt", "passt_embedding") and "tiny" not in options:
            options.setdefault("pretrained_length", spec.passt_length)
        if name == "codec":
            options.setdefault("codec", codec)
        try:
            built[role] = build_embedder(name, args.allow_random_embedders, args.seed, **options)
        except OSError as err:
            missing.append(f"{name}: " + " ".join(str(err).split()))
    if missing:
        raise FileNotFoundError(f"{len(missing)} embedder weight file(s) missing: " + " | ".join(missing))
    if built["distribution"].kind != "embedding":
        raise UserError(f"--fad-embedder {args.fad_embedder}: a classifier; FAD / KAD need embeddings (vggish, "
                        "passt_embedding, clap or codec)")
    if built["kl"].kind != "probabilities" or not callable(getattr(built["clap"], "embed_text", None)):
        raise UserError(f"--kl-embedder {args.kl_embedder} must give label distributions and --clap-embedder "
                        f"{args.clap_embedder} must embed text")
    return built


def fingerprint(embedder: Any) -> str:
    """The embedder's weights in one string (sum of |w| and the parameter count): another file, another string."""
    total, count = 0.0, 0
    for tensor in list(embedder.parameters()) + list(embedder.buffers()):
        if tensor.is_floating_point():
            total += float(tensor.detach().double().abs().sum())
            count += tensor.numel()
    return f"{total:.9e}/{count}"


def protocol(spec: Any, evalset: Any, embedders: dict[str, Any], kwargs: dict[str, dict]) -> dict[str, Any]:
    return {"version": PROTOCOL_VERSION, "benchmark": spec.name, "eval_set": evalset.checksum(),
            "sample_rate": evalset.sample_rate,
            "embedders": {role: {"name": e.name, "sample_rate": e.sample_rate, "dim": e.dim,
                                 "random": bool(getattr(e, "random_weights", False)), "weights": fingerprint(e),
                                 "options": kwargs.get(e.name, {}), "window": getattr(e, "max_samples", None)}
                          for role, e in embedders.items()}}


def gather(obj: Any) -> list[Any]:
    if not torch.distributed.is_initialized():
        return [obj]
    out = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(out, obj)
    return out


def embed_share(files: list[Path], rate: int, embedders: dict[str, Any], rank: int, world: int,
                texts: list[str] | None = None) -> dict[str, list] | None:
    """Features of every file (this rank embeds every W-th one); the whole list on rank 0, None elsewhere."""
    mine = {}
    with torch.no_grad():
        for index in range(rank, len(files), world):
            wav, file_rate = read_audio(files[index])
            if file_rate != rate:
                raise UserError(f"{files[index]}: {file_rate} Hz, expected {rate} Hz (sample-rate mismatch)")
            mine[index] = embed_clip(wav, rate, embedders)
            if texts is not None:
                mine[index]["text"] = embedders["clap"].embed_text([texts[index]]).float().cpu()
    parts = gather(mine)
    if rank != 0:
        return None
    merged = {k: v for part in parts for k, v in part.items()}
    return {role: [merged[i][role] for i in range(len(files))] for role in merged[0]}


def timing_summary(timings: list[dict], args: argparse.Namespace, world: int, device: torch.device) -> dict:
    calls = sum(t["calls"] for t in timings)
    seconds, audio = sum(t["seconds"] for t in timings), sum(t["audio_seconds"] for t in timings)
    latencies = [x for t in timings for x in t["latencies"]]
    return {"calls": calls, "clips": sum(t["clips"] for t in timings), "audio_seconds": audio, "seconds": seconds,
            "rtf": seconds / audio if audio else None, "latency_mean": sum(latencies) / len(latencies) if latencies
            else None, "latency_max": max(latencies, default=None),
            "peak_memory_bytes": max(t["peak_memory_bytes"] for t in timings), "batch_size": args.batch_size,
            "world_size": world, "device": str(device.type),
            "cost_per_clip_seconds": seconds * 1.0 / max(1, sum(t["clips"] for t in timings))}


def load_checked_eval_set(args: argparse.Namespace, spec: Any, where: dict[str, Path]) -> Any:
    evalset = load_eval_set(where["eval_set"], spec.name)
    skipped = {reason: len(ids) for reason, ids in evalset.manifest["skipped"].items()}
    if sum(skipped.values()) > args.allow_missing:
        raise UserError(f"the eval set {where['eval_set']} lacks {sum(skipped.values())} {spec.name} items "
                        f"({skipped}): pass --allow-missing {sum(skipped.values())} to evaluate without them")
    return evalset


def check_model_rate(codec: Any, evalset: Any, spec: Any) -> None:
    if int(codec.sample_rate) != evalset.sample_rate:
        raise UserError(f"sample-rate mismatch: the checkpoint's codec makes {codec.sample_rate} Hz audio, the "
                        f"{spec.name} eval set is {evalset.sample_rate} Hz (music models: musiccaps / "
                        "song-describer; audio models: audiocaps)")


def settings_of(args: argparse.Namespace, decoding: dict, gen: Any, config: Any) -> dict[str, Any]:
    return {"ckpt": str(args.ckpt), "benchmark": args.benchmark, "seed": args.seed, "batch_size": args.batch_size,
            "lufs": args.lufs, "decoding_overrides": decoding, "decoding": repr(config), "codec": gen.codec.name,
            "text_encoder": args.text_encoder, "extend_stride": args.extend_stride, "fast_decoding": gen.fast,
            "sample_rate": gen.sample_rate}


def run(args: argparse.Namespace, decoding_overrides: Callable, embedder_kwargs: Callable) -> dict[str, Any] | None:
    """The benchmark evaluation; the report on rank 0 (None elsewhere and after ``--prepare``)."""
    check_benchmark_args(args)
    spec, where = get_benchmark(args.benchmark), paths(args)
    if args.prepare:
        prepare(spec, where["csv"], where["data"], where["eval_set"], args.allow_missing)
        return None
    evalset = load_checked_eval_set(args, spec, where)
    facts = checks.peek_checkpoint(args.ckpt)
    decoding = decoding_overrides(args)
    preset = decoding.pop("preset", None)
    longest = max(int(i["samples"]) for i in evalset.items) / evalset.sample_rate
    checks.plan_of(facts, args, {}, duration=longest)  # every generation option checked once, before loading
    checks.check_text_encoder(facts, args.text_encoder, args.allow_random_text_encoder)
    rank, world, device = init_distributed(args.device)
    codec = load_codec(args.codec or facts.codec, device=device)
    check_model_rate(codec, evalset, spec)
    kwargs = embedder_kwargs(args)
    embedders = {role: e.to(device) for role, e in build_embedders(args, spec, kwargs, codec).items()}
    proto = protocol(spec, evalset, embedders, kwargs)
    stats_file = stats_path(where["stats"], proto)
    stats = load_stats(stats_file, proto) if stats_file.is_file() else None
    gen = MagnetGenerator.from_pretrained(args.ckpt, device=device, text_encoder=args.text_encoder, codec=codec,
                                          allow_random_text_encoder=args.allow_random_text_encoder,
                                          fast=False if args.no_fast else None)
    options = {**decoding, **({"preset": preset} if preset else {}),
               **({"extend_stride": args.extend_stride} if args.extend_stride is not None else {})}
    settings = settings_of(args, {**decoding, "preset": preset}, gen, gen.decoding_config(longest, preset, **decoding))
    melody = benchmark_melody(args, facts, evalset, settings)
    check_settings(where["generated"], settings, rank)
    timing = generate_missing(gen, evalset.items, where["generated"], rank=rank, world_size=world,
                              batch_size=args.batch_size, seed=args.seed, lufs=args.lufs, options=options,
                              melody=melody)
    timings = gather(timing)
    ref = None if stats is None else {role: unpack(stats["features"][role]) for role in ROLES}
    if ref is None:
        ref = embed_share([evalset.path(i) for i in evalset.items], evalset.sample_rate, embedders, rank, world)
        if rank == 0:
            save_stats(stats_file, proto, [i["id"] for i in evalset.items], ref)
    generated = embed_share([where["generated"] / f"{i['id']}.wav" for i in evalset.items], evalset.sample_rate,
                            embedders, rank, world, texts=[i["caption"] for i in evalset.items])
    if rank != 0:
        return None
    metrics, per_clip = figures(ref, generated, resamples=args.bootstrap, inf_resamples=args.fad_inf_bootstrap,
                                seed=args.seed)
    if melody is not None:
        add_benchmark_chroma(args, evalset, where["generated"], metrics, per_clip)
    summary = timing_summary(timings, args, world, device)
    return assemble(args, spec, evalset, where, stats_file, proto, embedders, metrics, per_clip, summary,
                    settings, facts, gen)


def assemble(args, spec, evalset, where, stats_file, proto, embedders, metrics, per_clip, summary, settings, facts,
             gen) -> dict[str, Any]:
    """The JSON report (see README: Reproducing the published numbers)."""
    rate = evalset.sample_rate
    random_embedders = [e.name for e in embedders.values() if getattr(e, "random_weights", False)]
    random_parts = [p for p, on in (("codec", getattr(gen.codec, "random_weights", False)),
                                    ("text_encoder", getattr(gen.text_encoder, "is_random", False))) if on]
    found = card_for(args.card or args.ckpt, spec.name)
    history = where["generated"] / "timing.jsonl"
    if summary["calls"]:
        with open(history, "a", encoding="utf-8") as f:
            f.write(json.dumps(summary) + "\n")
    return {
        "benchmark": spec.name, "checkpoint": str(args.ckpt), "n": len(evalset.items),
        "clip_seconds": spec.clip_seconds,
        "clip_seconds_mean": sum(int(i["samples"]) for i in evalset.items) / rate / len(evalset.items),
        "sample_rate": rate,
        "embedders": {role: {"name": e.name, "random": bool(getattr(e, "random_weights", False)),
                             "sample_rate": e.sample_rate, "dim": e.dim} for role, e in embedders.items()},
        "reference_set": {"eval_set": str(where["eval_set"]), "checksum": evalset.checksum(),
                          "csv": evalset.manifest["csv"],
                          "skipped": {k: len(v) for k, v in evalset.manifest["skipped"].items()},
                          "skipped_ids": evalset.manifest["skipped"], "stats_file": str(stats_file),
                          "protocol_hash": protocol_hash(proto)},
        "metrics": metrics,
        "card": None if found is None else {"id": found[0], "fad": found[1].fad, "kl": found[1].kl,
                                            "clap": found[1].clap, "source": found[1].source},
        "generation": summary, "generated": str(where["generated"]),
        "per_clip": {item["id"]: scores for item, scores in zip(evalset.items, per_clip)},
        "settings": settings,
        "seeds": {"base": args.seed, "rule": "caption i has seed + i; a batch is generated with its first caption's "
                  "seed (batch_size 1: each caption with its own)"},
        "random_weights": {"embedders": random_embedders, "parts": random_parts,
                           "checkpoint_trained_with": list(facts.random_parts),
                           "note": describe_random(random_parts + list(facts.random_parts) +
                                                   [f"{n} embedder" for n in random_embedders])},
    }


def write_markdown(report: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(markdown(report), encoding="utf-8")
    tmp.replace(path)

