"""The wheel: every package listed, the recipe configs and the tokenize / evaluate programs inside (one copy in
git: recipes/configs is mapped, not duplicated), console scripts that resolve, configs found when installed."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from support.paths import ROOT

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

SCRIPTS = {"magnet-train": "train", "magnet-generate": "generate", "magnet-tokenize": "tokenize",
           "magnet-evaluate": "evaluate", "magnet-convert": "convert", "magnet-export": "export", "magnet-app": "app"}


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_every_package_is_listed_and_console_scripts_resolve():
    from magnet_lightning.cli import entrypoints

    tool = _pyproject()["tool"]["setuptools"]
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "magnet_lightning").rglob("__init__.py")}
    mapped = set(tool["package-dir"])
    assert set(tool["packages"]) == found | mapped
    assert {name: target for name, target in tool["package-dir"].items()} == {
        "magnet_lightning.scripts.recipes": "recipes", "magnet_lightning.scripts.data": "data",
        "magnet_lightning.scripts.evaluation": "evaluation"}
    scripts = _pyproject()["project"]["scripts"]
    assert scripts == {name: f"magnet_lightning.cli.entrypoints:{fn}" for name, fn in SCRIPTS.items()}
    assert all(callable(getattr(entrypoints, fn)) for fn in SCRIPTS.values())


def test_installed_wheel_has_the_configs_and_programs(tmp_path):
    source = tmp_path / "src"
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT, check=True,
                           capture_output=True, text=True).stdout.split()
    for name in files:
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(ROOT / name, source / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path / "dist"), str(source)],
                   check=True, capture_output=True)
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for config in (ROOT / "recipes" / "configs").glob("*.yaml"):
        assert f"magnet_lightning/scripts/recipes/configs/{config.name}" in names
    assert {"magnet_lightning/scripts/data/tokenize_audio.py", "magnet_lightning/scripts/evaluation/evaluate.py",
            "magnet_lightning/scripts/recipes/slurm/train.sbatch"} <= names
    target = tmp_path / "site"
    subprocess.run([*pip, "install", "--no-deps", "--target", str(target), str(wheel)], check=True,
                   capture_output=True)
    env = {**os.environ, "PYTHONPATH": str(target), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    probe = ("import magnet_lightning.cli.train as c, pathlib; d = c.config_dir(); "
             "print(d); print(sorted(p.name for p in d.glob('*.yaml')))")
    out = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=env, check=True, capture_output=True,
                         text=True).stdout.splitlines()
    assert Path(out[0]) == target / "magnet_lightning" / "scripts" / "recipes" / "configs"
    assert "demo_music.yaml" in out[1] and "music_small_10s.yaml" in out[1]
    assert {f"magnet-{n}" for n in ("train", "generate", "tokenize", "evaluate", "convert", "export")} <= {
        p.name for p in (target / "bin").iterdir()}
    # the installed console scripts run the package's programs (cli/tokenize.py, cli/evaluate.py), not a checkout's
    for name in ("tokenize", "evaluate"):
        out = subprocess.run([sys.executable, "-c", f"import magnet_lightning.cli.entrypoints as e; e.{name}()",
                              "--help"], cwd=tmp_path, env=env, capture_output=True, text=True)
        assert out.returncode == 0 and "usage:" in out.stdout, out.stderr[-2000:]
