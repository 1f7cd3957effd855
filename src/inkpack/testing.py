"""Synthetic models and line images for tests and benchmarks (no trained weights, no data set).

``make_line_model`` saves a tiny untrained ``darknet-dblstm`` the shipped way (NAME.json +
NAME.safetensors), so a server, an export or a benchmark can run before anything is trained;
``line_png`` renders a text line as PNG bytes, as a client would upload it.
"""

from __future__ import annotations

import io
from pathlib import Path

import torch
from PIL import Image, ImageDraw, ImageFont

from inkpack.data.alphabet import Alphabet
from inkpack.models import build_model
from inkpack.models.io import save_model

__all__ = ["SYMBOLS", "TINY_OPTS", "line_png", "make_line_model"]

TINY_OPTS = {"height": 32, "feat_dim": 24, "lstm_hidden": 16, "lstm_layers": 2, "dropout": 0.0}
SYMBOLS = " abcdefghijklmnopqrstuvwxyz."


def make_line_model(root: Path, name: str = "tiny", seed: int = 0) -> Path:
    """An untrained darknet-dblstm with non-trivial BatchNorm statistics, saved as NAME.{json,safetensors}."""
    torch.manual_seed(seed)
    alphabet = Alphabet(list(SYMBOLS))
    model = build_model("darknet-dblstm", alphabet.num_classes, **TINY_OPTS).eval()
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.rand(m.num_features, generator=g) - 0.5)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
    # a strong blank-vs-letters bias would make every output empty; spread the output layer
    with torch.no_grad():
        model.fc.weight.mul_(8.0)
    cfg = {"arch": "darknet-dblstm", "options": TINY_OPTS, "alphabet": alphabet.to_dict(),
           "preprocessing": {"height": TINY_OPTS["height"]}}
    return save_model(model, cfg, Path(root) / name)


def line_png(text: str = "hello world", height: int = 40, pad: int = 0) -> bytes:
    """Dark text on light paper, ``height`` pixels high (``pad`` extra pixels of width), as PNG bytes."""
    font = ImageFont.load_default(size=int(height * 0.6))
    w = int(font.getlength(text)) + 12 + pad
    img = Image.new("L", (max(w, 8), height), 230)
    ImageDraw.Draw(img).text((6, height * 0.15), text, fill=20, font=font)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()
