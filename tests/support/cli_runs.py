"""Entry points run in-process until they refuse: the one-line error contract (`assert_one_line`), `in_process`
(exit code 2 and stderr) and `train_error` (the training CLI on the demo recipe, nothing written)."""

from __future__ import annotations

import sys

import pytest

from support.paths import CONFIGS

DEMO = CONFIGS / "demo_music.yaml"


def assert_one_line(stderr: str, *needles: str) -> str:
    """The error is the last line of stderr, the only one starting with 'error:', with no traceback."""
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    assert "Traceback" not in stderr, stderr[-3000:]
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], stderr[-3000:]
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]


def in_process(main, args, capfd) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2
    return capfd.readouterr().err


def train_error(tmp_path, monkeypatch, capfd, *extra) -> str:
    from magnet_lightning.cli.train import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["train_music.py"])
    err = in_process(lambda a: main("demo_music.yaml", a), ["fit", "--config", str(DEMO), "--demo.enabled", "false",
                                                            "--trainer.logger", "false", *extra], capfd)
    assert not (tmp_path / "outputs").exists()  # nothing written
    return err
