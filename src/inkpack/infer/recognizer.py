"""The one recognizer: preprocess → backend (PyTorch or ONNX Runtime) → decode → ``Recognition``.

Used by the Python API (``inkpack.load``), the service, the command line (``recognize``,
``evaluate``, ``demo``, pages) and ``report``, for line images and for ink (characters and
lines). One answer per input: a line gives the same text whatever path it takes and whatever
batch it shares.

* Preprocessing: the architecture's ``preprocess`` capability (:mod:`inkpack.infer.preprocess`,
  :mod:`inkpack.infer.ink_preprocess`).
* Batching: image lines sorted by width, ``batch_size`` at a time; the CNN-DBLSTM models mask
  their padding; a backend whose output depends on the batch (dynamic int8 activations:
  ``per_example``) runs each line alone; a backend that is not thread-safe (torch) is locked.
  Ink runs in input order, ``batch_size`` (32) samples a call.
* Decoding: greedy alignment (confidences, positions), or the beam ``decoder``'s text; a
  character model's top ``top_k`` classes (:mod:`inkpack.infer.decode`).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from inkpack.data.alphabet import Alphabet
from inkpack.data.images import DEFAULT_MAX_PIXELS
from inkpack.decode.options import chosen, model_decoder
from inkpack.decode.recognition import Recognition
from inkpack.errors import InkpackError
from inkpack.infer.backend import INK_KINDS, TorchBackend, TorchInkBackend, open_backend
from inkpack.infer.decode import char_recognition, ink_line_recognition, recognitions, texts
from inkpack.infer.inputs import is_ink_input
from inkpack.infer.preprocess import PreparedImage, image_height, prepare_input, preprocessor
from inkpack.models.io import input_kind as kind_of

__all__ = ["Recognizer", "open_recognizer", "width_batches"]


def width_batches(widths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Indices sorted by width (stable), cut into batches of ``batch_size``: little padding."""
    order = sorted(range(len(widths)), key=widths.__getitem__)
    step = max(1, int(batch_size))
    return [order[s : s + step] for s in range(0, len(order), step)]


class Recognizer:
    """Line images or ink → :class:`Recognition` s. ``backend``: a :mod:`inkpack.infer.backend`
    backend (an ``nn.Module`` is wrapped in the PyTorch backend of its kind); ``decoder``: a
    :class:`inkpack.decode.beam.Decoder`, its options, or None / ``"greedy"`` (greedy; line
    models only; :func:`open_recognizer` gives a model its own by default); ``max_width``: the
    widest image line accepted after scaling (None: ``max_line_width()``); ``input_kind``:
    ``image``, ``ink`` or ``char`` (None: the backend's, else the config's); ``top_k``: the
    candidates of a character model."""

    def __init__(self, backend, config: dict, alphabet: Alphabet, decoder=None, *, name: str = "model",
                 preprocess=None, height: int | None = None, max_pixels: int = DEFAULT_MAX_PIXELS,
                 batch_size: int | None = None, max_width: int | None = None, input_kind: str | None = None,
                 top_k: int = 5) -> None:
        kind = input_kind or getattr(backend, "kind", None) or kind_of(config)
        decoder = chosen(decoder)
        if kind not in ("image", *INK_KINDS):
            raise InkpackError(f"{name}: unknown input kind {kind!r}")
        if decoder is not None and kind == "char":
            raise InkpackError(f"{name}: a character classifier has no CTC output to beam-search "
                               "(decoders apply to line models)")
        if isinstance(backend, nn.Module):
            backend = TorchBackend(backend) if kind == "image" else TorchInkBackend(backend, kind)
        self.engine, self.input_kind, self.top_k = backend, kind, top_k
        self.config, self.alphabet, self.decoder, self.name = config, alphabet, decoder, name
        self.is_ink = kind in INK_KINDS
        self.height = None if self.is_ink else int(height or image_height(config))
        if preprocess is None:
            from inkpack.infer.ink_preprocess import prepare_ink

            preprocess = preprocessor(config, prepare_ink if self.is_ink else None)
        self.preprocess = preprocess
        self.max_pixels, self.max_width = max_pixels, max_width
        self.batch_size = batch_size or (32 if self.is_ink else 16)
        self.width_factor = getattr(self.engine, "width_factor", None)
        self.per_example = bool(getattr(self.engine, "per_example", False))
        self._lock = None if getattr(self.engine, "thread_safe", False) else threading.Lock()

    @classmethod
    def load(cls, path: str | os.PathLike | None = None, decoder=None, threads: int | None = 1,
             device: str | None = None, **options) -> Recognizer:
        return open_recognizer(path, threads=threads, device=device, decoder=decoder, **options)

    @property
    def backend(self) -> str:
        """``torch`` or ``onnxruntime``."""
        return getattr(self.engine, "name", "torch")

    @property
    def model(self):
        """The PyTorch module (None for ONNX Runtime)."""
        return getattr(self.engine, "model", None)

    @property
    def rec(self) -> Recognizer:  # the name of the wrapped line recognizer before the two were one
        return self

    def info(self) -> dict:
        if self.is_ink:
            return {"name": self.name, "input_kind": self.input_kind, "kind": self.input_kind,
                    "arch": self.config.get("arch"), "backend": self.backend,
                    "classes": self.alphabet.num_classes, "symbols": len(self.alphabet.symbols)}
        return {"name": self.name, "input_kind": self.input_kind, "arch": self.config.get("arch"),
                "backend": self.backend, "height": self.height, "width_factor": self.width_factor,
                "classes": self.alphabet.num_classes, "alphabet": "".join(self.alphabet.symbols)}

    # ---------------------------------------------------------------- preprocess
    def prepare(self, gray: np.ndarray) -> torch.Tensor:
        """2-D gray → ``[1, H, W]`` model input, 8-bit rounded like ``evaluate``'s lines."""
        return self.preprocess(gray, self.config)

    def prepare_input(self, x):
        """Any image input (path, bytes, array, PIL image) → :class:`PreparedImage`; any ink input
        (``Ink``, ``{"strokes": ...}``, InkML path or bytes) → ``PreparedInk``."""
        if self.is_ink:
            return self.preprocess(x, self.config)
        return prepare_input(x, self.prepare, self.height, self.max_pixels, self.max_width)

    # ---------------------------------------------------------------- backend
    def logits(self, images: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-probabilities ``[T, B, K]`` and lengths for prepared ``[1, H, W]`` tensors (frames
        past a line's length are padding: zero when lines run one by one)."""
        images = list(images)
        if self.per_example and len(images) > 1:
            outs = [self.logits([im]) for im in images]
            lengths = torch.cat([torch.as_tensor(n).reshape(-1) for _, n in outs])
            lp = torch.nn.utils.rnn.pad_sequence([o[: int(n), 0] for (o, _), n in zip(outs, lengths)])
            return lp, lengths
        if self._lock is None:
            return self.engine.logits(images)
        with self._lock, torch.inference_mode():
            return self.engine.logits(images)

    # ---------------------------------------------------------------- decode
    def decode(self, log_probs: torch.Tensor, lengths: torch.Tensor) -> list[str]:
        """Texts of a :meth:`logits` output (greedy, or the beam ``decoder``'s)."""
        return texts(log_probs.float().numpy(), lengths, self.alphabet, self.decoder)

    def run_prepared(self, items: Sequence[PreparedImage]) -> list[Recognition]:
        """One forward pass over ``items`` (the server's dynamic batches come here)."""
        if not items:
            return []
        if self.is_ink:
            return self._run_ink(items)
        lp, lengths = self.logits([p.tensor for p in items])
        return recognitions(lp.float().numpy(), lengths, items, self.alphabet, self.decoder, self.width_factor)

    def _run_ink(self, items: Sequence) -> list[Recognition]:
        out = self.logits([p.features for p in items])
        if self.input_kind == "char":
            return [char_recognition(out[b], self.alphabet, self.top_k) for b in range(len(items))]
        logits, out_len = out
        return [ink_line_recognition(logits[:, b], int(out_len[b]), p.point_x, self.alphabet, self.decoder)
                for b, p in enumerate(items)]

    def run_batched(self, items: Sequence, batch_size: int | None = None) -> list[Recognition]:
        """``items`` in batches of ``batch_size`` (images: width-sorted; ink: in input order);
        results in input order."""
        step = max(1, int(batch_size or self.batch_size))
        if self.is_ink:
            return [r for s in range(0, len(items), step) for r in self.run_prepared(items[s : s + step])]
        out: list[Recognition | None] = [None] * len(items)
        for idx in width_batches([int(p.tensor.shape[-1]) for p in items], step):
            for i, r in zip(idx, self.run_prepared([items[i] for i in idx])):
                out[i] = r
        return out

    def recognize_prepared(self, images: Sequence[torch.Tensor], batch_size: int | None = None) -> list[str]:
        """Texts of prepared ``[1, H, W]`` tensors (``evaluate``, ``demo``, ``report``), in order."""
        items = [PreparedImage(t, int(t.shape[-1])) for t in images]
        return [r.text for r in self.run_batched(items, batch_size)]

    def recognize(self, x):
        """One input → one ``Recognition``; a list/tuple → a list, run in batches (images:
        width-sorted)."""
        if isinstance(x, (list, tuple)):
            return self.run_batched([self.prepare_input(v) for v in x])
        if not self.is_ink and is_ink_input(x):
            raise InkpackError(f"{self.name}: this is an image model; load an ink model to recognize ink")
        return self.run_prepared([self.prepare_input(x)])[0]


def open_recognizer(path: str | os.PathLike | None = None, *, threads: int | None = 1, device: str | None = None,
                    decoder=None, name: str | None = None, **options) -> Recognizer:
    """The :class:`Recognizer` of the model at ``path`` (None: the bundled one; ``.onnx``: ONNX
    Runtime), image or ink, on ``threads`` (torch's are set when not None) and ``device``;
    ``decoder``: None → the model's own (its JSON's ``decoder``, else greedy), ``"greedy"``, a
    :class:`inkpack.decode.beam.Decoder` or its options;
    ``options``: ``max_pixels``, ``batch_size``, ``max_width`` (images), ``top_k`` (characters)."""
    from pathlib import Path

    from inkpack.models.io import is_onnx, resolve

    if threads is not None and not is_onnx(path):
        torch.set_num_threads(threads)
    backend, cfg, alphabet = open_backend(path, threads or 1, device)
    where = Path(str(path)) if is_onnx(path) else resolve(None if path is None else str(path)).with_suffix(".json")
    if name is None:
        name = where.stem
    if decoder is None:
        decoder = model_decoder(cfg, where)
    return Recognizer(backend, cfg, alphabet, decoder, name=name, **options)
