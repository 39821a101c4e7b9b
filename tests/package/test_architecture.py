"""The package's layering (docs/ARCHITECTURE.md): a folder imports only the folders below it, nothing imports the
facade, and an import inside a function is only an entry point's (loaded after the start-up step, and saying so)."""

import ast
import re
from pathlib import Path

from support.paths import ROOT

PACKAGE = ROOT / "magnet_lightning"
LAYERS = ["utils", "models", "lora", "checkpoint", "codec", "interop", "generation", "data", "metrics", "training",
          "callbacks", "demo", "app", "cli"]
BASE = {"config", "errors"}  # top-level modules below every layer
FACADE = {"generate", "convert", "export"}  # top-level modules above every layer (with __init__)


def _absolute(path: Path, node: ast.ImportFrom) -> str:
    """The module a `from ... import` names, a relative one resolved against `path`'s package."""
    if not node.level:
        return node.module or ""
    package = list(path.relative_to(PACKAGE.parent).parent.parts)
    base = package[: len(package) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _imports(path: Path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.module or node.level):
            module = _absolute(path, node)
            modules = [module] if module != "magnet_lightning" else [
                f"magnet_lightning.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        else:
            continue
        for module in modules:
            if module.startswith("magnet_lightning."):
                yield node, module.split(".")[1]


def _layer(path: Path) -> str:
    rel = path.relative_to(PACKAGE)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def test_layers_import_only_layers_below():
    wrong = []
    for path in PACKAGE.rglob("*.py"):
        mine = _layer(path)
        for node, target in _imports(path):
            if mine in FACADE or mine == "__init__" or target in BASE or target == mine:
                continue
            if path.name == "__main__.py" and target == "cli":  # a `python -m` form of a console script
                continue
            if target in FACADE:
                wrong.append(f"{path.relative_to(PACKAGE)}:{node.lineno} imports the facade {target}")
            elif mine in BASE or LAYERS.index(target) > LAYERS.index(mine):
                wrong.append(f"{path.relative_to(PACKAGE)}:{node.lineno}: {mine} imports {target} (a higher layer)")
    assert wrong == []


def test_imports_inside_functions_are_entry_points_only():
    lines_of = {}
    found = []
    for path in PACKAGE.rglob("*.py"):
        lines_of[path] = path.read_text().splitlines()
        for node, _ in _imports(path):
            if node.col_offset > 0 and "entry point" not in lines_of[path][node.lineno - 1]:
                found.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    assert found == [], "import at the module's top (an entry point's late import says '# entry point: ...')"


def test_the_top_level_is_a_small_facade():
    assert {p.stem for p in PACKAGE.glob("*.py")} <= BASE | FACADE | {"__init__"}
    assert all(len(p.read_text().splitlines()) <= 400 for p in PACKAGE.rglob("*.py"))


def test_relative_imports_are_resolved():
    """A relative import is held to the same layering as an absolute one (`_imports` resolves it)."""
    node = ast.parse("from ..generation import plan\nfrom . import facts").body
    assert _absolute(PACKAGE / "checkpoint" / "facts.py", node[0]) == "magnet_lightning.generation"
    assert _absolute(PACKAGE / "checkpoint" / "facts.py", node[1]) == "magnet_lightning.checkpoint"


def test_functions_are_at_most_60_lines():
    roots = [PACKAGE, *(PACKAGE.parent / folder for folder in ("recipes", "data", "evaluation"))]
    long = [f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1})"
            for root in roots for path in root.rglob("*.py") for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.end_lineno - node.lineno + 1 > 60]
    assert long == [], "split these functions (at most 60 lines each)"


TEST_CONCERNS = {"package", "recipes", "evaluation", "docs"}  # test folders beside the layers (tests/README.md)
TEST_IMPORT = re.compile(r"^\s*(?:from\s+test_\w+\s+import|import\s+(?:[\w.]+\s*,\s*)*test_\w+)", re.M)


def test_test_folders_mirror_the_package():
    tests = ROOT / "tests"
    files = sorted(tests.rglob("test_*.py"))
    folders = {p.parent.relative_to(tests).as_posix() for p in files}
    assert folders <= set(LAYERS) | TEST_CONCERNS, "a test lives in tests/<layer>/ or a concern of tests/README.md"
    assert set(LAYERS) <= folders  # every layer has its tests
    # no test imports another test module, in its code or in a script it writes for a subprocess
    importing = [p.relative_to(tests).as_posix() for p in tests.rglob("*.py") if TEST_IMPORT.search(p.read_text())]
    assert importing == [], "move what is shared to tests/support/ or a conftest.py fixture"


def test_test_imports_are_detected():
    assert TEST_IMPORT.search("x = 1\nfrom test_codec import tiny_hf_model\n")
    assert TEST_IMPORT.search("    import sys, test_audio_metrics_callback as t\n")
    assert not TEST_IMPORT.search("from support.tiny_codecs import tiny_hf_model\nimport pytest\n")
