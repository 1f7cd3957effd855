"""Preprocessing of ink: any ink input → the per-point features an ink model reads.

An ``Ink``, a ``{"strokes": ...}`` dict, an InkML path or InkML bytes becomes the eval-time
features of :mod:`inkpack.data.ink_preprocess` (``[T, F]``: normalised, redundant points
dropped; or one row per fitted Bézier curve where ``preprocessing.features`` is ``bezier``), with
the model's own settings (``config["preprocessing"]``). :func:`prepare_ink` is
the ``preprocess`` capability of the ink architectures (``lstm-char``, ``online-blstm``) in the
registry; it also keeps the input x of each kept point, from which a line model's character
positions are read (:func:`inkpack.infer.decode.ink_line_recognition`).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

import numpy as np
import torch

from inkpack.errors import BadSampleError, InkpackError

__all__ = ["PreparedInk", "ink_features", "prepare_ink", "preprocess_config", "to_ink"]


@dataclass
class PreparedInk:
    features: torch.Tensor  # [T, F]
    point_x: np.ndarray  # x of the input point behind each feature row (a curve's: its end point)


def to_ink(x):
    """Ink, ``{"strokes": [...]}``, an InkML path or InkML bytes → one ``Ink``."""
    from inkpack.data.ink import Ink

    if isinstance(x, Ink):
        ink = x
    elif isinstance(x, dict):
        if "strokes" not in x:
            raise BadSampleError("ink dict: missing 'strokes'")
        ink = Ink.from_xy([np.asarray(s, dtype=np.float64) for s in x["strokes"]], id="ink")
    elif isinstance(x, (str, os.PathLike, bytes, bytearray)):
        from inkpack.data.formats.inkml import parse_inkml, read_inkml

        inks = parse_inkml(bytes(x), "<InkML>") if isinstance(x, (bytes, bytearray)) else read_inkml(x)
        if not inks:
            raise BadSampleError(f"{x if not isinstance(x, (bytes, bytearray)) else '<InkML>'}: no ink sample")
        ink = inks[0]
    else:
        raise InkpackError(f"ink recognizer: unsupported input {type(x).__name__} (give an Ink, "
                           "a {'strokes': ...} dict, or InkML)")
    return ink.check()


def preprocess_config(cfg: dict):
    """The :class:`~inkpack.data.ink_preprocess.PreprocessConfig` of a model config."""
    from inkpack.data.ink_preprocess import PreprocessConfig

    names = {f.name for f in dataclasses.fields(PreprocessConfig)}
    given = cfg.get("preprocessing", {}) or {}
    return PreprocessConfig(**{k: v for k, v in given.items() if k in names})


def ink_features(ink, pcfg) -> tuple[np.ndarray, np.ndarray]:
    """Eval-time features ``[T, F]`` and the raw x of each kept point (of each curve's end point)."""
    from inkpack.data.ink_preprocess import bezier_rows, normalize, point_features, redundant_mask

    if pcfg.features == "bezier":
        feats, end = bezier_rows(ink, pcfg)
        return feats, ink.xy()[end, 0]

    norm = normalize(ink, pcfg.center, pcfg.scale, 1.0)
    keep = redundant_mask(norm, pcfg.min_dist, pcfg.max_cos)
    feats = point_features(_masked(norm, keep))
    return feats, ink.xy()[keep, 0]


def _masked(ink, keep: np.ndarray):
    from inkpack.data.ink_preprocess import Flat

    return Flat.of(ink).masked(keep).to_ink(ink)


def prepare_ink(x, config: dict) -> PreparedInk:
    """One ink input → :class:`PreparedInk` for the model of ``config``; an ink with no points
    left after preprocessing is a ``BadSampleError``."""
    feats, px = ink_features(to_ink(x), preprocess_config(config))
    if len(feats) == 0:
        raise BadSampleError("ink: no points left after preprocessing")
    return PreparedInk(torch.from_numpy(np.ascontiguousarray(feats, dtype=np.float32)), px)
