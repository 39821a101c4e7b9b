"""Every start-up mistake at every entry point is ONE line on stderr naming the problem, exit code 2, no traceback,
found before a model is loaded and before anything is written. Five mistakes run as real subprocesses (one per
entry point); the rest go through the same handler in-process. Reruns of `generate` never duplicate manifest
records."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from support.cli_runs import DEMO, assert_one_line, in_process, train_error
from support.helpers import TINY_MODEL, tiny_module
from support.malicious import malicious_file
from support.paths import ROOT
from support.token_data import sample, write_dataset

from magnet_lightning.errors import DEBUG_ENV

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "WANDB_MODE": "offline",
       "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
ENV.pop(DEBUG_ENV, None)


@pytest.fixture(autouse=True)
def _no_debug(monkeypatch):
    monkeypatch.setenv(DEBUG_ENV, "0")


def run_script(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=cwd, env=ENV, capture_output=True, text=True, timeout=300,
                          check=False)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    """A tiny checkpoint (K=4); its weights are never loaded by these tests."""
    path = tmp_path_factory.mktemp("ckpt") / "tiny.ckpt"
    module = tiny_module(segment_duration=1.0)
    torch.save({"hyper_parameters": dict(module.hparams), "state_dict": module.state_dict()}, path)
    return path


# ------------------------------------------------------------------------------------------------- subprocesses
def test_recipe_config_typo_subprocess(tmp_path):
    proc = run_script([str(ROOT / "recipes" / "train_music.py"), "fit", "--config", str(DEMO), "--demo.enabled",
                       "false", "--model.model.dimm", "3"], tmp_path)
    assert proc.returncode == 2
    assert_one_line(proc.stderr, "model.model.dimm", "did you mean 'model.model.dim'")
    assert not (tmp_path / "outputs").exists()


def test_generate_steps_count_subprocess(ckpt, tmp_path):
    out = tmp_path / "out"
    proc = run_script(["-m", "magnet_lightning.generate", "--ckpt", str(ckpt), "--text", "x", "--steps", "2", "2",
                       "2", "--out", str(out)], tmp_path)
    assert proc.returncode == 2
    assert_one_line(proc.stderr, "--steps has 3 entries", "4 codebooks")
    assert not out.exists()


def test_tokenize_missing_input_subprocess(tmp_path):
    out = tmp_path / "tok"
    proc = run_script([str(ROOT / "data" / "tokenize_audio.py"), "--input", str(tmp_path / "absent"), "--output",
                       str(out)], tmp_path)
    assert proc.returncode == 2
    assert_one_line(proc.stderr, "absent does not exist")
    assert not out.exists()


def test_evaluate_malicious_weights_subprocess(tmp_path):
    """--vggish-ckpt pointing at a pickle with a payload: refused in one line, before the model; nothing runs."""
    from support.metric_assets import save_tiny_codec

    codec = save_tiny_codec(tmp_path / "codec")
    module = tiny_module(codec=codec, sample_rate=16000, segment_duration=1.2)
    torch.save({"hyper_parameters": dict(module.hparams), "state_dict": module.state_dict()}, tmp_path / "m.ckpt")
    (tmp_path / "refs").mkdir()
    sf.write(tmp_path / "refs" / "a.wav", (0.3 * np.sin(np.arange(20000) / 9)).astype(np.float32), 16000)
    (tmp_path / "p.csv").write_text("id,caption\na,a tone\n")
    marker = tmp_path / "marker"
    evil = malicious_file(tmp_path / "evil.pth", marker)
    report = tmp_path / "report.json"
    proc = run_script([str(ROOT / "evaluation" / "evaluate.py"), "--ckpt", str(tmp_path / "m.ckpt"), "--prompts",
                       str(tmp_path / "p.csv"), "--reference", str(tmp_path / "refs"), "--metrics", "fad",
                       "--vggish-ckpt", str(evil), "--out", str(report), "--device", "cpu"], tmp_path)
    assert proc.returncode == 2
    assert_one_line(proc.stderr, "evil.pth was refused", "exec")
    assert not marker.exists() and not report.exists()


def test_convert_missing_source_subprocess(tmp_path):
    proc = run_script(["-m", "magnet_lightning.convert", "audiocraft", str(tmp_path / "state_dict.bin"),
                       str(tmp_path / "out.ckpt")], tmp_path)
    assert proc.returncode == 2
    assert_one_line(proc.stderr, "state_dict.bin not found")
    assert not (tmp_path / "out.ckpt").exists()


def test_debug_shows_the_traceback(tmp_path):
    proc = run_script(["-m", "magnet_lightning.convert", "audiocraft", str(tmp_path / "state_dict.bin"),
                       str(tmp_path / "out.ckpt"), "--debug"], tmp_path)
    assert proc.returncode != 0 and "Traceback" in proc.stderr and "FileNotFoundError" in proc.stderr


def test_training_shard_spec_matching_nothing(tmp_path, monkeypatch, capfd):
    err = train_error(tmp_path, monkeypatch, capfd, "--data.train_shards", str(tmp_path / "none-*.tar"))
    assert_one_line(err, "none-*.tar", "matches no files")


def test_training_empty_shard_folder(tmp_path, monkeypatch, capfd):
    (tmp_path / "empty").mkdir()
    err = train_error(tmp_path, monkeypatch, capfd, "--data.train_shards", str(tmp_path / "empty"))
    assert_one_line(err, "no shard manifest", "tokenize_audio.py")


def test_training_manifest_mismatch(tmp_path, monkeypatch, capfd):
    shards = write_dataset(tmp_path / "ds", [[sample("a", 30)]])  # K=4, V=64, codec 'synthetic' at 16 kHz
    err = train_error(tmp_path, monkeypatch, capfd, "--data.train_shards", str(shards))
    assert_one_line(err, "V (codebook_size) 64 in the shards, 2048 in the model", "codec 'synthetic'",
                    "sample rate (sample_rate) 16000")


def test_training_missing_t5(tmp_path, monkeypatch, capfd):
    err = train_error(tmp_path, monkeypatch, capfd, "--model.text_encoder", str(tmp_path / "my_t5"),
                 "--model.allow_random_text_encoder", "false")
    line = assert_one_line(err, "my_t5", "not found", "--model.allow_random_text_encoder true")
    assert "hf download" not in line  # a local folder is not a hub id


def test_training_stale_checkpoint_temporaries_are_removed(tmp_path):
    """A checkpoint write killed mid-way leaves .last.ckpt.tmp<PID>; the next start removes it (rank 0)."""
    from types import SimpleNamespace

    from magnet_lightning.cli.startup import remove_stale_checkpoint_temporaries

    folder = tmp_path / "checkpoints"
    folder.mkdir()
    (folder / "last.ckpt").write_bytes(b"the good checkpoint")
    stale = folder / f".last.ckpt.tmp{2**22 + 999}"
    stale.write_bytes(b"half")
    trainer = SimpleNamespace(is_global_zero=True, checkpoint_callbacks=[SimpleNamespace(dirpath=str(folder))])
    assert remove_stale_checkpoint_temporaries(trainer) == [stale]
    assert not stale.exists() and (folder / "last.ckpt").exists()


# ------------------------------------------------------------------------------------------------- generate
def _generate(args, capfd) -> str:
    from magnet_lightning.cli.generate import main

    return in_process(main, args, capfd)


@pytest.mark.parametrize("extra,needles", [
    (["--text", "x", "--duration", "-1"], ["--duration must be a positive number, got -1"]),
    (["--prompts", "absent.txt"], ["prompt file absent.txt not found"]),
    (["--text", "x", "--top-p", "1.5"], ["--top-p must be in [0, 1], got 1.5"]),
    (["--text", "x", "--infill", "1", "2"], ["--infill needs --prompt-audio"]),
])
def test_generate_argument_mistakes(ckpt, tmp_path, monkeypatch, capfd, extra, needles):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out"
    err = _generate(["--ckpt", str(ckpt), "--out", str(out), *extra], capfd)
    assert_one_line(err, *needles)
    assert not out.exists()


def test_generate_prompt_longer_than_duration(ckpt, tmp_path, capfd):
    sf.write(tmp_path / "clip.wav", np.zeros(16000 * 3, np.float32) + 0.1, 16000)  # 3 s
    out = tmp_path / "out"
    err = _generate(["--ckpt", str(ckpt), "--text", "x", "--prompt-audio", str(tmp_path / "clip.wav"),
                     "--duration", "2", "--out", str(out)], capfd)
    assert_one_line(err, "--prompt-audio is 3.00 s, longer than the 2 s to generate")
    assert not out.exists()


def test_generate_malformed_prompt_file_names_the_line(ckpt, tmp_path, capfd):
    (tmp_path / "p.jsonl").write_text('{"text": "ok"}\n{"text": \n')
    err = _generate(["--ckpt", str(ckpt), "--prompts", str(tmp_path / "p.jsonl"), "--out", str(tmp_path / "o")],
                    capfd)
    assert_one_line(err, "p.jsonl:2: not valid JSON")


def test_generate_missing_checkpoint(tmp_path, capfd):
    err = _generate(["--ckpt", str(tmp_path / "absent.ckpt"), "--text", "x", "--out", str(tmp_path / "o")], capfd)
    assert_one_line(err, "absent.ckpt not found")
    assert not (tmp_path / "o").exists()


def test_generate_rerun_keeps_one_record_per_file(assets, tmp_path):
    from magnet_lightning.cli.generate import main

    ckpt_path, _ = assets
    out = tmp_path / "out"
    args = ["--ckpt", str(ckpt_path), "--out", str(out), "--duration", "0.5", "--steps", "1", "1", "1", "1",
            "--seed", "0", "--no-normalize"]
    main([*args, "--text", "calm piano", "--text", "drums"])
    (out / f".manifest.jsonl.tmp{2**22 + 7}").write_text("{half")  # a run killed while writing its manifest
    main([*args, "--text", "calm piano", "--text", "drums"])  # the same files again
    main([*args, "--text", "organ"])  # 0000_organ
    records = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    files = [r["file"] for r in records]
    assert sorted(files) == sorted({"0000_calm_piano.wav", "0001_drums.wav", "0000_organ.wav"})
    assert len(files) == len(set(files)) and all((out / f).is_file() for f in files)
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temp file left


# ------------------------------------------------------------------------------------------------- tokenize
def tokenize_script():
    from magnet_lightning.cli import tokenize

    return tokenize


def _tokenize(args, capfd) -> str:
    return in_process(tokenize_script().main, args, capfd)


def test_tokenize_malformed_jsonl_names_the_line(tmp_path, capfd):
    (tmp_path / "list.jsonl").write_text('{"path": "a.wav", "caption": "ok"}\n{"path": "b.wav",,}\n')
    err = _tokenize(["--input", str(tmp_path / "list.jsonl"), "--output", str(tmp_path / "tok")], capfd)
    assert_one_line(err, "list.jsonl:2: not valid JSON")
    assert not (tmp_path / "tok").exists()


def test_tokenize_rerun_after_adding_a_file(tmp_path, capfd):
    from support.tiny_codecs import tiny_hf_model

    tiny_hf_model().save_pretrained(tmp_path / "codec")
    audio = tmp_path / "audio"
    audio.mkdir()
    for i in range(3):
        sf.write(audio / f"t{i}.wav", (0.3 * np.sin(np.arange(24000) * (i + 1) / 20)).astype(np.float32), 16000)
    args = ["--input", str(audio), "--output", str(tmp_path / "tok"), "--codec", str(tmp_path / "codec"),
            "--samples-per-shard", "2", "--num-workers", "0", "--no-progress"]
    script = tokenize_script()
    assert script.main(args)["written"] == 3
    sf.write(audio / "t9.wav", (0.3 * np.sin(np.arange(24000) / 7)).astype(np.float32), 16000)
    err = in_process(script.main, args, capfd)
    assert_one_line(err, "1 new input file(s) (t9.wav)", "--incremental", "--force")
    assert script.main([*args, "--incremental"])["shards_done"] == [1]


def test_model_of_the_right_size_passes_the_checks(ckpt):
    """A control: the same checkpoint with right arguments passes every check of the generate CLI."""
    from types import SimpleNamespace

    from magnet_lightning.cli.checks import check_generate_args

    args = SimpleNamespace(infill=None, prompt_audio=None, duration=1.0, batch_size=2, num_samples=1,
                           unconditional=None, out="out", ckpt=str(ckpt), steps=[2, 1, 1, 1], temperature=None,
                           top_k=None, top_p=None, cfg_max=None, cfg_min=None, span_arrangement=None,
                           span_scoring=None, greedy=False, preset=None, prompts=None, cfg_coef=None)
    checked = check_generate_args(args, lambda a: [("0000_x", "x")])
    assert checked.overrides["decoding_steps"] == [2, 1, 1, 1] and TINY_MODEL["num_codebooks"] == 4


def test_generate_steps_are_checked_against_an_audiocraft_file(tmp_path, capfd):
    """The checkpoint's K is read from an audiocraft state_dict.bin too (xp.cfg n_q), before any model is built."""
    from support.tiny_releases import best_state, write

    from magnet_lightning.cli.checks import peek_checkpoint

    src = write(tmp_path / "state_dict.bin", best_state())
    facts = peek_checkpoint(src)
    assert (facts.num_codebooks, facts.segment_duration, facts.codec) == (4, 10.0, "facebook/encodec_32khz")
    err = _generate(["--ckpt", str(src), "--text", "x", "--steps", "9", "9", "--out", str(tmp_path / "o")], capfd)
    assert_one_line(err, "--steps has 2 entries", "4 codebooks")
    assert not (tmp_path / "o").exists()
