"""README "Your own audio on a CPU machine" runs as written: its commands, extracted from the README, run one after
the other as real processes in a fresh folder holding a few generated clips with captions and the demo's random
codec folder (what `python recipes/train_music.py` leaves at outputs/demo/corpus/codec). Then every artefact says
what was random, and the checkpoint and the export load from another folder."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile as sf
import torch
from support.paths import ROOT

SECTION = "## Your own audio on a CPU machine"


def section_commands() -> list[list[str]]:
    """The argv of every command in the section's bash block (continuation lines joined)."""
    text = (ROOT / "README.md").read_text()
    body = text[text.index(SECTION):]
    block = re.search(r"^```bash\n(.*?)^```", body, flags=re.S | re.M).group(1)
    return [shlex.split(line) for line in re.sub(r"\\\n\s*", " ", block).splitlines() if line.strip()]


def write_clips(folder: Path, seeds: range, seconds: float = 2.5) -> list:
    """Synthetic music clips (the demo's synthesiser) with .txt captions; returns the waveforms."""
    from magnet_lightning.demo.synth import draw_spec, render

    folder.mkdir(parents=True)
    wavs = []
    for seed in seeds:
        spec = draw_spec(seed)
        wav = render(spec, seconds, 32000)
        sf.write(folder / f"clip{seed}.wav", wav, 32000)
        (folder / f"clip{seed}.txt").write_text(spec.caption())
        wavs.append(wav)
    return wavs


def demo_codec(root: Path, wavs: list) -> Path:
    """The demo's random-weight codec folder, built by the demo's own code (fitted on a few clips)."""
    from magnet_lightning.demo.corpus import DemoConfig, get_codec

    _, name, is_random = get_codec(DemoConfig(fit_tracks=len(wavs)), root, wavs, 32000)
    assert is_random, "facebook/encodec_32khz is on disk here: this test is about the stand-in"
    return Path(name)


@pytest.mark.slow
def test_own_audio_section_runs_as_written(tmp_path):
    commands = section_commands()
    assert [c[1] if c[1] != "-m" else c[2] for c in commands] == [
        "data/tokenize_audio.py", "data/tokenize_audio.py", "recipes/train_music.py", "magnet_lightning.generate",
        "evaluation/evaluate.py", "magnet_lightning.export"]
    train = write_clips(tmp_path / "my_audio" / "train", range(6))
    write_clips(tmp_path / "my_audio" / "valid", range(100, 102))
    demo_codec(tmp_path / "outputs" / "demo" / "corpus", train[:4])
    for folder in ("data", "recipes", "evaluation"):
        (tmp_path / folder).symlink_to(ROOT / folder)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "WANDB_MODE": "offline", "OMP_NUM_THREADS": "2"}
    for argv in commands:
        proc = subprocess.run([sys.executable, *argv[1:]], cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=900, check=False)
        assert proc.returncode == 0, (argv, proc.stderr[-3000:])

    manifest = json.loads((tmp_path / "shards/mine/train/manifest.json").read_text())
    assert manifest["codec_random_weights"] is True
    assert manifest["codec_source"] == str((tmp_path / "outputs/demo/corpus/codec").resolve())
    ckpt = torch.load(tmp_path / "outputs/cpu_own_audio/mine/checkpoints/last.ckpt", map_location="cpu",
                      weights_only=True)
    assert ckpt["random_parts"] == ["codec", "text_encoder"]
    assert Path(ckpt["hyper_parameters"]["codec"]).is_absolute()
    records = [json.loads(line) for line in (tmp_path / "samples/mine/manifest.jsonl").read_text().splitlines()]
    assert records and all(r["random_parts"] == ["codec", "text_encoder"] and "RANDOM" in r["random_weights"]
                           and isinstance(r["seed"], int) for r in records)
    report = json.loads((tmp_path / "reports/mine.json").read_text())
    assert report["random_weights"]["codec"] and report["random_weights"]["text_encoder"]
    assert "RANDOM WEIGHTS" in report["random_weights"]["note"]
    export = tmp_path / "exports/mine"
    assert (export / "codec" / "config.json").is_file() and "RANDOM WEIGHTS" in (export / "README.md").read_text()

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for ckpt_path in (export, tmp_path / "outputs/cpu_own_audio/mine/checkpoints/last.ckpt"):
        proc = subprocess.run(
            [sys.executable, "-m", "magnet_lightning.generate", "--ckpt", str(ckpt_path), "--text", "piano",
             "--duration", "1", "--steps", "2", "1", "1", "1", "--seed", "3", "--out", "out",
             "--allow-random-text-encoder"], cwd=elsewhere, env=env, capture_output=True, text=True, timeout=600,
            check=False)
        assert proc.returncode == 0, proc.stderr[-2000:]
