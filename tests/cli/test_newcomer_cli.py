"""The training CLI as a newcomer meets it: the demo is the demo only when nothing says otherwise, `--print_config`
writes YAML that can be reused, every entry point starts the same way (hub probe once, notices on stderr), and
every mistake - jsonargparse's and Lightning's own misconfigurations included - is one `error:` line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from support.paths import ROOT
from support.token_data import INFO, sample, write_dataset

from magnet_lightning.cli import prelude
from magnet_lightning.cli.train import main, recipe_argv
from magnet_lightning.errors import DEBUG_ENV
from magnet_lightning.utils import startup

DEMO = ROOT / "recipes" / "configs" / "demo_music.yaml"
UNREACHABLE = "http://127.0.0.1:9"  # the discard port: refused at once, so the probe says "not reachable" fast
NOTICE = "is not reachable: Hugging Face hub OFFLINE"


@pytest.fixture(autouse=True)
def _plain(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["train_music.py"])
    monkeypatch.setenv(DEBUG_ENV, "0")


def _one_error_line(capsys, args: list[str]) -> str:
    """Run the recipe in-process; it must exit 2 with exactly one non-empty stderr line, `error: ...`."""
    with pytest.raises(SystemExit) as exit_info:
        main("demo_music.yaml", args)
    assert exit_info.value.code == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0] and "Traceback" not in "\n".join(lines), lines[-20:]
    return errors[0]


# ------------------------------------------------------------------------------------------------ 1. the demo
def test_arguments_without_a_config_keep_the_demo_config():
    for args in (["--demo.root", "X"], ["fit", "--trainer.max_steps", "3"], ["validate", "--demo.root", "X"]):
        argv = recipe_argv(args, "demo_music.yaml")
        assert argv[argv.index("--config") + 1].endswith("recipes/configs/demo_music.yaml"), argv
        assert argv[0] in ("fit", "validate") and argv[-2:] == args[-2:]
    assert recipe_argv(["fit", "--config", "x.yaml"], "demo_music.yaml") == ["fit", "--config", "x.yaml"]
    assert recipe_argv(["--config=x.yaml"], "demo_music.yaml") == ["fit", "--config=x.yaml"]


def test_user_data_turns_the_demo_off(tmp_path, monkeypatch, capsys):
    """--data.* with the demo config trains on the user's shards (here refused for their V, which proves they were
    used); the demo corpus is never built."""
    from magnet_lightning.demo import corpus

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(corpus, "prepare_demo_corpus", lambda *a, **k: pytest.fail("the demo replaced user data"))
    shards = write_dataset(tmp_path / "mine", [[sample("a", 30)]])
    line = _one_error_line(capsys, ["fit", "--config", str(DEMO), "--data.train_shards", str(shards),
                                    "--data.val_shards", str(shards), "--trainer.logger", "false"])
    assert "V (codebook_size) 64 in the shards" in line and str(shards) in line


def test_a_codec_override_with_the_demo_is_refused(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    line = _one_error_line(capsys, ["--model.codec", "my/codec", "--trainer.logger", "false"])
    assert "--demo.codec my/codec" in line


# ------------------------------------------------------------------------------------------------ 7. one line
@pytest.mark.parametrize("extra,needle", [
    (["--model.optimizer.lrr", "1"], "did you mean 'model.optimizer.lr'"),
    (["--trainer.max_steps", "abc"], "trainer.max_steps"),
    (["--config", "/nonexistent.yaml"], "/nonexistent.yaml"),
])
def test_parser_errors_are_one_line_without_usage(extra, needle, capsys):
    assert needle in _one_error_line(capsys, ["fit", "--config", str(DEMO), *extra])


def test_a_config_file_typo_is_one_line(tmp_path, capsys):
    typo = tmp_path / "typo.yaml"
    typo.write_text("model:\n  optimizer:\n    lrr: 3\n")
    assert "did you mean 'model.optimizer.lr'" in _one_error_line(capsys, ["fit", "--config", str(DEMO), "--config",
                                                                           str(typo)])


# ------------------------------------------------------------------------------------------------ issue 18 item 8
def _tiny_config(tmp_path: Path, **trainer) -> Path:
    shards = write_dataset(tmp_path / "shards", [[sample(f"k{i}", 60, seed=i) for i in range(8)]])
    config = {
        "trainer": {"accelerator": "cpu", "devices": 1, "max_steps": 4, "enable_progress_bar": False,
                    "enable_model_summary": False, "num_sanity_val_steps": 0, "enable_checkpointing": False,
                    "logger": [{"class_path": "lightning.pytorch.loggers.CSVLogger",
                                "init_args": {"save_dir": "{run_dir}"}}],
                    "callbacks": [{"class_path": "lightning.pytorch.callbacks.LearningRateMonitor"}], **trainer},
        "run": {"root": str(tmp_path / "runs")},
        "model": {"model": {"dim": 32, "num_heads": 4, "num_layers": 2, "ffn_dim": 64, "num_codebooks": 4,
                            "codebook_size": 64, "text_dim": 32, "subcodes_context": 3},
                  "text_encoder": "random:tiny", "ema_every_n_steps": 0, "codec": INFO["name"],
                  "sample_rate": INFO["sample_rate"], "frame_rate": INFO["frame_rate"],
                  "optimizer": {"lr": 1e-3, "warmup_steps": 2, "schedule": "cosine"}},
        "data": {"train_shards": str(shards), "batch_size": 2, "segment_duration": 1.0, "num_workers": 0,
                 "batches_per_epoch": 4},
    }
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.parametrize("extra,needles", [
    (["--trainer.strategy", "not_a_strategy"], ["trainer / model / callbacks configuration", "not_a_strategy"]),
    (["--trainer.logger", "false"], ["at the start of fit", "LearningRateMonitor"]),
    (["--trainer.max_steps", "2"], ["warm-up (2 steps)", "--trainer.max_steps"]),
])
def test_lightning_misconfigurations_are_one_line(extra, needles, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    line = _one_error_line(capsys, ["fit", "--config", str(_tiny_config(tmp_path)), *extra])
    assert all(n in line for n in needles), line


def test_the_tiny_config_trains(tmp_path, monkeypatch):
    """The control of the test above: without the mistakes the same config fits."""
    monkeypatch.chdir(tmp_path)
    cli = main("demo_music.yaml", ["fit", "--config", str(_tiny_config(tmp_path))])
    assert cli.trainer.global_step == 4


def test_value_errors_after_the_start_keep_their_traceback():
    from magnet_lightning.cli.misconfig import lightning_misconfigurations
    from magnet_lightning.errors import UserError

    with pytest.raises(UserError, match="here: bad value"), lightning_misconfigurations("here"):
        raise ValueError("bad value")
    with pytest.raises(ValueError, match="a bug"), lightning_misconfigurations("here", started=lambda: True):
        raise ValueError("a bug")


# ------------------------------------------------------------------------------------------------ 4. and 5.
def _env() -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_ENDPOINT": UNREACHABLE, "WANDB_MODE": "offline"}
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", DEBUG_ENV):
        env.pop(name, None)
    return env


@pytest.mark.slow
def test_print_config_is_valid_yaml_and_reusable(tmp_path):
    run = [sys.executable, str(ROOT / "recipes" / "train_music.py")]
    first = subprocess.run([*run, "--print_config"], cwd=tmp_path, env=_env(), capture_output=True, text=True,
                           timeout=300, check=False)
    assert first.returncode == 0 and NOTICE in first.stderr, first.stderr[-2000:]
    assert yaml.safe_load(first.stdout)["demo"]["enabled"] is True
    (tmp_path / "cfg.yaml").write_text(first.stdout)
    again = subprocess.run([*run, "fit", "--config", "cfg.yaml", "--print_config"], cwd=tmp_path, env=_env(),
                           capture_output=True, text=True, timeout=300, check=False)
    assert again.returncode == 0 and again.stdout == first.stdout, again.stderr[-2000:]


ENTRY_POINTS = {  # every script form and console script, asked for --help
    "tokenize script": ["data/tokenize_audio.py", "--help"],
    "evaluate script": ["evaluation/evaluate.py", "--help"],
    "generate module": ["-m", "magnet_lightning.generate", "--help"],
    "convert module": ["-m", "magnet_lightning.convert", "--help"],
    "export module": ["-m", "magnet_lightning.export", "--help"],
    "magnet-tokenize": ["-c", "import sys; sys.argv = ['magnet-tokenize', '--help']; "
                              "from magnet_lightning.cli.entrypoints import tokenize; tokenize()"],
    "magnet-export": ["-c", "import sys; sys.argv = ['magnet-export', '--help']; "
                            "from magnet_lightning.cli.entrypoints import export; export()"],
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(ENTRY_POINTS))
def test_every_entry_point_starts_the_same_way(name):
    proc = subprocess.run([sys.executable, *ENTRY_POINTS[name]], cwd=ROOT, env=_env(), capture_output=True,
                          text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stderr.count(NOTICE) == 1 and NOTICE not in proc.stdout, (proc.stdout[:300], proc.stderr[-800:])
    if name == "magnet-export":
        assert "usage: magnet-export" in proc.stdout  # its own name, not `python -m magnet_lightning.export`


def test_prepare_runs_once_per_process(monkeypatch):
    calls = []
    monkeypatch.setattr(startup, "_started", [])
    monkeypatch.setattr(startup, "hub_offline_without_network", lambda: calls.append(1))
    prelude.prepare()
    prelude.prepare()
    startup.start_up()  # what MagnetGenerator.from_pretrained runs: the same start-up, still once
    assert calls == [1]


def test_the_python_api_starts_up_like_the_command_lines(monkeypatch, tmp_path):
    """Without a network, from_pretrained sets the hub offline even after huggingface_hub was imported, so a missing
    file fails at once instead of after minutes of retries."""
    import huggingface_hub.constants as hub

    from magnet_lightning.generation.generator import MagnetGenerator

    for variable in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setattr(hub, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(startup, "_started", [])
    monkeypatch.setattr("magnet_lightning.utils.network.reachable", lambda address, timeout=3.0: False)
    with pytest.raises(Exception):  # noqa: B017 - nothing at this path: any loading error, but after the start-up
        MagnetGenerator.from_pretrained(str(tmp_path / "absent.ckpt"), device="cpu")
    assert hub.HF_HUB_OFFLINE is True and os.environ["HF_HUB_OFFLINE"] == "1"


def test_argparse_programs_answer_mistakes_in_one_line(capsys):
    """generate, export, convert, evaluate.py and tokenize_audio.py: no usage block before the error."""
    from magnet_lightning.cli import convert, evaluate, export, generate, tokenize

    parsers = [generate.build_parser(), export.build_parser(), evaluate.build_parser()]
    for parse in [p.parse_args for p in parsers] + [tokenize.parse_args]:
        with pytest.raises(SystemExit) as exit_info:
            parse(["--no-such-option"])
        assert exit_info.value.code == 2
        lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: ") and "--help" in lines[0], lines
    with pytest.raises(SystemExit):
        convert.main(["bogus"])
    assert len([line for line in capsys.readouterr().err.splitlines() if line.strip()]) == 1


def test_the_demo_keeps_one_checkpoint():
    """No identical 137 MB `step=N.ckpt` beside last.ckpt: the demo configs save last.ckpt only."""
    for name in ("demo_music", "demo_musicgen", "demo_hybrid"):
        config = yaml.safe_load((ROOT / "recipes" / "configs" / f"{name}.yaml").read_text())
        [saver] = [c for c in config["trainer"]["callbacks"] if c["class_path"].endswith("ModelCheckpoint")]
        assert saver["init_args"]["save_top_k"] == 0 and saver["init_args"]["save_last"] is True, name
