"""Helpers for the deployment tests: tiny models saved the shipped way, line images, ink.

The line model and line images live in :mod:`inkpack.testing` (the benchmarks use them too).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from inkpack.data.alphabet import Alphabet
from inkpack.models import build_model
from inkpack.models.io import save_model
from inkpack.testing import SYMBOLS, TINY_OPTS, line_png, make_line_model

__all__ = ["CHAR_SYMBOLS", "SYMBOLS", "TINY_OPTS", "char_model_config", "gray_of", "line_png", "make_ink_model",
           "make_line_model", "synth_stroke", "train_char_model"]


def gray_of(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("L"))


# ------------------------------------------------------------------ ink models
CHAR_SYMBOLS = "一丨〇"


def char_model_config(opts: dict) -> dict:
    return {"arch": "lstm-char", "options": opts, "alphabet": Alphabet(list(CHAR_SYMBOLS)).to_dict(),
            "preprocessing": {}}


def make_ink_model(root: Path, arch: str = "lstm-char", name: str | None = None, seed: int = 0,
                   **opts) -> Path:
    torch.manual_seed(seed)
    if arch == "lstm-char":
        opts = {"hidden1": 8, "hidden2": 16, "fc": 16, **opts}
        alphabet = Alphabet(list(CHAR_SYMBOLS))
    else:
        opts = {"hidden": 8, "layers": 2, **opts}
        alphabet = Alphabet(list(SYMBOLS))
    model = build_model(arch, alphabet.num_classes, **opts).eval()
    cfg = {"arch": arch, "options": opts, "alphabet": alphabet.to_dict(), "preprocessing": {}}
    return save_model(model, cfg, root / (name or arch))


def synth_stroke(kind: int, rng: np.random.Generator, n: int | None = None) -> list[np.ndarray]:
    """Class 1 = horizontal bar (一), 2 = vertical bar (丨), 3 = circle (〇); canvas-like pixels."""
    n = n or int(rng.integers(8, 60))
    s = np.linspace(0.0, 1.0, n)
    cx, cy, size = rng.uniform(150, 330), rng.uniform(100, 220), rng.uniform(80, 200)
    if kind == 1:
        xy = np.column_stack([cx - size / 2 + size * s, cy + rng.normal(0, 3) * s])
    elif kind == 2:
        xy = np.column_stack([cx + rng.normal(0, 3) * s, cy - size / 2 + size * s])
    else:
        a = 2 * np.pi * s * rng.uniform(0.95, 1.05) + rng.uniform(0, 2 * np.pi)
        xy = np.column_stack([cx + size / 2 * np.cos(a), cy + size / 2 * np.sin(a)])
    xy = xy + rng.normal(0, rng.uniform(0.0, 1.5), xy.shape)  # from ruler-straight to shaky
    return [np.column_stack([xy, np.arange(n) * 16.0])]


def train_char_model(root: Path, steps: int = 60, seed: int = 0) -> Path:
    """A tiny lstm-char really trained (CPU, about 1 s) to tell 一 / 丨 / 〇 apart."""
    from inkpack.data.ink import Ink
    from inkpack.infer.ink_preprocess import ink_features, preprocess_config

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    opts = {"hidden1": 16, "hidden2": 32, "fc": 32}
    cfg = char_model_config(opts)
    pcfg = preprocess_config(cfg)
    labels = np.arange(120) % 3 + 1
    pool = [torch.from_numpy(ink_features(Ink(synth_stroke(int(k), rng)), pcfg)[0]) for k in labels]
    model = build_model("lstm-char", len(CHAR_SYMBOLS) + 1, **opts)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(steps):
        idx = rng.choice(len(pool), size=24, replace=False)
        x = torch.nn.utils.rnn.pad_sequence([pool[i] for i in idx], batch_first=True)
        lengths = torch.tensor([len(pool[i]) for i in idx])
        loss = torch.nn.functional.cross_entropy(model(x, lengths), torch.from_numpy(labels[idx]))
        opt.zero_grad()
        loss.backward()
        opt.step()
    torch.set_num_threads(threads)
    return save_model(model.eval(), cfg, root / "tiny-char")
