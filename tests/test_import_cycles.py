"""No import cycle among the modules of ``src/inkpack``.

Every module is parsed with :mod:`ast`; every ``import`` / ``from ... import``
statement at ANY level counts as a dependency edge, including imports made
inside a function body ("lazy" imports).  A lazy import only hides a cycle
from the interpreter at start-up; the two modules still depend on each other,
so neither can be understood, moved or tested without the other (issue 19
lists ``cli`` <-> ``deploy/commands`` via a lazy ``cli._decoder`` as a cycle).
Imports under ``if TYPE_CHECKING:`` count too (the annotation still names the
other module).

``from inkpack.x import y`` depends on ``inkpack.x.y`` when ``y`` is a
submodule, otherwise on ``inkpack.x``.  Importing ``inkpack.a.b`` also runs
``inkpack.a/__init__``, but a package ``__init__`` that re-exports its
children is not a cycle with them, so that implicit edge is not added.
"""
from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "inkpack"

# Known cycles waiting for their owner, as (set of modules of one strongly
# connected component, "owner: the change needed").  The test fails on any
# component not listed here (a NEW cycle) and on an entry that no longer exists,
# so the list only shrinks.  Empty: on 2026-12-06 no cycle involved `train/` or
# `segment/`; the six found (model_io/compress.commands/recognizer, api/deploy.ink/
# deploy.ink_onnx, cli/deploy.commands, packed_cnn/packed_forward, compress.lowrank/
# compress.tucker, deploy.export/deploy.export_ink) were removed (issue 19).
# Example of an entry:
#   (frozenset({"inkpack.train.loop", "inkpack.train.x"}), "lead: move f into train/y"),
ALLOWED: list[tuple[frozenset[str], str]] = []


def module_names(src: Path = SRC, package: str = PACKAGE) -> dict[str, Path]:
    """Dotted name -> file of every module of ``package`` under ``src``."""
    out = {}
    for path in sorted((src / package).rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The longest prefix of dotted ``name`` that is a module of the package."""
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in modules:
            return candidate
        parts.pop()
    return None


def import_graph(src: Path = SRC, package: str = PACKAGE) -> dict[str, set[str]]:
    """Module -> the package's modules it imports (anywhere in its body)."""
    modules = module_names(src, package)
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for mod, path in modules.items():
        is_pkg = path.name == "__init__.py"
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            targets = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                if node.level:
                    base = mod.split(".") if is_pkg else mod.split(".")[:-1]
                    base = base[: len(base) - (node.level - 1)]
                    prefix = ".".join(base + ([node.module] if node.module else []))
                else:
                    prefix = node.module or ""
                for alias in node.names:
                    full = f"{prefix}.{alias.name}"
                    targets.append(full if full in modules else prefix)
            for target in targets:
                if target.split(".")[0] != package:
                    continue
                dep = _resolve(target, modules)
                if dep is not None and dep != mod:
                    graph[mod].add(dep)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[frozenset[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[frozenset[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        # iterative Tarjan: avoids recursion limits on long chains
        work = [(v, iter(sorted(graph[v])))]
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        while work:
            node, children = work[-1]
            for w in children:
                if w not in index:
                    index[w] = low[w] = counter[0]
                    counter[0] += 1
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                    break
                if w in on_stack:
                    low[node] = min(low[node], index[w])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    comp = set()
                    while True:
                        w = stack.pop()
                        on_stack.discard(w)
                        comp.add(w)
                        if w == node:
                            break
                    if len(comp) > 1:
                        found.append(frozenset(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def _one_cycle(comp: frozenset[str], graph: dict[str, set[str]]) -> list[str]:
    """A concrete path a -> ... -> a inside the component, for the message."""
    start = min(comp)
    prev = {start: None}
    queue = [start]
    while queue:
        v = queue.pop(0)
        for w in sorted(graph[v] & comp):
            if w == start:
                path = [v]
                while prev[path[-1]] is not None:
                    path.append(prev[path[-1]])
                return list(reversed(path)) + [start]
            if w not in prev:
                prev[w] = v
                queue.append(w)
    return sorted(comp)


def _describe(comp, graph) -> str:
    return (f"{{{', '.join(sorted(comp))}}}: e.g. "
            + " -> ".join(_one_cycle(comp, graph)))


def test_finds_lazy_relative_and_submodule_cycles(tmp_path):
    """A planted package: the graph has the edges that count, the check names the cycle."""
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    files = {
        "__init__.py": "from pkg.a import f\n",
        "a.py": "def f():\n    from pkg.sub import b  # lazy, names a submodule\n    return b\n",
        "sub/__init__.py": "",
        "sub/b.py": "from ..c import g\n",  # relative, two levels
        "c.py": "import os\nimport pkg.a\ng = 1\n",  # closes a -> sub.b -> c -> a
        "d.py": "from pkg import c\nfrom pkg.c import g\n",  # into the cycle, not part of it
    }
    for name, text in files.items():
        (pkg / name).write_text(text, encoding="utf-8")
    graph = import_graph(tmp_path, "pkg")
    assert graph == {"pkg": {"pkg.a"}, "pkg.a": {"pkg.sub.b"}, "pkg.sub": set(),
                     "pkg.sub.b": {"pkg.c"}, "pkg.c": {"pkg.a"}, "pkg.d": {"pkg.c"}}
    assert cycles(graph) == [frozenset({"pkg.a", "pkg.sub.b", "pkg.c"})]
    assert _one_cycle(cycles(graph)[0], graph) == ["pkg.a", "pkg.sub.b", "pkg.c", "pkg.a"]
    (pkg / "c.py").write_text("g = 1\n", encoding="utf-8")
    assert cycles(import_graph(tmp_path, "pkg")) == []


def test_real_graph_has_known_edges():
    """Guards against a parser that misses the package's own imports (an empty graph is acyclic)."""
    graph = import_graph()
    assert len(graph) > 50
    assert "inkpack.compress.structure" in graph["inkpack.models.io"]  # import inside load_compressed
    assert "inkpack.packing.layout" in graph["inkpack.packing.cnn"]  # from inkpack.packing.layout import


def test_no_import_cycles():
    graph = import_graph()
    found = cycles(graph)
    allowed = {comp for comp, _owner in ALLOWED}
    new = [c for c in found if c not in allowed]
    assert not new, "import cycle(s) among inkpack modules:\n" + "\n".join(
        _describe(c, graph) for c in new)
    stale = [(c, o) for c, o in ALLOWED if c not in found]
    assert not stale, ("allow-listed cycles no longer present, remove them from"
                       " ALLOWED: " + "; ".join(sorted(map(str, stale))))
