"""The four READMEs run as written: every command of their ```bash blocks (and every inline `python ...`, `hf ...`,
`wandb ...` command that is not a fragment with `...`) is extracted and checked against the real program:

- training recipes (python/torchrun recipes/train_*.py, sbatch recipes/slurm/train.sbatch, magnet-train): parsed by
  the recipe CLI with ``--print_config`` appended (config files, option names and values validated; nothing runs),
  or run with their own ``--help``;
- argparse programs (generate, export, evaluate.py, tokenize_audio.py): parsed by their own parser, so a missing
  required option or a misspelt flag fails; programs without an importable parser (convert, benchmark_data.py,
  hf, wandb) run with ``--help`` and every option the command uses must be in that help;
- ```yaml blocks are merged into the demo recipe config and parsed; ```python blocks compile, run their imports and
  name only attributes that exist.

`pip install -e ".[EXTRA]"` must name an extra of pyproject.toml; `python -m pytest` is this suite itself.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import re
import shlex
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest
from support.paths import ROOT

READMES = ["README.md", "recipes/README.md", "data/README.md", "evaluation/README.md"]
RECIPES = ("recipes/train_music.py", "recipes/train_audio.py")
INLINE_PROGRAMS = ("python ", "torchrun ", "sbatch ", "hf ", "wandb ", "magnet-", "huggingface-cli ")
SKIPPED = {("python3", "-m", "venv"), (".",), ("cd",), ("source",)}


def _blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", text, flags=re.S | re.M)


def _commands(readme: str) -> list[tuple[str, bool]]:
    """(command, inline) pairs of a README."""
    text = (ROOT / readme).read_text()
    commands = []
    for block in _blocks(text, "bash"):
        for line in re.sub(r"\\\n\s*", " ", block).splitlines():
            for part in line.split("&&"):
                if part.strip() and not part.strip().startswith("#"):
                    commands.append((part.strip(), False))
    for span in re.findall(r"(?<!`)`([^`\n]+)`(?!`)", text):
        if span.startswith(INLINE_PROGRAMS) and "..." not in span:
            commands.append((span, True))
    return commands


CASES = [(readme, command, inline) for readme in READMES for command, inline in _commands(readme)]


def _split(command: str) -> tuple[dict[str, str], list[str]]:
    """(environment assignments, argv) of a shell command; comments dropped, $VARIABLES left as text."""
    words = shlex.split(command, comments=True)
    env = {}
    while words and re.fullmatch(r"[A-Z_][A-Z0-9_]*=\S*", words[0]):
        key, value = words.pop(0).split("=", 1)
        env[key] = value
    return env, words


def _strip_options(words: list[str], takes_value: set[str]) -> list[str]:
    """Drop a launcher's own options (torchrun / sbatch) up to its script."""
    rest = list(words)
    while rest and rest[0].startswith("-"):
        option = rest.pop(0)
        if "=" not in option and option in takes_value:
            rest.pop(0)
    return rest


TORCHRUN_VALUES = {"--nnodes", "--nproc-per-node", "--nproc_per_node", "--rdzv-backend", "--rdzv-endpoint",
                   "--rdzv-id", "--node-rank", "--master-addr", "--master-port"}
SBATCH_VALUES = {"--nodes", "-N", "--time", "--partition", "-p", "--gpus-per-node", "--ntasks-per-node"}


class _Parser(Exception):
    pass


@cache
def _recipe_parser():
    """The recipe CLI's parser, built once (building it costs seconds; parsing a command much less)."""
    from magnet_lightning.cli.train import MagnetCLI

    class Grab(MagnetCLI):
        def parse_arguments(self, parser, args):
            raise _Parser(parser)

    try:
        Grab(args=["fit"])
    except _Parser as grabbed:
        return grabbed.args[0]
    raise AssertionError("the recipe CLI did not build its parser")


def _check_recipe(args: list[str], monkeypatch, capsys) -> None:
    """What `main()` would parse, with --print_config appended (or the command's own --help): exit 0."""
    from magnet_lightning.cli.reproduce import reproduce_argument
    from magnet_lightning.cli.train import recipe_argv

    if reproduce_argument(args) is not None:  # `--reproduce RUN_DIR`: the one form it takes (a UserError otherwise)
        return None
    argv = recipe_argv(args, "demo_music.yaml")
    if not {"-h", "--help"} & set(argv):
        argv.append("--print_config")
    with pytest.raises(SystemExit) as exit_info:
        _recipe_parser().parse_args(argv)
    assert exit_info.value.code == 0, capsys.readouterr().err[-1500:]


def _module_from(path: str):
    spec = importlib.util.spec_from_file_location(f"doc_{Path(path).stem}", ROOT / path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses (and pickling) look their module up there
    spec.loader.exec_module(module)
    return module


def _parse(parser, args: list[str], capsys) -> None:
    try:
        parser.parse_args(args)
    except SystemExit as err:
        if err.code == 0 and {"-h", "--help"} & set(args):  # the help it prints
            return
        pytest.fail(f"rejected: {args}: {capsys.readouterr().err.strip().splitlines()[-1:]} (exit {err.code})")


@cache
def _help(*program: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    proc = subprocess.run([*program, "--help"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, (program, proc.stderr[-800:])
    return proc.stdout


def _check_with_help(program: list[str], args: list[str]) -> None:
    text = _help(*program)
    for option in (a.split("=")[0] for a in args if a.startswith("--")):
        assert re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", text), f"{option} is not an option of {program}"


def _exists(words: list[str]) -> None:
    """A bare program name in the prose (`magnet-export`, `python -m magnet_lightning.generate`): it must exist."""
    import tomllib

    if words[0].startswith("magnet-"):
        assert words[0] in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"], words[0]
    elif words[1:2] == ["-m"]:
        assert importlib.util.find_spec(words[2]) is not None, words[2]
    else:
        assert (ROOT / words[1]).is_file(), words[1]


def _check(command: str, monkeypatch, capsys, inline: bool = False) -> None:
    env, words = _split(command)
    program, args = words[0], words[1:]
    if inline and (len(words) == 1 or (words[1:2] == ["-m"] and len(words) == 3) or
                   (program.startswith("python") and len(words) == 2 and words[1].endswith(".py"))):
        return _exists(words)
    if program == "torchrun":
        words = _strip_options(args, TORCHRUN_VALUES)
        program, args = "python", words
    if program == "sbatch":  # what the script runs: fit --config CONFIG OVERRIDES... --ckpt_path last
        script, config, *overrides = _strip_options(args, SBATCH_VALUES)
        assert (ROOT / script).is_file()
        recipe = env.get("RECIPE", "recipes/train_music.py")
        assert recipe in RECIPES and '--config "$CONFIG"' in (ROOT / script).read_text()
        return _check_recipe(["fit", "--config", config, *overrides, "--ckpt_path", "last"], monkeypatch, capsys)
    if program == "magnet-train":
        return _check_recipe(args, monkeypatch, capsys)
    if program in ("magnet-export", "magnet-convert", "magnet-generate"):  # console scripts of the `python -m` forms
        words, program, args = ["python", "-m", f"magnet_lightning.{program[7:]}", *args], "python", \
            ["-m", f"magnet_lightning.{program[7:]}", *args]
    if program == "magnet-app":
        from magnet_lightning.cli.app import build_parser

        return _parse(build_parser(), args, capsys)
    if program == "magnet-evaluate":
        from magnet_lightning.cli.evaluate import build_parser

        return _parse(build_parser(), args, capsys)
    if program in ("python", "python3") and args[:1] == ["-m"]:
        module, args = args[1], args[2:]
        if module == "pytest":
            return  # this suite
        if module == "magnet_lightning.generate":
            from magnet_lightning.cli.generate import build_parser

            return _parse(build_parser(), args, capsys)
        if module == "magnet_lightning.export":
            from magnet_lightning.cli.export import build_parser

            return _parse(build_parser(), args, capsys)
        subcommand = [args[0]] if module == "magnet_lightning.convert" and args else []
        return _check_with_help([sys.executable, "-m", module, *subcommand], args[len(subcommand):])
    if program in ("python", "python3"):
        script, args = args[0], args[1:]
        assert (ROOT / script).is_file(), script
        if script in RECIPES:
            return _check_recipe(args, monkeypatch, capsys)
        if script == "evaluation/evaluate.py":
            from magnet_lightning.cli.evaluate import build_parser

            return _parse(build_parser(), args, capsys)
        if script == "evaluation/ablation.py":
            return _parse(_module_from(script).build_parser(), args, capsys)
        if script == "data/tokenize_audio.py":
            from magnet_lightning.cli.tokenize import parse_args

            try:
                return parse_args(args) and None
            except SystemExit:
                pytest.fail(f"rejected: {args}: {capsys.readouterr().err.strip().splitlines()[-1:]}")
        return _check_with_help([sys.executable, str(ROOT / script)], args)
    if program == "hf":
        words = [a for a in args[1:] if not a.startswith("-")]
        assert args[0] == "download" and words and all("/" not in w for w in words[1:]), \
            "hf download takes ONE repo id; the words after it are file names inside that repo"
        return _check_with_help([str(Path(sys.executable).parent / "hf"), "download"], args[1:])
    if program == "huggingface-cli":
        pytest.fail("huggingface-cli is gone: the installed tool is `hf` (`hf download REPO`)")
    if program == "wandb":
        return _check_with_help([str(Path(sys.executable).parent / "wandb"), args[0]], args[1:])
    if program == "pip":
        extras = re.findall(r"\[(.*?)\]", " ".join(args))
        import tomllib

        known = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
        assert all(e in known for group in extras for e in group.split(",")), extras
        files = [args[i + 1] for i, a in enumerate(args[:-1]) if a in ("-r", "--requirement", "-c", "--constraint")]
        assert all((ROOT / f).is_file() for f in files), files
        return None
    if tuple(words[:3]) in SKIPPED or tuple(words[:1]) in SKIPPED or program == "export":
        return None
    pytest.fail(f"no check for the command {command!r}: add one to tests/docs/test_docs.py")


@pytest.mark.parametrize("readme,command,inline", CASES, ids=[f"{r}:{c[:60]}" for r, c, _ in CASES])
def test_command_runs_as_written(readme, command, inline, monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    _check(command, monkeypatch, capsys, inline)


def test_every_readme_has_commands():
    assert all(any(r == readme for r, _, inline in CASES if not inline) for readme in READMES)


YAML_CASES = [(readme, block) for readme in READMES for block in _blocks((ROOT / readme).read_text(), "yaml")]


@pytest.mark.parametrize("readme,block", YAML_CASES, ids=[r for r, _ in YAML_CASES])
def test_yaml_block_is_a_valid_recipe_config(readme, block, tmp_path, monkeypatch, capsys):
    path = tmp_path / "block.yaml"
    path.write_text(block)
    _check_recipe(["fit", "--config", str(ROOT / "recipes/configs/demo_music.yaml"), "--config", str(path)],
                  monkeypatch, capsys)


PY_CASES = [(readme, block) for readme in READMES for block in _blocks((ROOT / readme).read_text(), "python")]


@pytest.mark.parametrize("readme,block", PY_CASES, ids=[r for r, _ in PY_CASES])
def test_python_block_imports_and_names_exist(readme, block):
    tree = ast.parse(block)
    namespace: dict = {}
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            exec(compile(ast.Module([node], []), readme, "exec"), namespace)
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in namespace:
            assert hasattr(namespace[node.value.id], node.attr), f"{node.value.id}.{node.attr}"
    for node in ast.walk(tree):  # a path given to a function is used as is: '~' is not expanded
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            assert not node.value.startswith("~"), f"{node.value!r}: Python does not expand '~'"
