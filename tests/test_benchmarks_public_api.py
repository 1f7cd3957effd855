"""The benchmarks use inkpack's public API only (issue 19, deliverable 8).

Every ``benchmarks/*.py`` is parsed with :mod:`ast` (nothing is run) and must not

* change the import path: ``sys.path`` in any form, ``site.addsitedir``, a ``PYTHONPATH``
  string (inkpack is installed; a benchmark that needs ``src`` on the path measures a
  checkout, not the package);
* import a test module or test helper: ``tests``, ``conftest``, or any module named like a
  file under ``tests/`` (``deploy_helpers``, ``test_distributed``, ...); what benchmarks and
  tests both need lives in the library (``inkpack.testing``, ``inkpack.train.ddp_equivalence``);
* import a private name from inkpack: ``from inkpack.x import _y`` or ``import inkpack._x``
  (a leading underscore, dunders aside, means "may change without notice").
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BENCHMARKS = sorted((REPO / "benchmarks").glob("*.py"))
TEST_MODULES = {"tests", "conftest"} | {p.stem for p in (REPO / "tests").rglob("*.py")}


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def violations(source: str, filename: str = "<benchmark>") -> list[str]:
    """One line per use of a non-public route into inkpack or the tests, as ``file:line: what``."""
    out = []

    def bad(node: ast.AST, what: str) -> None:
        out.append(f"{filename}:{node.lineno}: {what}")

    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            if (node.value.id, node.attr) in {("sys", "path"), ("site", "addsitedir")}:
                bad(node, f"{node.value.id}.{node.attr} (import path manipulation)")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value == "PYTHONPATH":
            bad(node, "PYTHONPATH (import path manipulation)")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] in TEST_MODULES:
                    bad(node, f"import {alias.name} (a test module)")
                elif parts[0] == "inkpack" and any(map(_private, parts)):
                    bad(node, f"import {alias.name} (a private inkpack module)")
        elif isinstance(node, ast.ImportFrom) and node.module:
            parts = node.module.split(".")
            names = [a.name for a in node.names]
            if node.module == "sys" and "path" in names or node.module == "site" and "addsitedir" in names:
                bad(node, f"from {node.module} import ... (import path manipulation)")
            if node.level == 0 and parts[0] in TEST_MODULES:
                bad(node, f"from {node.module} import ... (a test module)")
            elif node.level == 0 and parts[0] == "inkpack":
                private = [n for n in names if _private(n)] + [p for p in parts if _private(p)]
                if private:
                    bad(node, f"from {node.module} import {', '.join(private)} (private)")
    return out


def test_there_are_benchmarks_to_check() -> None:
    names = {p.name for p in BENCHMARKS}
    assert {"abuse.py", "load.py", "distributed.py", "compression.py", "distillation.py"} <= names


@pytest.mark.parametrize("path", BENCHMARKS, ids=lambda p: p.name)
def test_benchmark_uses_the_public_api_only(path: Path) -> None:
    assert violations(path.read_text(encoding="utf-8"), f"benchmarks/{path.name}") == []


@pytest.mark.parametrize(("source", "expected"), [
    ("import sys\nsys.path.insert(0, 'src')", "2: sys.path"),
    ("import sys\nsys.path[:0] = ['x']", "2: sys.path"),
    ("from sys import path\npath.append('x')", "1: from sys import"),
    ("import site\nsite.addsitedir('tests')", "2: site.addsitedir"),
    ("import os\nos.environ['PYTHONPATH'] = 'src'", "2: PYTHONPATH"),
    ("def f():\n    from deploy_helpers import line_png", "2: from deploy_helpers import ... (a test module)"),
    ("import test_distributed as eq", "1: import test_distributed (a test module)"),
    ("from tests.deploy.deploy_helpers import make_line_model", "1: from tests.deploy.deploy_helpers"),
    ("import conftest", "1: import conftest"),
    ("from inkpack.compress.commands import Task, _accuracy", "1: from inkpack.compress.commands import _accuracy"),
    ("from inkpack.compress._impl import accuracy", "1: from inkpack.compress._impl import _impl"),
    ("import inkpack._version", "1: import inkpack._version (a private"),
])
def test_checker_flags_each_kind_of_violation(source: str, expected: str) -> None:
    found = violations(source, "b.py")
    assert len(found) == 1 and found[0].startswith(f"b.py:{expected}"), found


def test_checker_accepts_public_imports() -> None:
    ok = ("import sys\nfrom common import write_json\nfrom compression import safetensors_mb\n"
          "from inkpack.compress.measure import accuracy, example_input\nfrom inkpack import __version__\n"
          "from inkpack.testing import line_png\nsys.exit(0)\nfrom . import x\n")
    assert violations(ok) == []


def test_public_names_are_the_old_private_ones() -> None:
    """The benchmarks' former private imports have public names; the old ones still work."""
    from inkpack.compress import commands, measure

    assert measure.accuracy is measure._accuracy is commands._accuracy is commands.accuracy
    assert measure.example_input is measure._example is commands._example is commands.example_input
    assert {"accuracy", "example_input"} <= set(measure.__all__) & set(commands.__all__)


def test_testing_helpers_make_a_loadable_model_and_a_png(tmp_path: Path) -> None:
    import io

    from PIL import Image

    from inkpack.models.io import load_model
    from inkpack.testing import SYMBOLS, line_png, make_line_model

    stem = make_line_model(tmp_path, "m")
    assert stem.with_suffix(".json").exists() and stem.with_suffix(".safetensors").exists()
    model, cfg, alphabet = load_model(str(stem))
    assert cfg["arch"] == "darknet-dblstm" and "".join(alphabet.symbols) == SYMBOLS
    img = Image.open(io.BytesIO(line_png("ab", height=50, pad=7)))
    assert (img.format, img.mode, img.height) == ("PNG", "L", 50)
    assert img.width > Image.open(io.BytesIO(line_png("ab", height=50))).width
