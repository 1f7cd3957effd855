"""Preprocessing: any image input → the model's ``[1, H, W]`` line tensor.

Every path (``recognize``, ``evaluate``, ``demo``, ``report``, the API, the service) feeds the
model the line as stored by :func:`inkpack.data.lines.load_lineset` (what the model was trained
and evaluated on): ``prepare_line`` rounded to 8 bits (:func:`line_to_u8`) and back to floats
(:func:`u8_to_tensor`). Which function prepares a model's input is its architecture's
``preprocess`` capability in the registry (:func:`preprocessor`); for the image architectures
that is :func:`prepare_image` (ink: :mod:`inkpack.infer.ink_preprocess`).
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from inkpack.data.images import DEFAULT_MAX_PIXELS, load_gray, prepare_line
from inkpack.errors import BadSampleError, InkpackError, InputTooLargeError

__all__ = ["PreparedImage", "image_height", "line_to_u8", "prepare_image", "preprocessor", "to_gray",
           "u8_to_tensor"]


@dataclass
class PreparedImage:
    """A model-ready line ``[1, H, W]``, the input width it came from and the input's warnings."""

    tensor: torch.Tensor
    source_width: int
    warnings: list[str] = field(default_factory=list)


def line_to_u8(img: np.ndarray) -> np.ndarray:
    """A prepared line (float, ink = 1) as 8 bits (ink = 255), as ``load_lineset`` stores it."""
    return np.clip(np.round(img * 255.0), 0, 255).astype(np.uint8)


def u8_to_tensor(u8: np.ndarray) -> torch.Tensor:
    """An 8-bit prepared line (ink = 255) as the model's ``[1, H, W]`` float input."""
    return torch.from_numpy(u8.astype(np.float32) / 255.0)[None]


def image_height(config: dict) -> int:
    """The line height an image model reads (``preprocessing.height`` of its file)."""
    return int(config.get("preprocessing", {}).get("height", 48))


def prepare_image(gray: np.ndarray, config: dict) -> torch.Tensor:
    """2-D gray → ``[1, H, W]`` input of the image model of ``config``, 8-bit rounded like
    ``evaluate``'s lines (the ``preprocess`` capability of the image architectures)."""
    return u8_to_tensor(line_to_u8(prepare_line(gray, image_height(config))))


def preprocessor(config: dict, default: Callable | None = None) -> Callable:
    """The ``preprocess`` capability of ``config``'s architecture (``f(raw, config)``);
    ``default`` (else :func:`prepare_image`) for a file whose architecture declares none (an
    ONNX sidecar's own). Ink architectures declare
    :func:`inkpack.infer.ink_preprocess.prepare_ink`."""
    from inkpack.models import REGISTRY
    from inkpack.models.registry import load_capability

    spec = REGISTRY.get(config.get("arch", ""))
    if spec is None or spec.preprocess is None:
        return default or prepare_image
    return load_capability(spec.preprocess)


def to_gray(x, max_pixels: int = DEFAULT_MAX_PIXELS, height: int | None = None,
            max_width: int | None = None) -> np.ndarray:
    """Any supported image input → 2-D uint8 gray (paper light or dark: ``prepare_line`` decides).
    Given the model's ``height``, a file or bytes whose line would be wider than ``max_width``
    once scaled to it is refused from its header (``InputTooLargeError`` naming the file)."""
    if isinstance(x, (str, os.PathLike, bytes, bytearray)):
        return load_gray(bytes(x) if isinstance(x, bytearray) else x, max_pixels=max_pixels,
                         height=height or None, max_width=max_width)
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover
        Image = None
    if Image is not None and isinstance(x, Image.Image):
        buf = io.BytesIO()
        x.save(buf, format="PNG")
        return load_gray(buf.getvalue(), name="<PIL image>", max_pixels=max_pixels)
    if isinstance(x, np.ndarray):
        return _array_gray(x, max_pixels)
    raise InkpackError(
        f"recognize: unsupported input type {type(x).__name__} (give a path, bytes, a numpy gray "
        "array, a PIL image, an Ink, or a list of them)"
    )


def _array_gray(a: np.ndarray, max_pixels: int) -> np.ndarray:
    if a.ndim == 3 and a.shape[2] in (1, 3, 4):
        a = a[:, :, 0] if a.shape[2] == 1 else a[:, :, :3].astype(np.float64) @ [0.299, 0.587, 0.114]
    if a.ndim != 2:
        raise BadSampleError(f"<array>: expected a 2-D gray image (or HxWx3/4), got shape {a.shape}")
    if a.shape[0] < 1 or a.shape[1] < 1:
        raise BadSampleError(f"<array>: image has no pixels ({a.shape[1]}x{a.shape[0]})")
    if a.size > max_pixels:
        raise InputTooLargeError(f"<array>: image too large ({a.size} pixels > limit {max_pixels})")
    if a.dtype == np.uint8:
        return a
    f = a.astype(np.float64)
    if not np.isfinite(f).all():
        raise BadSampleError("<array>: image has NaN or infinite values")
    if f.max() <= 1.0 and f.min() >= 0.0:
        f = f * 255.0  # a float image in [0, 1]
    return np.clip(np.round(f), 0, 255).astype(np.uint8)


def prepare_input(x, prepare: Callable[[np.ndarray], torch.Tensor], height: int,
                  max_pixels: int = DEFAULT_MAX_PIXELS, max_width: int | None = None) -> PreparedImage:
    """One raw input → :class:`PreparedImage`: read as gray (size-checked), warnings, ``prepare``d."""
    from inkpack.data.images import check_line_size, line_image_warnings

    gray = to_gray(x, max_pixels, height=height, max_width=max_width)
    if max_width is not None:  # arrays and PIL images (files were checked from their header)
        check_line_size(gray.shape[1], gray.shape[0], height, max_width=max_width)
    return PreparedImage(prepare(gray), int(gray.shape[1]), line_image_warnings(gray))
