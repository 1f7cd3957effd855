"""The Python API: ``inkpack.load(path)`` → a recognizer with a thread-safe ``.recognize(x)``.

``load()`` picks the backend from the path: nothing → the bundled offline model
(``model_io.resolve``); ``*.onnx`` → ONNX Runtime; otherwise the model's config, whose
architecture's ``input_kind`` says whether it reads images or ink.

``recognize`` takes one input or a list (a list runs batched) and returns ``Recognition``
objects: the text, one confidence per character (the highest probability of that
character over the CTC frames it was read at) and one position per character. For images a
position is the ``[x0, x1)`` pixel range of the *input* image covered by those frames (frame
``f`` covers pixels ``[f * width_factor, (f + 1) * width_factor)`` of the resized line). Ink
recognizers live in :mod:`inkpack.deploy.ink` and return the same objects.
"""

from __future__ import annotations

import io
import math
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from inkpack.data.images import DEFAULT_MAX_PIXELS, load_gray
from inkpack.decode.recognition import Recognition
from inkpack.errors import BadSampleError, InkpackError, InputTooLargeError


@dataclass
class PreparedImage:
    """A model-ready line ``[1, H, W]``, the input width it came from and the input's warnings."""

    tensor: torch.Tensor
    source_width: int
    warnings: list[str] = field(default_factory=list)


_IMAGE_MAGIC = (b"\x89PNG", b"\xff\xd8\xff", b"GIF8", b"BM", b"II*\x00", b"MM\x00*", b"\x00\x00\x00\x0cjP",
                b"\xff\x4f\xff\x51", b"P5", b"P2", b"P6", b"P3")
_EXT_KINDS = {".inkml": "inkml", ".pot": "pot", ".npz": "npz", ".xml": "xml"}


def sniff_kind(head: bytes) -> str | None:
    """What the first bytes of a file are: ``image``, ``inkml``, ``iamondb`` (IAM-OnDB stroke
    XML), ``pagexml``, ``npz``, or None when the content does not say."""
    if head.startswith(_IMAGE_MAGIC) or (head[:4] == b"RIFF" and head[8:12] == b"WEBP"):
        return "image"
    if head.startswith(b"PK\x03\x04"):
        return "npz"
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if text.startswith(b"<"):
        for tag, kind in ((b"<WhiteboardCaptureSession", "iamondb"), (b"<PcGts", "pagexml"),
                          (b"<ink", "inkml")):
            if tag in head:
                return kind
        low = head.lower()
        if b"<ink" in low or b"inkml" in low:
            return "inkml"
        return "xml"
    return None


def file_kind(path: str | os.PathLike) -> str:
    """``sniff_kind`` of a file's first 4 KiB, else its extension (``.pot`` has no magic number);
    ``image`` for anything else (the image reader names the file if it is not one)."""
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError:
        head = b""
    kind = sniff_kind(head)
    if kind is not None and kind != "xml":
        return kind
    return _EXT_KINDS.get(Path(path).suffix.lower(), "image" if kind is None else "xml")


def is_ink_input(x) -> bool:
    from inkpack.data.ink import Ink

    if isinstance(x, (Ink, dict)):
        return True
    if isinstance(x, (str, os.PathLike)):
        return str(x).lower().endswith(".inkml") or (os.path.isfile(x) and file_kind(x) == "inkml")
    if isinstance(x, (bytes, bytearray)):
        head = bytes(x[:512]).lstrip()
        return head.startswith(b"<") and b"<ink" in bytes(x[:4096])
    return False


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


def char_positions(starts: Sequence[int], ends: Sequence[int], width_factor: float,
                   resized_width: int, source_width: int) -> list[tuple[float, float]]:
    """Frame spans ``[s, e]`` (inclusive) → pixel ranges ``[x0, x1)`` of the input image."""
    scale = source_width / max(1, resized_width)
    out = []
    for s, e in zip(starts, ends):
        x0 = min(s * width_factor, resized_width) * scale
        x1 = min((e + 1) * width_factor, resized_width) * scale
        out.append((math.floor(x0), int(min(source_width, math.ceil(x1)))))
    return out


class ImageRecognizer:
    """Line images → ``Recognition`` with a PyTorch or ONNX Runtime ``LineRecognizer`` inside."""

    input_kind = "image"

    def __init__(self, line_recognizer, name: str = "model", max_pixels: int = DEFAULT_MAX_PIXELS,
                 batch_size: int = 16, decoder=None, max_width: int | None = None) -> None:
        self.rec = line_recognizer
        self.max_width = max_width  # widest line after scaling; None: max_line_width()
        self.decoder = decoder  # a decode.beam.Decoder; None = greedy
        self.name = name
        self.max_pixels = max_pixels
        self.batch_size = batch_size
        self.backend = getattr(line_recognizer, "backend", "torch")
        # torch modules are not documented as safe for concurrent forward passes; ORT sessions are
        self._lock = threading.Lock() if self.backend == "torch" else None
        # pixels per output frame; models without a fixed factor (MDLSTM) get width / frames per line
        wf = getattr(line_recognizer.model, "width_factor", None)
        self.width_factor = int(wf) if wf else None

    @property
    def config(self) -> dict:
        return self.rec.config

    def info(self) -> dict:
        cfg = self.rec.config
        return {"name": self.name, "input_kind": self.input_kind, "arch": cfg.get("arch"),
                "backend": self.backend, "height": self.rec.height, "width_factor": self.width_factor,
                "classes": self.rec.alphabet.num_classes, "alphabet": "".join(self.rec.alphabet.symbols)}

    def prepare_input(self, x) -> PreparedImage:
        from inkpack.data.images import check_line_size, line_image_warnings

        gray = to_gray(x, self.max_pixels, height=self.rec.height, max_width=self.max_width)
        if self.max_width is not None:  # arrays and PIL images (files were checked from their header)
            check_line_size(gray.shape[1], gray.shape[0], self.rec.height, max_width=self.max_width)
        warnings = line_image_warnings(gray)
        return PreparedImage(self.rec.prepare(gray), int(gray.shape[1]), warnings)

    def run_prepared(self, items: Sequence[PreparedImage]) -> list[Recognition]:
        """One forward pass over ``items`` (the server's dynamic batches come here)."""
        from inkpack.decode.greedy import greedy_with_alignment

        if not items:
            return []
        if self._lock is not None:
            with self._lock, torch.inference_mode():
                lp, lengths = self.rec.logits([p.tensor for p in items])
        else:
            lp, lengths = self.rec.logits([p.tensor for p in items])
        lp = lp.float().numpy()
        out = []
        for b, p in enumerate(items):
            al = greedy_with_alignment(lp[:, b], int(lengths[b]))
            width = int(p.tensor.shape[-1])
            wf = self.width_factor or width / max(1, int(lengths[b]))
            pos = char_positions(al.starts, al.ends, wf, width, p.source_width)
            greedy = Recognition(al.text(self.rec.alphabet), [float(c) for c in al.confidences], pos,
                                 warnings=list(getattr(p, "warnings", ())))
            out.append(greedy.with_decoder(self.decoder, lp[: int(lengths[b]), b], self.rec.alphabet))
        return out

    def recognize(self, x):
        """One input → one ``Recognition``; a list/tuple → a list, run in width-sorted batches."""
        if isinstance(x, (list, tuple)):
            prepared = [self.prepare_input(v) for v in x]
            order = sorted(range(len(prepared)), key=lambda i: prepared[i].tensor.shape[-1])
            results: list[Recognition | None] = [None] * len(prepared)
            for s in range(0, len(order), self.batch_size):
                idx = order[s : s + self.batch_size]
                for i, r in zip(idx, self.run_prepared([prepared[i] for i in idx])):
                    results[i] = r
            return results
        if is_ink_input(x):
            raise InkpackError(f"{self.name}: this is an image model; load an ink model to recognize ink")
        return self.run_prepared([self.prepare_input(x)])[0]


def _input_kind(cfg: dict) -> str:
    from inkpack.models import REGISTRY

    if cfg.get("input_kind"):
        return str(cfg["input_kind"])
    spec = REGISTRY.get(cfg.get("arch", ""))
    return spec.input_kind if spec is not None else "image"


def load(path: str | os.PathLike | None = None, *, threads: int | None = None,
         max_pixels: int = DEFAULT_MAX_PIXELS, batch_size: int = 16, decoder=None, max_width: int | None = None):
    """A recognizer for ``path`` (None → the bundled offline model; ``.onnx`` → ONNX Runtime).

    ``decoder`` (image and ink line models): a :class:`inkpack.decode.beam.Decoder` or its options as a dict
    (``{"kind": "beam+lm", "lm": "lm.arpa"}``). Confidences and positions come from the greedy
    alignment, so they are left empty for lines where the beam's text differs from greedy's.
    ``max_width`` (image models): the widest line accepted after scaling to the model's height
    (default ``INKPACK_MAX_LINE_WIDTH`` or 16,000 px); wider inputs raise ``InputTooLargeError``.
    """
    if decoder is not None:
        from inkpack.decode.beam import as_decoder

        decoder = as_decoder(decoder)
    if path is not None and str(path).lower().endswith(".onnx"):
        from inkpack.deploy.runtime import read_sidecar

        kind = read_sidecar(path)["onnx"].get("input_kind", "image")
        if kind != "image":
            from inkpack.deploy.ink_onnx import load_ink_onnx

            return load_ink_onnx(path, threads=threads or 1, decoder=decoder)
        from inkpack.deploy.runtime import OnnxLineRecognizer

        rec = OnnxLineRecognizer(path, threads=threads or 1)
        return ImageRecognizer(rec, Path(path).stem, max_pixels, batch_size, decoder, max_width)
    from inkpack.model_io import load_model, read_config, resolve

    stem = resolve(None if path is None else str(path))
    if threads is not None:
        torch.set_num_threads(threads)
    kind = _input_kind(read_config(stem))
    if kind in ("ink", "char"):
        from inkpack.deploy.ink import InkRecognizer

        model, cfg, alphabet = load_model(str(stem))
        return InkRecognizer(model, cfg, alphabet, kind, name=stem.name, decoder=decoder)
    from inkpack.recognizer import LineRecognizer

    return ImageRecognizer(LineRecognizer.load(str(stem)), stem.name, max_pixels, batch_size, decoder, max_width)


# ---------------------------------------------------------------------- CLI back-ends
class OnDevice(torch.nn.Module):
    """Runs a line model on ``device``: images go there, results come back to the CPU; sizes
    (heights, widths) stay on the CPU as the models expect. Attributes read through."""

    def __init__(self, model: torch.nn.Module, device: torch.device) -> None:
        super().__init__()
        self.inner = model.to(device)
        self.device = device

    def forward(self, images: torch.Tensor, *sizes):
        out = self.inner(images.to(self.device, non_blocking=True), *sizes)
        if isinstance(out, tuple):
            return tuple(o.float().cpu() if o.is_floating_point() else o.cpu() for o in out)
        return out.float().cpu()

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self._modules["inner"], name)


def line_backend(model: str | os.PathLike | None = None, decoder=None, threads: int = 1,
                 device: str | None = None):
    """The ``LineRecognizer`` the CLI uses for ``model`` (None: bundled; ``.onnx``: ONNX Runtime,
    which runs on the CPU), on ``device`` (auto | cpu | cuda, via ``resolve_device``)."""
    if model is not None and str(model).lower().endswith(".onnx"):
        from inkpack.deploy.runtime import OnnxLineRecognizer

        return OnnxLineRecognizer(model, threads=threads, decoder=decoder)
    from inkpack.devices import resolve_device
    from inkpack.recognizer import LineRecognizer

    torch.set_num_threads(threads)
    dev = resolve_device(device or "cpu")
    rec = LineRecognizer.load(None if model is None else str(model), decoder=decoder)
    if dev.type != "cpu":
        rec.model = OnDevice(rec.model, dev).eval()
    return rec
