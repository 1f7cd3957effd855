"""Loading a compressed model file: the ``compression`` record of a model JSON (written by
``inkpack compress``, see :mod:`inkpack.compress.recipe`) rebuilt on a fresh base model.
:func:`inkpack.model_io.load_model` calls :func:`load_compressed` for such files; it sits below
both the model-file module and the compress commands in the import graph."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from inkpack.errors import InkpackError

if TYPE_CHECKING:  # torch is imported where it runs
    from torch import nn


def load_compressed(model: nn.Module, comp: dict, stem: str | Path, int8: bool = True) -> nn.Module:
    """Rebuild the recorded structure on a fresh base model, load its weights, quantize if flagged."""
    from safetensors.torch import load_file

    from inkpack.compress.kmeans import load_into
    from inkpack.compress.layout import rebuild
    from inkpack.compress.quantize import quantize_int8

    stem = Path(stem)
    rebuild(model, comp.get("structure", {}))
    if comp.get("weights") == "shared-npz":
        path = stem.with_suffix(".npz")
        if not path.exists():
            raise InkpackError(f"{path}: k-means weight file not found")
        load_into(model, path)
    else:
        path = stem.with_suffix(".safetensors")
        try:
            state = {k: v.float() if v.is_floating_point() else v for k, v in load_file(str(path)).items()}
            model.load_state_dict(state)
        except Exception as e:  # noqa: BLE001 (safetensors raises several types)
            raise InkpackError(f"{path}: cannot load compressed weights ({str(e).splitlines()[0]})") from None
    model.eval()
    if int8 and comp.get("int8"):
        model = quantize_int8(model, inplace=True)
    return model
