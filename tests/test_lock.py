"""The lock file pins, with hashes, every package that pyproject.toml asks for, and the
environment the tests run in is exactly the locked one (a moved dependency turns this red)."""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]


def _locked() -> dict[str, tuple[str, int]]:
    """name -> (version, number of hashes) from requirements.lock."""
    out: dict[str, tuple[str, int]] = {}
    name = None
    for line in (ROOT / "requirements.lock").read_text(encoding="utf-8").splitlines():
        m = re.match(r"^([A-Za-z0-9_.\-]+)==([^ \\]+)", line)
        if m:
            name = canonicalize_name(m.group(1))
            out[name] = (m.group(2), 0)
        elif name and line.strip().startswith("--hash=sha256:"):
            v, n = out[name]
            out[name] = (v, n + 1)
    return out


def _declared() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    reqs = [Requirement(r) for r in project["dependencies"]]
    for extra in project["optional-dependencies"].values():
        reqs += [Requirement(r) for r in extra if not r.startswith("inkpack")]
    return reqs


def test_every_declared_dependency_is_locked_with_hashes_and_satisfies_its_bound():
    locked = _locked()
    assert len(locked) > 20
    for req in _declared():
        name = canonicalize_name(req.name)
        assert name in locked, f"{req.name} is not in requirements.lock: run make lock"
        version, hashes = locked[name]
        assert hashes >= 1, f"{req.name} has no hash in requirements.lock"
        assert req.specifier.contains(version, prereleases=True), f"{req.name}=={version} violates {req}"
    assert locked["torch"][0].startswith("2.13.0"), "the lock pins the CPU torch of these machines"


def test_torch_is_not_pinned_exactly_for_library_users():
    torch_req = [r for r in _declared() if r.name == "torch"]
    assert torch_req and not any(s.operator == "==" for s in torch_req[0].specifier)


@pytest.mark.parametrize("name", ["torch", "numpy", "onnx", "onnxruntime", "fastapi", "tensorly", "pillow"])
def test_installed_versions_are_the_locked_ones(name):
    version, _ = _locked()[canonicalize_name(name)]
    assert metadata.version(name) == version, f"{name}: installed {metadata.version(name)}, locked {version}"
