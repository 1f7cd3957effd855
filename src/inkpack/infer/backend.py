"""Backends: the forward pass of a model, PyTorch or ONNX Runtime, behind one interface.

An image backend maps prepared lines (``[1, H, W]`` float tensors) to CTC log-probabilities
``[T, B, K]`` and output lengths ``[B]`` (CPU tensors) in one call; an ink backend
(:class:`TorchInkBackend`, :class:`OrtInkBackend`) maps per-point features (``[T, F]`` each) to
a character model's logits ``[B, K]`` or a line model's CTC logits ``[T, B, K]`` and lengths. Each says

* ``name``: ``"torch"`` or ``"onnxruntime"`` (what ``info()`` and ``evaluate --json`` report);
* ``per_example``: True when a line's output depends on its batch-mates (dynamic int8: one
  activation scale per call), so :class:`inkpack.infer.recognizer.Recognizer` runs each line alone;
* ``thread_safe``: ORT sessions are; torch modules are not documented to be (the recognizer locks);
* ``width_factor``: input pixels per output frame (None: no fixed factor, MDLSTM).

All are opened from files through :mod:`inkpack.models.io` (:func:`open_backend`), which picks
the kind by :func:`inkpack.models.io.input_kind` (``image``, ``ink`` lines or ``char``acters).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from inkpack.batching import pad_collate
from inkpack.data.alphabet import Alphabet
from inkpack.errors import InkpackError, ModelFileError
from inkpack.models.io import input_kind, is_onnx, read_sidecar

__all__ = ["OrtBackend", "OrtInkBackend", "TorchBackend", "TorchInkBackend", "batch_dependent", "make_session",
           "open_backend"]


def batch_dependent(model: nn.Module) -> bool:
    """True when an example's output depends on its batch-mates even with exact masking:
    dynamically quantized layers compute one int8 activation scale over the whole batch."""
    dyn = torch.ao.nn.quantized.dynamic
    kinds = tuple(k for k in (getattr(dyn, n, None) for n in ("Linear", "LSTM", "GRU", "LSTMCell")) if k)
    return any(isinstance(m, kinds) for m in model.modules())


class TorchBackend:
    """A PyTorch line model ``model(images, heights, widths) -> (logits, lengths)`` on ``device``
    (inputs go there, results come back to the CPU as float; sizes stay on the CPU)."""

    name = "torch"
    thread_safe = False

    def __init__(self, model: nn.Module, device: torch.device | str | None = None) -> None:
        self.device = torch.device(device) if device is not None else None
        if self.device is not None and self.device.type != "cpu":
            model = model.to(self.device)
        self.model = model.eval()
        self.per_example = batch_dependent(model)
        wf = getattr(model, "width_factor", None)
        self.width_factor = int(wf) if wf else None

    @torch.inference_mode()
    def logits(self, images: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        batch = pad_collate(list(images))
        x = batch.images
        if self.device is not None and self.device.type != "cpu":
            x = x.to(self.device, non_blocking=True)
        logits, lengths = self.model(x, batch.heights, batch.widths)
        return logits.float().cpu().log_softmax(-1), lengths.cpu()  # log_softmax on the CPU, as always


def make_session(path: str | Path, threads: int = 1):
    """An ONNX Runtime CPU session on ``threads`` intra-op threads; a bad file is one line."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = max(1, int(threads))
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as e:  # ORT raises its own Fail/InvalidGraph types
        raise ModelFileError(f"{path}: ONNX Runtime cannot load the model ({e})") from None


class OrtBackend:
    """An exported image model (``images``, ``widths`` → ``log_probs``, ``lengths``) in ONNX Runtime.
    Its facts (width factor, int8) come from the sidecar written by ``inkpack export``."""

    name = "onnxruntime"
    thread_safe = True  # InferenceSession.run is

    def __init__(self, path: str | Path, threads: int = 1, facts: dict | None = None) -> None:
        facts = read_sidecar(path)["onnx"] if facts is None else facts
        self.path = Path(path)
        self.session = make_session(path, threads)
        self.width_factor = int(facts.get("width_factor", 1)) or None
        # int8 activations are quantized with one scale per call: int8 models run one line at a time
        self.per_example = bool(facts.get("int8"))

    def logits(self, images: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        batch = pad_collate(list(images))
        lp, lengths = self.session.run(
            None,
            {"images": np.ascontiguousarray(batch.images.numpy(), dtype=np.float32),
             "widths": batch.widths.numpy().astype(np.int64)},
        )
        return torch.from_numpy(lp), torch.from_numpy(lengths)


INK_KINDS = ("char", "ink")


def pad_features(features: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-point features ``[T_i, F]`` → zero-padded ``[B, T, F]`` and lengths ``[B]``."""
    lengths = torch.tensor([len(f) for f in features], dtype=torch.long)
    return torch.nn.utils.rnn.pad_sequence(list(features), batch_first=True), lengths


def _check_ink_kind(kind: str, where) -> str:
    if kind not in INK_KINDS:
        raise InkpackError(f"{where}: not an ink model (input kind {kind!r})")
    return kind


class TorchInkBackend:
    """A PyTorch ink model ``model(features [B, T, F], lengths [B])`` (on the CPU): a ``char``
    classifier answers logits ``[B, K]``, an ``ink`` line model ``(logits [T, B, K], lengths)``."""

    name = "torch"
    thread_safe = False
    per_example = False
    width_factor = None

    def __init__(self, model: nn.Module, kind: str) -> None:
        self.model, self.kind = model.eval(), _check_ink_kind(kind, type(model).__name__)

    @torch.inference_mode()
    def logits(self, features: Sequence[torch.Tensor]):
        out = self.model(*pad_features(features))
        if self.kind == "char":
            return out[0] if isinstance(out, tuple) else out
        return out


class OrtInkBackend:
    """An exported ink model (``features``, ``lengths`` → logits [, ``lengths``]) in ONNX Runtime."""

    name = "onnxruntime"
    thread_safe = True
    per_example = False
    width_factor = None

    def __init__(self, path: str | Path, kind: str, threads: int = 1) -> None:
        self.path, self.kind = Path(path), _check_ink_kind(kind, path)
        self.session = make_session(path, threads)

    def logits(self, features: Sequence[torch.Tensor]):
        feats, lengths = pad_features(features)
        out = self.session.run(None, {"features": np.ascontiguousarray(feats.numpy(), dtype=np.float32),
                                      "lengths": lengths.numpy().astype(np.int64)})
        if self.kind == "char":
            return torch.from_numpy(out[0])
        return torch.from_numpy(out[0]), torch.from_numpy(out[1])


def open_backend(path: str | Path | None = None, threads: int = 1, device: str | None = None
                 ) -> tuple[TorchBackend | OrtBackend | TorchInkBackend | OrtInkBackend, dict, Alphabet]:
    """The backend of the model at ``path`` (None: the bundled one; ``.onnx``: ONNX Runtime, on
    the CPU), its config and alphabet; the backend's kind follows the model's ``input_kind``.
    PyTorch image models get BatchNorm folded into their convolutions (inference only) and run on
    ``device`` (auto | cpu | cuda, ``resolve_device``); ink models run on the CPU."""
    if is_onnx(path):
        cfg = read_sidecar(path)
        kind = input_kind(cfg)
        alphabet = Alphabet.from_dict(cfg["alphabet"])
        if kind != "image":
            return OrtInkBackend(path, kind, threads), cfg, alphabet
        return OrtBackend(path, threads, cfg["onnx"]), cfg, alphabet
    from inkpack.devices import resolve_device
    from inkpack.models.io import load_model
    from inkpack.nn.conv import fold_batchnorm

    model, cfg, alphabet = load_model(None if path is None else str(path))
    kind = input_kind(cfg)
    if kind != "image":
        return TorchInkBackend(model, kind), cfg, alphabet
    fold_batchnorm(model)
    dev = resolve_device(device or "cpu")
    return TorchBackend(model, dev if dev.type != "cpu" else None), cfg, alphabet
