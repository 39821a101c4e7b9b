"""Does the melody condition change the output? The measurement of the CPU melody demo:

    python recipes/train_music.py fit --config recipes/configs/demo_melody.yaml    # trains (see its header)
    python evaluation/melody_demo.py --out melody_demo.json

It loads the newest run of recipes/configs/demo_melody.yaml (`--run` to choose one: its last.ckpt, the adapters and
the melody projection, on its base) and generates, for every validation track of the demo corpus, a clip as long as
the track (past the 2-s segment: long-form windows) with the track as the melody and no caption, so whatever follows
the melody comes from the melody condition; `--seeds` draws per track. Each clip is then compared with the melody it
was given and with a shuffled one (another track's: the items rolled by one), by:

- `chroma_cosine`: audiocraft's chroma cosine similarity (metrics/chroma.py; argmax chroma, so the share of chroma
  frames whose strongest pitch class agrees) of the generated audio against the melody's audio;
- `chroma_cosine_codec`: the same against the melody as the codec renders it (decode(encode(melody))). With the
  demo's random-weight codec (used when facebook/encodec_32khz is not on disk) decoded audio is noise-like, so a
  pitch class read from it reflects the tokens, not the melody's notes: this is the comparison that can show an
  effect there; with the real codec both should;
- `token_agreement`: the share of first-codebook tokens equal to the melody's own tokens at the same frame.
A melody condition that changes the output gives `given` > `shuffled` for each of them.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from a checkout

from magnet_lightning.generation.generator import MagnetGenerator  # noqa: E402
from magnet_lightning.lora.files import read_adapter  # noqa: E402
from magnet_lightning.metrics.chroma import ChromaCosineSimilarity  # noqa: E402
from magnet_lightning.utils.audio import read_audio  # noqa: E402


def newest_run(root: Path) -> Path:
    runs = sorted(root.glob("*/checkpoints/last.ckpt"), key=lambda p: p.stat().st_mtime)
    if not runs:
        raise SystemExit(f"no run under {root}: train first, python recipes/train_music.py fit --config "
                         "recipes/configs/demo_melody.yaml")
    return runs[-1].parent.parent


def tracks(corpus: Path) -> tuple[torch.Tensor, int]:
    """The validation tracks [B, 1, N] of the demo corpus and their rate."""
    wavs = [read_audio(p) for p in sorted((corpus / "audio" / "val").glob("*.wav"))]
    rate = wavs[0][1]
    length = min(w.shape[-1] for w, _ in wavs)
    return torch.stack([w[:1, :length] for w, _ in wavs]), rate


def chroma_cosine(preds: torch.Tensor, targets: torch.Tensor, rate: int) -> float:
    metric = ChromaCosineSimilarity(sample_rate=rate)
    length = min(preds.shape[-1], targets.shape[-1])
    preds, targets = preds[..., :length].float(), targets[..., :length].float()
    metric.update(preds, targets, torch.full((preds.shape[0],), length), rate)
    return float(metric.compute())


def token_agreement(tokens: torch.Tensor, reference: torch.Tensor) -> float:
    frames = min(tokens.shape[-1], reference.shape[-1])
    return float((tokens[:, 0, :frames] == reference[:, 0, :frames]).float().mean())


def measure(gen: MagnetGenerator, melodies: torch.Tensor, rate: int, seeds: list[int]) -> dict:
    """Generations with each track as the melody, compared with the given and the shuffled melodies."""
    codec = gen.codec
    with torch.no_grad():
        melody_tokens = codec.encode(melodies, rate)
        rendered = codec.decode(melody_tokens).float()
    duration = melodies.shape[-1] / rate
    scores = {"chroma_cosine": {"given": [], "shuffled": []}, "chroma_cosine_codec": {"given": [], "shuffled": []},
              "token_agreement": {"given": [], "shuffled": []}}
    for seed in seeds:
        result = gen.generate([None] * melodies.shape[0], duration=duration, seed=seed, melody=list(melodies),
                              melody_sample_rate=rate)
        audio = result.audio
        for name, shift in (("given", 0), ("shuffled", 1)):
            scores["chroma_cosine"][name].append(chroma_cosine(audio, melodies.roll(shift, 0), gen.sample_rate))
            scores["chroma_cosine_codec"][name].append(chroma_cosine(audio, rendered.roll(shift, 0),
                                                                     gen.sample_rate))
            scores["token_agreement"][name].append(token_agreement(result.tokens, melody_tokens.roll(shift, 0)))
    return {metric: {k: sum(v) / len(v) for k, v in pair.items()} for metric, pair in scores.items()}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, default=None, help="a demo_melody run folder (default: the newest)")
    parser.add_argument("--runs-root", type=Path, default=Path("outputs/demo/melody_runs"))
    parser.add_argument("--corpus", type=Path, default=Path("outputs/demo/melody_corpus"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--out", type=Path, default=None, help="write the figures as JSON here")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    run = args.run or newest_run(args.runs_root)
    ckpt = run / "checkpoints" / "last.ckpt"
    base = read_adapter(ckpt).base.source
    ready = json.loads((args.corpus / "ready.json").read_text())
    gen = MagnetGenerator.from_pretrained(base, adapter=ckpt, device="cpu", codec=ready["codec"], text_encoder=False)
    melodies, rate = tracks(args.corpus)
    report = {"run": str(run), "base": base, "random_codec": ready["random_codec"], "tracks": melodies.shape[0],
              "seconds": melodies.shape[-1] / rate, "seeds": args.seeds, **measure(gen, melodies, rate, args.seeds)}
    print(json.dumps(report, indent=1))
    if args.out:
        args.out.write_text(json.dumps(report, indent=1) + "\n")
    return report


if __name__ == "__main__":
    main()
