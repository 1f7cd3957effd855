"""Ink recognizers for the API and the server: character classifiers and online line models.

Both take an ``Ink`` (or ``{"strokes": ...}`` / InkML path or bytes), turn it into the
per-point features of :mod:`inkpack.data.ink_preprocess` with the model's own preprocessing
settings (``config["preprocessing"]``), and return :class:`inkpack.api.Recognition`:

* ``char`` models (``lstm-char``): ``candidates`` = the top classes with softmax
  probabilities, ``text`` = the best one.
* ``ink`` line models (``online-blstm``, CTC): greedy text, per-character confidences and, as
  positions, the ``[x_min, x_max]`` of the input ink's points read at that character's frames.
"""

from __future__ import annotations

import dataclasses
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from inkpack.data.alphabet import Alphabet
from inkpack.decode.recognition import Recognition
from inkpack.errors import BadSampleError, InkpackError


@dataclass
class PreparedInk:
    features: torch.Tensor  # [T, F]
    point_x: np.ndarray  # x of the input point behind each feature row (for positions)


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
    from inkpack.data.ink_preprocess import PreprocessConfig

    names = {f.name for f in dataclasses.fields(PreprocessConfig)}
    given = cfg.get("preprocessing", {}) or {}
    return PreprocessConfig(**{k: v for k, v in given.items() if k in names})


def ink_features(ink, pcfg) -> tuple[np.ndarray, np.ndarray]:
    """Eval-time features ``[T, F]`` and the raw x of each kept point."""
    from inkpack.data.ink_preprocess import normalize, point_features, redundant_mask

    norm = normalize(ink, pcfg.center, pcfg.scale, 1.0)
    keep = redundant_mask(norm, pcfg.min_dist, pcfg.max_cos)
    feats = point_features(_masked(norm, keep))
    return feats, ink.xy()[keep, 0]


def _masked(ink, keep: np.ndarray):
    from inkpack.data.ink_preprocess import Flat

    return Flat.of(ink).masked(keep).to_ink(ink)


class InkRecognizer:
    """A PyTorch ink model behind a lock (``recognize`` may be called from many threads)."""

    def __init__(self, model: nn.Module, config: dict, alphabet: Alphabet, kind: str,
                 name: str = "ink-model", top_k: int = 5, decoder=None) -> None:
        if kind not in ("char", "ink"):
            raise InkpackError(f"{name}: not an ink model (input kind {kind!r})")
        if decoder is not None and kind == "char":
            raise InkpackError(f"{name}: a character classifier has no CTC output to beam-search "
                               "(decoders apply to line models)")
        self.decoder = decoder  # a decode.beam.Decoder for line models; None = greedy
        self.model = model.eval()
        self.config, self.alphabet, self.input_kind = config, alphabet, kind
        self.name, self.top_k = name, top_k
        self.pcfg = preprocess_config(config)
        self.backend = "torch"
        self._lock = threading.Lock()

    def info(self) -> dict:
        return {"name": self.name, "input_kind": self.input_kind, "kind": self.input_kind,
                "arch": self.config.get("arch"), "backend": self.backend,
                "classes": self.alphabet.num_classes, "symbols": len(self.alphabet.symbols)}

    def prepare_input(self, x) -> PreparedInk:
        feats, px = ink_features(to_ink(x), self.pcfg)
        if len(feats) == 0:
            raise BadSampleError("ink: no points left after preprocessing")
        return PreparedInk(torch.from_numpy(np.ascontiguousarray(feats, dtype=np.float32)), px)

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor):
        with self._lock, torch.inference_mode():
            return self.model(feats, lengths)

    def run_prepared(self, items: Sequence[PreparedInk]) -> list[Recognition]:
        if not items:
            return []
        lengths = torch.tensor([len(p.features) for p in items], dtype=torch.long)
        feats = torch.nn.utils.rnn.pad_sequence([p.features for p in items], batch_first=True)
        out = self.forward(feats, lengths)
        if self.input_kind == "char":
            logits = out[0] if isinstance(out, tuple) else out
            return [self._char_result(logits[b]) for b in range(len(items))]
        logits, out_len = out
        return [self._line_result(logits[:, b], int(out_len[b]), p) for b, p in enumerate(items)]

    def _label(self, k: int) -> str:
        """Class ``k`` is alphabet label ``k`` (models are built with ``alphabet.num_classes``)."""
        try:
            return self.alphabet.decode([k]) if k > 0 else ""
        except InkpackError:
            return ""

    def _char_result(self, logits: torch.Tensor) -> Recognition:
        p = logits.float().softmax(-1)
        k = min(self.top_k, p.shape[-1])
        top = torch.topk(p, k)
        cands = [(self._label(int(i)), float(v)) for v, i in zip(top.values, top.indices)]
        cands = [c for c in cands if c[0]]
        text = cands[0][0] if cands else ""
        return Recognition(text, [cands[0][1]] if cands else [], [], cands)

    def _line_result(self, logits: torch.Tensor, n: int, p: PreparedInk) -> Recognition:
        from inkpack.decode.greedy import greedy_with_alignment

        al = greedy_with_alignment(logits.float().numpy(), n)
        rate = max(1, round(len(p.point_x) / max(1, logits.shape[0])))  # points per frame
        pos = []
        for s, e in zip(al.starts, al.ends):
            xs = p.point_x[s * rate : (e + 1) * rate]
            pos.append((float(xs.min()), float(xs.max())) if len(xs) else (0.0, 0.0))
        text = al.text(self.alphabet)
        conf = [float(c) for c in al.confidences]
        prob = float(np.prod(conf)) if conf else 1.0
        greedy = Recognition(text, conf, pos, [(text, prob)])
        if self.decoder is None:
            return greedy
        return greedy.with_decoder(self.decoder, logits[:n].float().log_softmax(-1).numpy(), self.alphabet)

    def recognize(self, x):
        """One ink → one ``Recognition``; a list → a list, in one batched forward pass each 32."""
        if isinstance(x, (list, tuple)):
            prepared = [self.prepare_input(v) for v in x]
            out: list[Recognition] = []
            for s in range(0, len(prepared), 32):
                out += self.run_prepared(prepared[s : s + 32])
            return out
        return self.run_prepared([self.prepare_input(x)])[0]

