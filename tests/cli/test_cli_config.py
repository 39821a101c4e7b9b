"""The recipe command line is strict: typed dataclass configs, unknown keys refused at parse time with the valid
ones named, no abbreviated options, every field documented in `fit --help`, only working subcommands."""

from __future__ import annotations

import re
import sys
from dataclasses import fields

import pytest
from support.paths import CONFIGS

from magnet_lightning.cli.train import main

PAPER = str(CONFIGS / "music_small_10s.yaml")


@pytest.fixture(autouse=True)
def _argv(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["train_music.py"])


def _refused(capsys, *args: str) -> str:
    """Run the CLI with `args` and return its error output; it must exit with code 2 before building anything."""
    with pytest.raises(SystemExit) as exit_info:
        main("demo_music.yaml", list(args))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err.strip().splitlines()[-1]


def test_unknown_nested_key_names_the_valid_fields(capsys):
    line = _refused(capsys, "fit", "--config", PAPER, "--model.optimizer.lrr", "1e-4")
    assert "model.optimizer.lrr" in line and "did you mean 'model.optimizer.lr'" in line
    valid = re.search(r"Valid keys under 'model.optimizer': (.*)\.$", line).group(1).split(", ")
    assert set(valid) == {"name", "lr", "betas", "eps", "weight_decay", "schedule", "warmup_steps", "total_steps",
                          "min_lr_ratio"}


def test_unknown_key_in_a_config_file_is_refused(capsys, tmp_path):
    typo = tmp_path / "typo.yaml"
    typo.write_text("model:\n  model:\n    num_layer: 3\n")
    line = _refused(capsys, "fit", "--config", PAPER, "--config", str(typo))
    assert "model.model.num_layer" in line and "did you mean 'model.model.num_layers'" in line


def test_abbreviated_options_are_refused(capsys):
    line = _refused(capsys, "fit", "--config", PAPER, "--trainer.max_step", "3")
    assert "trainer.max_step " in line + " " and "did you mean 'trainer.max_steps'" in line


def test_only_working_subcommands(capsys):
    for name in ("test", "predict"):
        line = _refused(capsys, name, "--config", PAPER)
        assert name in line and "fit" in line


def _help_entries(text: str) -> dict[str, str]:
    """option -> its description in argparse help output (without the '(type: ...)' part)."""
    entries, current = {}, None
    for line in text.splitlines():
        start = re.match(r"^  (--[\w.]+)(?: \S+)?(?:, --[\w.+]+(?: \S+)?)?(\s{2,}(.*))?$", line)
        if start:
            current = start.group(1)[2:]
            entries[current] = start.group(3) or ""
        elif current and line.startswith(" " * 20):
            entries[current] += " " + line.strip()
        else:
            current = None
    return {k: re.sub(r"\(type: .*", "", v).strip() for k, v in entries.items()}


def test_fit_help_documents_every_model_run_and_demo_field(capsys):
    from magnet_lightning.cli.runs import RunConfig
    from magnet_lightning.config import MaskingConfig, ModelConfig
    from magnet_lightning.demo.corpus import DemoConfig
    from magnet_lightning.training.lit_module import DecodingDefaults, MagnetLightningModule
    from magnet_lightning.training.optim import OptimConfig

    with pytest.raises(SystemExit):
        main("demo_music.yaml", ["fit", "--help"])
    entries = _help_entries(capsys.readouterr().out)
    groups = {"model.model": ModelConfig, "model.masking": MaskingConfig, "model.optimizer": OptimConfig,
              "model.decoding": DecodingDefaults, "run": RunConfig, "demo": DemoConfig}
    expected = [f"{prefix}.{f.name}" for prefix, cls in groups.items() for f in fields(cls)]
    import inspect

    expected += [f"model.{name}" for name in inspect.signature(MagnetLightningModule).parameters
                 if f"model.{name}" not in groups and name != "segment_duration"]  # segment_duration: linked
    missing = [key for key in expected if key not in entries]
    undocumented = [key for key in expected if key in entries and not entries[key]]
    assert not missing and not undocumented, (missing, undocumented)
    assert entries["model.optimizer.lr"].startswith("Peak learning rate")
