"""Build (once, cached) the demo corpus: synthetic captioned music -> WAV + JSON sidecars -> EnCodec token shards.

The codec is the configured one (default ``facebook/encodec_32khz``) when its weights are on disk. Otherwise the
*same architecture* is built with random weights, announced loudly, its codebooks fitted to the corpus with
`codec_fit.fit_codebooks` (so tokens carry information) and saved under ``ROOT/codec``, so training, the metrics
callback and generation all encode and decode with one and the same codec.

Concurrency: the first process to take ``ROOT/.lock`` builds; others (DDP ranks started by torchrun or SLURM) wait
for ``ROOT/ready.json``. A crashed build leaves no ready.json; delete the stale lock (path printed) and rerun.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from magnet_lightning.codec.codecs import HFEncodecCodec, load_codec
from magnet_lightning.codec.fit import fit_codebooks
from magnet_lightning.codec.melody import MelodyExtractor
from magnet_lightning.config import MelodyConfig
from magnet_lightning.data.tokenize import TokenizeOptions, tokenize_dataset
from magnet_lightning.demo.synth import draw_spec, render
from magnet_lightning.errors import UserError
from magnet_lightning.utils.provenance import RANDOM_MARKER

log = logging.getLogger(__name__)

BANNER = "!" * 88
# The MusicGen/MAGNeT 32 kHz EnCodec (transformers' conversion values); used when its weights are not on disk.
ENCODEC_32KHZ_CONFIG = {"sampling_rate": 32000, "audio_channels": 1, "codebook_size": 2048, "num_filters": 64,
                            "upsampling_ratios": [8, 5, 4, 4], "target_bandwidths": [2.2], "use_causal_conv": False,
                            "normalize": False, "use_conv_shortcut": False}
RANDOM_CODEC_ARCHS = {"facebook/encodec_32khz": ENCODEC_32KHZ_CONFIG}


@dataclass
class DemoConfig:
    """The demo corpus. `enabled: true` makes the recipe build it (once) and point `data` and `model.codec` at it."""

    enabled: bool = False
    """Build the corpus and train on it (the recipe's data and codec settings are replaced)."""
    root: str = "outputs/demo"
    """Cache folder of the corpus (audio, shards, fitted codec); reused when its settings match."""
    num_train: int = 48
    """Training tracks."""
    num_val: int = 8
    """Validation tracks."""
    track_seconds: float = 6.0
    """Length of every track in seconds."""
    codec: str = "facebook/encodec_32khz"
    """Codec name or local path; missing weights -> same architecture, random weights, fitted codebooks (loudly)."""
    fit_tracks: int = 16
    """Tracks used to fit the codebooks of a random-weight codec."""
    seed: int = 0
    """Seed of the synthetic tracks and captions."""
    chroma: bool = False
    """Also store each track's chroma in the shards (melody conditioning; stems 'none': no stem model needed)."""
    mix: str = "full"
    """'full': melody, chords, bass and drums; 'melody': the melody line alone (the melody demo: one clear pitch at
    a time, so chroma and tokens go together)."""
    base_steps: int = 0
    """A LoRA demo without a demo checkpoint of its sizes: train a base of these sizes for this many steps on the
    corpus (without melody conditioning) instead of adapting a random-weight one (0)."""


@dataclass
class DemoCorpus:
    train_shards: str
    val_shards: str
    codec: str
    """What `load_codec` needs to get this exact codec back (hub name or the saved random codec's folder)."""
    random_codec: bool
    val_captions: list[str]


def _settings(cfg: DemoConfig) -> dict:
    out = asdict(cfg)
    for key in ("enabled", "root", "base_steps"):  # not settings of the corpus
        out.pop(key)
    for key, default in (("chroma", False), ("mix", "full")):  # corpora built before these existed: the same
        if out[key] == default:
            out.pop(key)
    return out


def write_tracks(folder: Path, seeds: range, seconds: float, sample_rate: int, mix: str = "full") -> list[np.ndarray]:
    """Render one WAV + JSON sidecar (caption, metadata) per seed into `folder`; returns the waveforms [N]."""
    import soundfile as sf

    folder.mkdir(parents=True, exist_ok=True)
    wavs = []
    for seed in seeds:
        spec = draw_spec(seed)
        wav = render(spec, seconds, sample_rate, mix)
        sf.write(folder / f"track{seed:05d}.wav", wav, sample_rate)
        (folder / f"track{seed:05d}.json").write_text(json.dumps({"caption": spec.caption(mix), **spec.metadata()}))
        wavs.append(wav)
    return wavs


def get_codec(cfg: DemoConfig, root: Path, fit_wavs: list[np.ndarray], sample_rate: int):
    """(codec, name to reload it, is_random): the real codec if available, else a fitted random one saved to disk."""
    import torch


    try:
        return load_codec(cfg.codec), cfg.codec, False
    except FileNotFoundError as err:
        if cfg.codec not in RANDOM_CODEC_ARCHS:
            raise
        reason = " ".join(str(err).split())
    from transformers import EncodecConfig, EncodecModel

    log.warning("\n%s\nCODEC %r NOT FOUND (%s)\n-> using the SAME ARCHITECTURE WITH RANDOM WEIGHTS, codebooks "
                "fitted by k-means to the demo corpus.\nTokens carry information, but decoded audio will sound like "
                "noise.\n"
                "For real audio, download it (`hf download %s`) and delete %s.\n%s",
                BANNER, cfg.codec, reason, cfg.codec, root, BANNER)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        model = EncodecModel(EncodecConfig(**RANDOM_CODEC_ARCHS[cfg.codec]))
    codec = HFEncodecCodec(model, name="random-encodec_32khz")
    fit_codebooks(codec, [torch.from_numpy(w)[None] for w in fit_wavs], sample_rate, seed=cfg.seed)
    target = root / "codec"
    model.save_pretrained(target)
    (target / RANDOM_MARKER).write_text(json.dumps({
        "random_weights": True, "architecture": cfg.codec, "seed": cfg.seed,
        "note": "random encoder/decoder weights, codebooks fitted by k-means to the demo corpus: decoded audio is "
                "noise-like; for real audio use the real codec"}, indent=2) + "\n")
    return load_codec(str(target)), str(target.resolve()), True


def _build(cfg: DemoConfig, root: Path) -> dict:

    sample_rate = 32000
    t0 = time.time()
    train = write_tracks(root / "audio" / "train", range(cfg.num_train), cfg.track_seconds, sample_rate, cfg.mix)
    val = write_tracks(root / "audio" / "val", range(100_000, 100_000 + cfg.num_val), cfg.track_seconds, sample_rate,
                       cfg.mix)
    log.warning("demo corpus: rendered %d + %d tracks of %.1f s in %.1f s", len(train), len(val), cfg.track_seconds,
                time.time() - t0)
    codec, codec_name, is_random = get_codec(cfg, root, train[: cfg.fit_tracks], sample_rate)
    opts = TokenizeOptions(samples_per_shard=max(1, -(-cfg.num_train // 4)), batch_size=8, num_workers=0,
                           progress=False)
    t1 = time.time()
    chroma = MelodyExtractor(MelodyConfig(sample_rate=codec.sample_rate, stems="none")) if cfg.chroma else None
    for split in ("train", "val"):
        summary = tokenize_dataset(root / "audio" / split, root / "shards" / split, codec, name=f"demo{split}",
                                   opts=opts, chroma=chroma)
        if summary["manifest"] is None or summary["skipped"]:
            raise RuntimeError(f"tokenizing the demo {split} split failed: {summary}")
    log.warning("demo corpus: tokenized in %.1f s with %s", time.time() - t1, codec_name)
    val_captions = [json.loads(p.read_text())["caption"] for p in sorted((root / "audio" / "val").glob("*.json"))]
    return {"settings": _settings(cfg), "codec": codec_name, "random_codec": is_random, "val_captions": val_captions,
            "seconds": round(time.time() - t0, 1)}


def _corpus(root: Path, ready: dict) -> DemoCorpus:
    return DemoCorpus(str((root / "shards" / "train").resolve()), str((root / "shards" / "val").resolve()),
                      ready["codec"], ready["random_codec"], ready["val_captions"])


def prepare_demo_corpus(cfg: DemoConfig, wait_seconds: float = 1800.0) -> DemoCorpus:
    """Build the corpus under `cfg.root` unless a finished one with the same settings is there; return its paths."""
    root = Path(cfg.root).expanduser()
    ready_path, lock = root / "ready.json", root / ".lock"
    if ready_path.is_file():
        ready, settings = json.loads(ready_path.read_text()), _settings(cfg)
        if ready["settings"] == settings:
            return _corpus(root, ready)
        old = ready["settings"]
        differ = sorted(k for k in set(old) | set(settings) if old.get(k) != settings.get(k))
        raise UserError(f"{root} holds a demo corpus built with other settings ({', '.join(differ)} differ): delete "
                        f"it (rm -r {root}) to rebuild it, or choose another --demo.root")
    root.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        deadline = time.time() + wait_seconds
        log.warning("another process is building the demo corpus (%s); waiting", lock)
        while not ready_path.is_file():
            if time.time() > deadline:
                raise TimeoutError(f"no {ready_path} after {wait_seconds:.0f} s; if no build is running, delete {lock}")
            time.sleep(2)
        return prepare_demo_corpus(cfg, wait_seconds)
    try:
        os.write(fd, str(os.getpid()).encode())
        ready = _build(cfg, root)
        tmp = ready_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(ready, indent=1))
        os.replace(tmp, ready_path)
    finally:
        os.close(fd)
        lock.unlink(missing_ok=True)
    return _corpus(root, ready)
