"""Does the melody condition change the output? The measurement of the CPU melody demo:

    python recipes/train_music.py fit --config recipes/configs/demo_melody.yaml    # trains (see its header)
    python evaluation/melody_demo.py --out melody_demo.json

It loads the newest run of recipes/configs/demo_melody.yaml (`--run` to choose one: its last.ckpt, the adapters and
the melody projection, on its base) and generates, for every validation track of the demo corpus, a clip as long as
the track (past the 2-s segment: long-form windows) with the track as the melody and no caption, so whatever follows
the melody comes from the melody condition; `--seeds` draws per track, with the checkpoint's decoding (temperature
3.0 annealed, top-p 0.9) and at `--temperature` 1.0. Each clip is then compared with the melody it
was given and with a shuffled one (another track's: the items rolled by one), by:

- `chroma_cosine`: audiocraft's chroma cosine similarity (metrics/chroma.py; argmax chroma, so the share of chroma
  frames whose strongest pitch class agrees) of the generated audio against the melody's audio;
- `token_chroma`: the same score where the generated clip's chroma is read from its tokens instead of its audio:
  each first-codebook token stands for the mean chroma of the training audio the codec encoded to it (a lookup
  fitted on the demo corpus's shards, token and chroma aligned per frame), pooled per chroma frame. The demo's
  codec has random weights when facebook/encodec_32khz is not on disk (announced): its decoded audio is noise-like,
  so `chroma_cosine` cannot see the melody there, while the tokens still carry it (`token_chroma` of the melodies'
  own tokens, `reference`, says how much); with the real codec `chroma_cosine` is the measure;
- `token_agreement`: the share of first-codebook tokens equal to the melody's own tokens at the same frame.
A melody condition that changes the output gives `given` > `shuffled`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from a checkout

from magnet_lightning.data.pipeline import SkipCounter, iter_shard  # noqa: E402
from magnet_lightning.data.shards import resolve_shards  # noqa: E402
from magnet_lightning.generation.generator import MagnetGenerator  # noqa: E402
from magnet_lightning.lora.files import read_adapter  # noqa: E402
from magnet_lightning.metrics.chroma import ChromaCosineSimilarity  # noqa: E402
from magnet_lightning.models.melody import chroma_at_frames, frame_indices  # noqa: E402
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


def token_chroma_table(shards: str, frame_rate: float, chroma_rate: float, bins: int, size: int) -> torch.Tensor:
    """[V, C]: the mean chroma of the training frames the codec encoded to each first-codebook token (the mean of
    all frames for a token never seen)."""
    sums, counts = torch.zeros(size, bins, dtype=torch.float64), torch.zeros(size, dtype=torch.float64)
    for url in resolve_shards(shards).urls:
        for codes, meta in iter_shard(url, SkipCounter(), 4, size, bins):
            rows = chroma_at_frames(torch.from_numpy(meta["chroma"])[None], codes.shape[1], frame_rate, chroma_rate)[0]
            tokens = torch.from_numpy(codes[0].astype("int64"))
            sums.index_add_(0, tokens, rows.double())
            counts.index_add_(0, tokens, torch.ones(len(tokens), dtype=torch.float64))
    mean = sums.sum(0) / counts.sum()
    return torch.where(counts[:, None] > 0, sums / counts.clamp(min=1)[:, None], mean).float()


def token_chroma_score(tokens: torch.Tensor, melody_chroma: torch.Tensor, table: torch.Tensor, frame_rate: float,
                       chroma_rate: float) -> float:
    """The share of chroma frames whose strongest pitch class, read from the tokens [B, K, T] through `table` and
    pooled per chroma frame, is the melody's (melody_chroma [B, Tc, C], one-hot)."""
    rows = table[tokens[:, 0]]  # [B, T, C]
    index = frame_indices(tokens.shape[-1], frame_rate, chroma_rate, melody_chroma.shape[1])[0]  # [T]
    agree, total = 0.0, 0
    for frame in index.unique().tolist():
        pooled = rows[:, index == frame].mean(1).argmax(-1)  # [B]
        agree += float((pooled == melody_chroma[:, frame].argmax(-1)).sum())
        total += pooled.numel()
    return agree / total


def token_agreement(tokens: torch.Tensor, reference: torch.Tensor) -> float:
    frames = min(tokens.shape[-1], reference.shape[-1])
    return float((tokens[:, 0, :frames] == reference[:, 0, :frames]).float().mean())


def measure(gen: MagnetGenerator, melodies: torch.Tensor, rate: int, seeds: list[int], train_shards: str,
            **decoding) -> dict:
    """Generations with each track as the melody, compared with the given and the shuffled melodies."""
    extractor, frame_rate = gen.melody_extractor, gen.frame_rate
    chroma_rate = extractor.cfg.chroma_rate
    with torch.no_grad():
        melody_tokens = gen.codec.encode(melodies, rate)
    melody_chroma = extractor.batch_chroma(list(melodies), rate)
    table = token_chroma_table(train_shards, frame_rate, chroma_rate, extractor.cfg.n_chroma,
                               gen.model.cfg.codebook_size)
    scores = {name: {"given": [], "shuffled": []} for name in ("chroma_cosine", "token_chroma", "token_agreement")}
    for seed in seeds:
        result = gen.generate([None] * melodies.shape[0], duration=melodies.shape[-1] / rate, seed=seed,
                              melody=list(melodies), melody_sample_rate=rate, **decoding)
        for name, shift in (("given", 0), ("shuffled", 1)):
            scores["chroma_cosine"][name].append(chroma_cosine(result.audio, melodies.roll(shift, 0),
                                                               gen.sample_rate))
            scores["token_chroma"][name].append(token_chroma_score(result.tokens, melody_chroma.roll(shift, 0), table,
                                                                   frame_rate, chroma_rate))
            scores["token_agreement"][name].append(token_agreement(result.tokens, melody_tokens.roll(shift, 0)))
    report = {metric: {k: sum(v) / len(v) for k, v in pair.items()} for metric, pair in scores.items()}
    report["token_chroma"]["reference"] = token_chroma_score(melody_tokens, melody_chroma, table, frame_rate,
                                                             chroma_rate)
    return report


def _temperature(value: str) -> float | None:
    return None if value.lower() == "none" else float(value)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, default=None, help="a demo_melody run folder (default: the newest)")
    parser.add_argument("--runs-root", type=Path, default=Path("outputs/demo/melody_runs"))
    parser.add_argument("--corpus", type=Path, default=Path("outputs/demo/melody_corpus"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--temperature", type=_temperature, nargs="+", default=[None, 1.0],
                        help="decoding temperatures to measure with ('none': the checkpoint's, 3.0 annealed)")
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
              "seconds": melodies.shape[-1] / rate, "seeds": args.seeds}
    for temperature in args.temperature:
        decoding = {} if temperature is None else {"temperature": temperature}
        key = "checkpoint_decoding" if temperature is None else f"temperature_{temperature:g}"
        report[key] = measure(gen, melodies, rate, args.seeds, str(args.corpus / "shards" / "train"), **decoding)
    print(json.dumps(report, indent=1))
    if args.out:
        args.out.write_text(json.dumps(report, indent=1) + "\n")
    return report


if __name__ == "__main__":
    main()
