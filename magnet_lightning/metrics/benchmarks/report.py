"""The benchmark report as a Markdown table: this run's figures with their 95 % intervals beside the model card's."""
from __future__ import annotations

from typing import Any

ROWS = (  # (metric key, label, the card's key or None)
    ("fad", "FAD ({distribution})", "fad"),
    ("kl", "KL (PaSST, ref ‖ gen)", "kl"),
    ("clap", "CLAP score", "clap"),
    ("kad", "KAD ({distribution}, ×100)", None),
    ("fad_inf", "FAD∞ ({distribution})", None),
    ("kl_gen_ref", "KL (PaSST, gen ‖ ref)", None),
    ("chroma_cosine", "Chroma cosine (melody: its reference)", None),
)


def _value(entry: dict[str, Any] | None) -> tuple[str, str]:
    if not entry:
        return "–", "–"
    ci = entry.get("ci95")
    return f"{entry['value']:.4g}", (f"[{ci[0]:.4g}, {ci[1]:.4g}]" if ci else "–")


def _generation(gen: dict[str, Any]) -> str:
    if not gen.get("calls"):
        return "Generation: every clip was already generated (resumed run; timings of the earlier runs below)."
    memory = gen["peak_memory_bytes"] / 2**30
    return (f"Generation: {gen['clips']} clips in {gen['calls']} calls of batch {gen['batch_size']} on "
            f"{gen['world_size']} rank(s) ({gen['device']}): latency per call {gen['latency_mean']:.3g} s (mean), "
            f"real-time factor {gen['rtf']:.3g} (compute seconds per second of audio), peak memory {memory:.2f} GiB.")


def markdown(report: dict[str, Any]) -> str:
    """A page a person reads: what was measured on what, then the table."""
    emb = report["embedders"]
    dist = emb.get("distribution", {}).get("name", "–")
    card = report.get("card")
    lines = [f"# {report['benchmark']}: {report['checkpoint']}", ""]
    if report["random_weights"]["note"]:
        lines += [f"**{report['random_weights']['note']}**", ""]
    ref = report["reference_set"]
    lines += [f"n = {report['n']} clips of {report['clip_seconds_mean']:.3g} s on average (the protocol's "
              f"{report['clip_seconds']:g} s) at {report['sample_rate']} Hz; reference set {ref['eval_set']} "
              f"(checksum {ref['checksum'][:12]}, "
              f"{sum(ref['skipped'].values())} benchmark items without audio); embedders: " +
              ", ".join(f"{role} {e['name']}{' (RANDOM WEIGHTS)' if e['random'] else ''}" for role, e in emb.items()) +
              f"; intervals: bootstrap over clips, {report['metrics'].get('resamples', 0)} resamples "
              f"({report['metrics'].get('fad_inf_resamples', 0)} for FAD∞).", ""]
    card_head = f"model card ({card['id']})" if card else "model card"
    lines += [f"| figure | this run | 95 % interval | {card_head} |", "|---|---|---|---|"]
    for key, label, card_key in ROWS:
        entry = report["metrics"].get(key)
        if entry is None:
            continue
        value, ci = _value(entry)
        published = card.get(card_key) if card and card_key else None
        lines.append(f"| {label.format(distribution=dist)} | {value} | {ci} | "
                     f"{'–' if published is None else f'{published:g}'} |")
    lines += ["", _generation(report["generation"])]
    if card:
        lines += ["", f"Card figures: {card['source']}; FAD there is audiocraft's TensorFlow VGGish pipeline."]
    return "\n".join(lines) + "\n"
