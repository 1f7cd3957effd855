"""Strict JSON output and output-path checks shared by the commands.

* ``dumps``/``write_json``: valid JSON only (RFC 8259 has no ``NaN``/``Infinity``): non-finite
  floats become ``null`` and ``allow_nan=False`` guards the rest; files are written atomically.
* ``check_output_file``/``check_output_dir``: called *before* long work starts, so an unwritable
  or misplaced output path is one line (``ConfigError`` naming the option and path) instead of
  a traceback after minutes of computation.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path

from inkpack.errors import ConfigError


def finite(obj):
    """``obj`` with every non-finite float replaced by ``None`` (tuples become lists)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item) and getattr(obj, "ndim", 1) == 0:  # numpy/torch scalar
        return finite(obj.item())
    return obj


def dumps(obj, indent: int | None = None, **kw) -> str:
    return json.dumps(finite(obj), indent=indent, allow_nan=False, ensure_ascii=False, **kw)


def _probe(folder: Path, p: Path, flag: str, what: str) -> None:
    """Make ``folder`` (and parents) and write/remove a scratch file in it: the only check that
    also holds for root, read-only mounts and pseudo file systems."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".inkpack-write-test-", dir=folder)
        os.close(fd)
        os.unlink(tmp)
    except (FileExistsError, NotADirectoryError):
        raise ConfigError(f"{flag} {p}: cannot create {what} (a file is in the way)") from None
    except OSError as e:
        raise ConfigError(f"{flag} {p}: not writable ({e.strerror or e})") from None


def check_output_file(path: str | os.PathLike | None, flag: str = "--out") -> Path | None:
    """The folder of ``path`` exists or is made, and a file can be written there (the folder is
    created now: nothing is lost if the command fails later)."""
    if path is None or str(path) in ("", "-"):
        return None
    p = Path(path).expanduser()
    if p.is_dir():
        raise ConfigError(f"{flag} {p}: is a folder, expected a file path")
    _probe(p.parent, p, flag, "its folder")
    if p.exists() and not os.access(p, os.W_OK):
        raise ConfigError(f"{flag} {p}: not writable (permission denied)")
    return p


def check_output_dir(path: str | os.PathLike | None, flag: str = "--out") -> Path | None:
    """``path`` is a writable folder, or is made one (a run folder, an output folder)."""
    if path is None or str(path) == "":
        return None
    p = Path(path).expanduser()
    if p.exists() and not p.is_dir():
        raise ConfigError(f"{flag} {p}: is a file, expected a folder")
    _probe(p, p, flag, "the folder")
    return p


def write_json(path: str | os.PathLike, data, indent: int = 2, flag: str = "--json") -> Path:
    """Atomically write ``data`` as strict JSON; an OS error becomes one line naming the path."""
    return write_text(path, dumps(data, indent=indent) + "\n", flag)


def write_text(path: str | os.PathLike, text: str, flag: str = "--out") -> Path:
    """Atomically write ``text`` (UTF-8, mode 0644); an OS error is one line naming the path."""
    p = Path(path)
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", dir=p.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, p)
    except OSError as e:
        raise ConfigError(f"{flag} {p}: cannot write ({e.strerror or e})") from None
    return p


def publish(tmp: str | os.PathLike, dest: str | os.PathLike) -> Path:
    """Move a finished temporary file into place, readable like every other output (0644:
    some writers, e.g. safetensors, create their files 0600)."""
    os.chmod(tmp, 0o644)
    os.replace(tmp, dest)
    return Path(dest)


def read_text(path, error: type[Exception], kind: str) -> str:
    """The UTF-8 text of ``path``, or a one-line ``error`` naming it (``kind``: what the file
    should be, e.g. "a YAML config file")."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise error(f"{path}: file not found") from None
    except IsADirectoryError:
        raise error(f"{path}: is a folder, expected {kind}") from None
    except UnicodeDecodeError:
        raise error(f"{path}: not a text file (invalid UTF-8); expected {kind}") from None
    except OSError as e:
        raise error(f"{path}: cannot read ({e.strerror or e})") from None
