"""Atomic, complete checkpoints: a run killed at any moment resumes exactly.

Writes go to a temporary file in the same directory, are flushed to disk, then
renamed over the old checkpoint (``os.replace`` is atomic on POSIX), so a crash
leaves either the old or the new checkpoint, never a torn one.

Loading cannot run code: ``torch.load(weights_only=True)`` unpickles only tensors,
plain Python containers and numbers, plus (for checkpoints written before the RNG state
was stored as plain data) numpy's uint32 array reconstruction, which calls nothing else.
A checkpoint that needs any other type is refused with one line, unless the user opts in
with ``INKPACK_TRUST_CHECKPOINT=1`` for a file they wrote themselves. A corrupt, truncated
or foreign ``last.pt`` is refused with one line saying how to start fresh.
"""

from __future__ import annotations

import os
import pickle
import random
import zipfile
from pathlib import Path

import numpy as np
import torch

from inkpack.errors import ModelFileError

TRUST_ENV = "INKPACK_TRUST_CHECKPOINT"
NUMERIC_DTYPES = [type(np.dtype(t)) for t in (np.uint32, np.int64, np.int32, np.float64, np.float32, np.bool_)]
# keys both trainers (train/loop.py, train/ink_train.py) read from every checkpoint
REQUIRED = ("model", "optimizer", "scheduler", "rng", "alphabet", "epoch", "step_in_epoch", "global_step",
            "history", "elapsed")


def _legacy_numpy_globals() -> list:
    """What a pickled ``np.random.get_state()`` tuple (uint32 key array) and numpy number scalars
    need, under the names numpy 1.x (``numpy.core``) and 2.x (``numpy._core``) write: they rebuild
    arrays and numbers from bytes of these numeric dtypes and call nothing else."""
    core = getattr(np, "_core", None) or np.core
    rec, scalar = core.multiarray._reconstruct, core.multiarray.scalar
    return [(rec, "numpy.core.multiarray._reconstruct"), (rec, "numpy._core.multiarray._reconstruct"),
            (scalar, "numpy.core.multiarray.scalar"), (scalar, "numpy._core.multiarray.scalar"),
            np.ndarray, np.dtype, *NUMERIC_DTYPES]


def rng_state() -> dict:
    """Python, numpy and torch RNG states as plain data (ints, lists, tensors): safe to load."""
    py = random.getstate()
    npst = np.random.get_state(legacy=False)
    return {
        "python": [py[0], list(py[1]), py[2]],
        "numpy": {
            "bit_generator": npst["bit_generator"],
            "key": torch.from_numpy(np.asarray(npst["state"]["key"], dtype=np.int64)),
            "pos": int(npst["state"]["pos"]),
            "has_gauss": int(npst["has_gauss"]),
            "gauss": float(npst["gauss"]),
        },
        "torch": torch.get_rng_state(),
    }


def set_rng_state(state: dict) -> None:
    """Restore :func:`rng_state` (also the tuples that older checkpoints pickled)."""
    try:
        py = state["python"]
        random.setstate((int(py[0]), tuple(int(v) for v in py[1]), py[2]))
        n = state["numpy"]
        if isinstance(n, dict):
            key = n["key"].numpy() if isinstance(n["key"], torch.Tensor) else np.asarray(n["key"])
            np.random.set_state((n["bit_generator"], key.astype(np.uint32), int(n["pos"]),
                                 int(n["has_gauss"]), float(n["gauss"])))
        else:  # legacy: the tuple of np.random.get_state()
            np.random.set_state(tuple(n))
        torch.set_rng_state(state["torch"])
    except (KeyError, IndexError, TypeError, ValueError, RuntimeError, AttributeError) as e:
        raise ModelFileError(f"checkpoint: bad RNG state ({type(e).__name__}: {e}); "
                             "delete or move the checkpoint to start fresh") from None


def _plain(obj):
    """numpy scalars → Python numbers inside plain dicts, lists and tuples (they would need unsafe
    globals to load); other containers (a state_dict's OrderedDict with its metadata) stay as they are."""
    if isinstance(obj, np.generic):
        return obj.item()
    if type(obj) is dict:
        return {k: _plain(v) for k, v in obj.items()}
    if type(obj) in (list, tuple):
        return type(obj)(_plain(v) for v in obj)
    return obj


def atomic_save(obj: object, path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        torch.save(_plain(obj), f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _fresh(path: Path) -> str:
    return f"delete or move {path} to start fresh"


def _unsafe_globals(path: Path) -> list[str]:
    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
    except Exception:  # noqa: BLE001 - a damaged file: reported as corrupt by the caller
        return []
    allowed = {f"numpy.{c}.multiarray.{f}" for c in ("core", "_core") for f in ("_reconstruct", "scalar")}
    allowed |= {"numpy.ndarray", "numpy.dtype"} | {f"numpy.dtypes.{t.__name__}" for t in NUMERIC_DTYPES}
    return sorted(set(names) - allowed)


def load_checkpoint(path: str | Path, required: tuple[str, ...] = REQUIRED) -> dict | None:
    """The checkpoint at ``path``, None if there is none; ``ModelFileError`` (one line) if it is
    corrupt, truncated, not an inkpack checkpoint (one of the ``required`` keys missing: a
    trainer's by default), or would need code to run to be loaded."""
    path = Path(path)
    if not path.exists():
        return None
    if not path.is_file():
        raise ModelFileError(f"{path}: not a checkpoint file; {_fresh(path)}")
    try:
        with torch.serialization.safe_globals(_legacy_numpy_globals()):
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        unsafe = _unsafe_globals(path)
        if not unsafe:
            raise ModelFileError(f"{path}: corrupt checkpoint ({_first_line(e)}); {_fresh(path)}") from None
        if os.environ.get(TRUST_ENV) != "1":
            raise ModelFileError(
                f"{path}: refused: loading this checkpoint would call {', '.join(unsafe[:4])}"
                f"{' ...' if len(unsafe) > 4 else ''}, which could run code; {_fresh(path)} "
                f"(or set {TRUST_ENV}=1 only if you wrote this file yourself)") from None
        try:
            ckpt = torch.load(path, map_location="cpu", weights_only=False)
        except Exception as e2:  # noqa: BLE001 - any failure of a damaged file is the user's to fix
            raise ModelFileError(f"{path}: corrupt checkpoint ({_first_line(e2)}); {_fresh(path)}") from None
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, IndexError, TypeError, AttributeError,
            zipfile.BadZipFile, MemoryError) as e:
        raise ModelFileError(f"{path}: corrupt or truncated checkpoint ({type(e).__name__}: "
                             f"{_first_line(e)}); {_fresh(path)}") from None
    if not isinstance(ckpt, dict):
        raise ModelFileError(f"{path}: not an inkpack checkpoint (a {type(ckpt).__name__}); {_fresh(path)}")
    missing = [k for k in required if k not in ckpt]
    if missing:
        raise ModelFileError(f"{path}: not an inkpack checkpoint (missing {', '.join(missing)}); {_fresh(path)}")
    return ckpt


def _first_line(e: BaseException) -> str:
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    return (lines[0] if lines else type(e).__name__)[:200]
