"""`magnet-generate --melody`: a MusicGen-melody checkpoint in the release format writes WAVs following a melody
clip; each mistake about the melody is one line and exit code 2 before anything is loaded or written: a clip too
short, silent or at an odd sample rate, `--melody` for a checkpoint without melody conditioning, htdemucs' weights
missing."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch
from support.audiocraft_files import tiny_encodec_32khz_folder, tiny_t5_folder
from support.cli_runs import assert_one_line, in_process
from support.melody_files import MELODY_LM, htdemucs_folder

from magnet_lightning.cli.generate import main


def _clip(path, seconds=1.0, rate=32000, amplitude=0.5):
    t = np.arange(int(seconds * rate)) / rate
    sf.write(path, (amplitude * np.sin(2 * np.pi * 440 * t)).astype(np.float32), rate)
    return str(path)


@pytest.fixture
def text_only_ckpt(tmp_path):
    from support.helpers import tiny_module

    path = tmp_path / "tiny.ckpt"
    module = tiny_module(segment_duration=1.0)
    torch.save({"hyper_parameters": dict(module.hparams), "state_dict": module.state_dict()}, path)
    return str(path)


@pytest.mark.parametrize("clip,needle", [
    (dict(seconds=0.3), "shorter than one chroma window"),
    (dict(amplitude=0.0), "silent"),
    (dict(rate=4000, seconds=2.0), "4000 Hz is not an audio rate"),
])
def test_bad_melody_clips_are_one_line_before_loading(tmp_path, capfd, empty_hf_cache, clip, needle):
    out = tmp_path / "out"
    err = in_process(main, ["--ckpt", str(MELODY_LM / "state_dict.bin"), "--text", "calm piano",
                            "--allow-random-text-encoder", "--melody", _clip(tmp_path / "m.wav", **clip), "--out",
                            str(out)], capfd)
    assert_one_line(err, "--melody", needle)
    assert not out.exists()


def test_melody_for_a_text_only_checkpoint_is_one_line(tmp_path, capfd, text_only_ckpt):
    err = in_process(main, ["--ckpt", text_only_ckpt, "--text", "x", "--melody", _clip(tmp_path / "m.wav"), "--out",
                            str(tmp_path / "out")], capfd)
    assert_one_line(err, "has no melody conditioning", "facebook/musicgen-melody")


def test_missing_htdemucs_is_one_line_naming_the_download(tmp_path, capfd, empty_hf_cache):
    err = in_process(main, ["--ckpt", str(MELODY_LM / "state_dict.bin"), "--text", "x",
                            "--allow-random-text-encoder", "--melody", _clip(tmp_path / "m.wav"), "--out",
                            str(tmp_path / "out")], capfd)
    assert_one_line(err, "htdemucs", "hf download adefossez/HTDemucs htdemucs.yaml 955717e8.safetensors")


@pytest.mark.usefixtures("one_thread")
def test_generate_with_a_melody_writes_wavs_and_records_it(tmp_path):
    out = tmp_path / "out"
    args = ["--ckpt", str(MELODY_LM / "state_dict.bin"), "--text", "calm piano", "--duration", "0.2",
            "--melody", _clip(tmp_path / "m.wav", seconds=0.8, rate=44100), "--stems-model",
            str(htdemucs_folder(tmp_path / "htdemucs")), "--text-encoder", str(tiny_t5_folder(tmp_path / "t5", 768)),
            "--codec", str(tiny_encodec_32khz_folder(tmp_path / "codec")), "--seed", "0", "--out", str(out)]
    assert main(args) == 0
    audio, rate = sf.read(out / "0000_calm_piano.wav")
    record = json.loads((out / "manifest.jsonl").read_text().splitlines()[0])
    assert rate == 32000 and audio.shape[0] == 6400 and record["melody"] == str(tmp_path / "m.wav")
