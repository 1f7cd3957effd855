"""ONNX Runtime backend for ink models: an ``InkRecognizer`` whose forward is a session."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from inkpack.data.alphabet import Alphabet
from inkpack.deploy.ink import InkRecognizer
from inkpack.deploy.runtime import make_session, read_sidecar


class OnnxInkRecognizer(InkRecognizer):
    backend = "onnxruntime"

    def __init__(self, path: str | Path, threads: int = 1, top_k: int = 5, decoder=None) -> None:
        cfg = read_sidecar(path)
        kind = cfg["onnx"].get("input_kind", "ink")
        super().__init__(torch.nn.Identity(), cfg, Alphabet.from_dict(cfg["alphabet"]), kind,
                         name=Path(path).stem, top_k=top_k, decoder=decoder)
        self.backend = "onnxruntime"
        self.session = make_session(path, threads)

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor):
        out = self.session.run(None, {"features": np.ascontiguousarray(feats.numpy(), dtype=np.float32),
                                      "lengths": lengths.numpy().astype(np.int64)})
        if self.input_kind == "char":
            return torch.from_numpy(out[0])
        return torch.from_numpy(out[0]), torch.from_numpy(out[1])


def load_ink_onnx(path, threads: int = 1, decoder=None):
    return OnnxInkRecognizer(path, threads=threads, decoder=decoder)
