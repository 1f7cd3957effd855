"""The compression structure of a model file: the ``compression`` record of a model JSON
(written by ``inkpack compress``, see :mod:`inkpack.compress.recipe`) applied to a fresh base
model. :func:`inkpack.models.io.load_model` reads such files in three steps: it rebuilds the
recorded structure (:func:`rebuild_structure`), loads the weights (safetensors through the
model-file module, or the k-means file through :func:`load_shared_npz`), then applies the
recorded dynamic int8 (:func:`apply_int8`). Nothing here imports torch at import time."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from inkpack.errors import ModelFileError

if TYPE_CHECKING:  # torch is imported where it runs
    from torch import nn

__all__ = ["apply_int8", "load_shared_npz", "rebuild_structure"]


def rebuild_structure(model: nn.Module, comp: dict) -> nn.Module:
    """Replace ``model``'s layers by the recorded low-rank / Tucker / pruned ones (in place)."""
    from inkpack.compress.layout import rebuild

    rebuild(model, comp.get("structure", {}))
    return model


def load_shared_npz(model: nn.Module, path: str | Path) -> None:
    """The k-means weight-sharing file ``NAME.npz`` (centroids + indices) into ``model``."""
    from inkpack.compress.kmeans import load_into

    path = Path(path)
    if not path.exists():
        raise ModelFileError(f"{path}: k-means weight file not found")
    load_into(model, path)


def apply_int8(model: nn.Module, comp: dict) -> nn.Module:
    """``model`` with dynamic int8 (Linear/LSTM) when the record says ``int8``, else as is."""
    if not comp.get("int8"):
        return model
    from inkpack.compress.quantize import quantize_int8

    return quantize_int8(model, inplace=True)
