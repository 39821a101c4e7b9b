"""The same command gives the same numbers (issue #27), through the demo recipe shrunk to a tiny model and corpus:
a run that builds the demo corpus equals its `--reproduce` rerun that finds it, and a run with one loader worker; a
two-worker run equals its rerun; a run resumed once is replayed resume included; the run record holds what the run
needs; a resume with nothing left says so in one line and writes nothing; a difference is named in one line."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
import yaml
from support.paths import ROOT

from magnet_lightning.callbacks.metrics_trail import read_trail
from magnet_lightning.cli.reproduce import compare
from magnet_lightning.cli.train import main

DEMO = str(ROOT / "recipes" / "configs" / "demo_music.yaml")
STEPS = 4


def tiny_override(tmp_path: Path, runs: str = "runs") -> Path:
    override = {
        "run": {"root": str(tmp_path / runs)},
        "demo": {"root": str(tmp_path / "corpus"), "num_train": 3, "num_val": 1, "track_seconds": 1.2,
                 "fit_tracks": 2},
        "generate_after_fit": 0,
        "trainer": {
            "max_steps": STEPS, "log_every_n_steps": 1, "enable_progress_bar": False, "enable_model_summary": False,
            "logger": [{"class_path": "lightning.pytorch.loggers.CSVLogger", "init_args": {"save_dir": "{run_dir}"}}],
            "callbacks": [{"class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
                           "init_args": {"dirpath": "{run_dir}/checkpoints", "filename": "{step}",
                                         "save_last": True, "save_top_k": -1, "every_n_train_steps": 1}}],
        },
        "model": {"model": {"dim": 32, "num_heads": 4, "num_layers": 2, "ffn_dim": 64, "text_dim": 32},
                  "text_encoder": "random:tiny", "ema_every_n_steps": 2, "optimizer": {"warmup_steps": 1}},
        "data": {"batch_size": 2, "segment_duration": 1.0, "batches_per_epoch": 2, "num_workers": 0},
    }
    path = tmp_path / "override.yaml"
    path.write_text(yaml.safe_dump(override))
    return path


def fit(override: Path, name: str, *extra: str):
    return main("demo_music.yaml", ["fit", "--config", DEMO, "--config", str(override), "--run.name", name, *extra])


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """`fresh` (builds the corpus) and its reproduction (finds it), `one_worker`, and `resumed` (two loader
    workers; 2 steps, then resumed to 4) and its reproduction."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    tmp = tmp_path_factory.mktemp("reproduce")
    argv, sys.argv = sys.argv, ["train_music.py"]
    override = tiny_override(tmp)
    out = {"tmp": tmp, "override": override, "root": tmp / "runs"}
    try:
        fit(override, "fresh")
        out["fresh_again"] = main("demo_music.yaml", ["--reproduce", str(tmp / "runs" / "fresh")])
        fit(override, "one_worker", "--data.num_workers", "1", "--trainer.deterministic", "true")
        torch.use_deterministic_algorithms(False)  # Lightning leaves it on in this process
        fit(override, "resumed", "--trainer.max_steps", "2", "--data.num_workers", "2")
        fit(override, "resumed", "--ckpt_path", "last", "--data.num_workers", "2")
        out["resumed_again"] = main("demo_music.yaml", ["--reproduce", str(tmp / "runs" / "resumed")])
    finally:
        sys.argv = argv
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(False)
    return out


@pytest.mark.slow
def test_a_run_equals_its_rerun_whether_the_corpus_is_built_or_found(runs):
    again = runs["fresh_again"]
    assert again.difference is None and again.steps == STEPS and again.values > 4 * STEPS
    assert again.again == runs["root"] / "fresh-reproduce"
    assert "identical over 4 steps" in again.line
    trail = read_trail(runs["root"] / "fresh" / "metrics.jsonl")
    assert {"train/loss", "val/loss"} <= {k for values in trail.values() for k in values}


@pytest.mark.slow
def test_one_loader_worker_equals_none_and_deterministic_mode_runs_on_cpu(runs):
    assert compare(runs["root"] / "fresh", runs["root"] / "one_worker").difference is None
    [entry] = json.loads((runs["root"] / "one_worker" / "run_record.json").read_text())["invocations"]
    assert entry["hardware"]["deterministic_algorithms"] and entry["hardware"]["cublas_workspace_config"] == ":4096:8"


@pytest.mark.slow
def test_a_resumed_run_with_two_loader_workers_is_replayed_with_its_resume(runs):
    """Two workers interleave two seeded streams (worker w gives batches w, w + 2, ...): their rerun is equal."""
    again = runs["resumed_again"]
    assert again.difference is None and again.steps == STEPS
    record = json.loads((again.again / "run_record.json").read_text())
    assert [i["start_step"] for i in record["invocations"]] == [0, 2]
    assert record["invocations"][1]["ckpt_path"].startswith(str(again.again))


@pytest.mark.slow
def test_the_run_record_holds_what_the_run_needs(runs):
    [entry] = json.loads((runs["root"] / "fresh" / "run_record.json").read_text())["invocations"]
    config = yaml.safe_load(entry["config"])
    assert config["trainer"]["default_root_dir"] == "{run_dir}" and config["trainer"]["max_steps"] == STEPS
    assert entry["seeds"] == {"seed_everything": 0, "model.seed": 2036, "data.seed": 2036, "demo.seed": 0}
    assert entry["start_step"] == 0 and entry["ckpt_path"] is None and entry["cwd"]
    assert len(entry["git"]["commit"]) == 40 and isinstance(entry["git"]["dirty"], bool)
    assert any(p.startswith("torch==") for p in entry["packages"]) and entry["python"]
    hardware = entry["hardware"]
    assert hardware["torch_threads"] == 1 and hardware["cpu_count"] >= 1 and hardware["world_size"] == 1
    corpus = runs["tmp"] / "corpus"
    assert set(entry["data"]) == {f"manifest:{corpus / 'shards' / s / 'manifest.json'}" for s in ("train", "val")} \
        | {f"codec:{corpus / 'codec'}"}
    again = json.loads((runs["root"] / "fresh-reproduce" / "run_record.json").read_text())["invocations"][0]
    assert again["data"] == entry["data"]  # the corpus found is the one built


@pytest.mark.slow
def test_a_difference_is_named_in_one_line(runs, tmp_path, capsys):
    changed = tmp_path / "changed"
    shutil.copytree(runs["root"] / "fresh", changed)
    lines = (changed / "metrics.jsonl").read_text().splitlines()
    third = json.loads(lines[2])
    key = sorted(third["metrics"])[0]
    value = third["metrics"][key]
    third["metrics"][key] = value + 1e-6
    lines[2] = json.dumps(third)
    (changed / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    result = compare(changed, runs["root"] / "fresh-reproduce")
    assert result.difference == (f"first difference at step {third['step']}: {key} {value + 1e-6!r} (original) vs "
                                 f"{value!r} (reproduction)")
    from magnet_lightning.cli.reproduce import report

    assert report(result) == 1 and "reproduce: first difference at step" in capsys.readouterr().out


@pytest.mark.slow
def test_a_resume_with_nothing_left_says_so_and_writes_nothing(runs, capsys):
    folder = runs["root"] / "fresh"
    before = sorted(p.relative_to(folder) for p in folder.rglob("*"))
    argv, sys.argv = sys.argv, ["train_music.py"]
    try:
        fit(runs["override"], "fresh", "--ckpt_path", "last")
    finally:
        sys.argv = argv
    output = capsys.readouterr()
    assert "nothing to do:" in output.out + output.err and f"trainer.max_steps is {STEPS}" in output.out + output.err
    assert sorted(p.relative_to(folder) for p in folder.rglob("*")) == before


def test_reproduce_refuses_a_folder_without_a_record(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main("demo_music.yaml", ["--reproduce", str(tmp_path)])
    assert exit_info.value.code == 2 and "run_record.json not found" in capsys.readouterr().err
