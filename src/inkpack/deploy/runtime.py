"""ONNX Runtime backends with the interfaces of the PyTorch ones.

``OnnxLineRecognizer`` is a drop-in ``LineRecognizer`` (same ``prepare``, ``logits``,
``decode``, ``recognize``): only the forward pass runs in ONNX Runtime. The model's config
comes from the sidecar ``MODEL.onnx.json`` written by :func:`inkpack.deploy.export.export_onnx`.
``InferenceSession.run`` is thread-safe, so no lock is needed around it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from inkpack.batching import pad_collate
from inkpack.data.alphabet import Alphabet
from inkpack.deploy.export import sidecar_path
from inkpack.errors import InkpackError
from inkpack.recognizer import LineRecognizer


def read_sidecar(onnx_path: str | Path) -> dict:
    p = Path(onnx_path)
    if not p.is_file():
        raise InkpackError(f"{p}: ONNX model not found")
    side = sidecar_path(p)
    if not side.is_file():
        raise InkpackError(f"{p}: missing {side.name} (export with `inkpack export` to write it)")
    from inkpack.model_io import read_json_fields

    return read_json_fields(side, ("alphabet", "onnx"))


def make_session(path: str | Path, threads: int = 1):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = max(1, int(threads))
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as e:  # ORT raises its own Fail/InvalidGraph types
        raise InkpackError(f"{path}: ONNX Runtime cannot load the model ({e})") from None


class _OnnxModelInfo:
    """Stands in for ``model`` where callers read ``width_factor`` / ``height``."""

    def __init__(self, facts: dict) -> None:
        self.width_factor = int(facts.get("width_factor", 1))
        self.height = int(facts.get("height", 0))

    def eval(self) -> _OnnxModelInfo:
        return self


class OnnxLineRecognizer(LineRecognizer):
    """A ``LineRecognizer`` whose forward pass is an ONNX Runtime session."""

    backend = "onnxruntime"

    def __init__(self, path: str | Path, threads: int = 1, decoder=None) -> None:
        cfg = read_sidecar(path)
        if cfg["onnx"].get("input_kind", "image") != "image":
            raise InkpackError(f"{path}: not an image model (input kind {cfg['onnx'].get('input_kind')!r})")
        super().__init__(_OnnxModelInfo(cfg["onnx"]), cfg, Alphabet.from_dict(cfg["alphabet"]), decoder)
        self.path = Path(path)
        self.session = make_session(path, threads)
        # int8 activations are quantized with one scale per call: a line would depend on its
        # batch-mates, so int8 models run one line at a time (exact, as alone)
        self.per_example = bool(cfg["onnx"].get("int8"))

    @classmethod
    def load(cls, path: str | None = None, decoder=None, threads: int = 1) -> OnnxLineRecognizer:
        if path is None:
            raise InkpackError("ONNX backend: give the .onnx file")
        return cls(path, threads=threads, decoder=decoder)

    def logits(self, images: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-probabilities ``[T, B, K]`` and lengths, as torch tensors like the parent's."""
        images = list(images)
        if self.per_example and len(images) > 1:
            return self.one_by_one(images)
        batch = pad_collate(images)
        lp, lengths = self.session.run(
            None,
            {"images": np.ascontiguousarray(batch.images.numpy(), dtype=np.float32),
             "widths": batch.widths.numpy().astype(np.int64)},
        )
        return torch.from_numpy(lp), torch.from_numpy(lengths)
