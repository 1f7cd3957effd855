"""A small fully convolutional page segmenter (U-Net / FPN-like, plain PyTorch).

Input: a gray page scaled so that its long side is ``long_side`` px (paper 0, ink 1);
output: logits at half that resolution for the channels ``CHANNELS`` (baseline line a
few px thick, line polygon, text region).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torch.nn import functional as F

from inkpack.errors import ModelFileError
from inkpack.jsonio import publish

CHANNELS = ("baseline", "line", "region")
ARCH = "segnet"
DEFAULT = "hooker-segment"  # bundled in models/


def conv_bn(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride, padding=dilation, dilation=dilation, bias=False),
        nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class SegNet(nn.Module):
    """Encoder at strides 2..16, top-down decoder (1x1 lateral + add + 3x3) back to stride 2."""

    def __init__(self, widths: tuple[int, ...] = (16, 32, 64, 96), channels: int = len(CHANNELS)):
        super().__init__()
        w0, w1, w2, w3 = widths
        self.enc0 = nn.Sequential(conv_bn(1, w0, 2), conv_bn(w0, w0))
        self.enc1 = nn.Sequential(conv_bn(w0, w1, 2), conv_bn(w1, w1))
        self.enc2 = nn.Sequential(conv_bn(w1, w2, 2), conv_bn(w2, w2))
        self.enc3 = nn.Sequential(conv_bn(w2, w3, 2), conv_bn(w3, w3, dilation=2), conv_bn(w3, w3, dilation=4))
        self.lat3 = nn.Conv2d(w3, w2, 1)
        self.dec2 = conv_bn(w2, w2)
        self.lat2 = nn.Conv2d(w2, w1, 1)
        self.dec1 = conv_bn(w1, w1)
        self.lat1 = nn.Conv2d(w1, w0, 1)
        self.dec0 = conv_bn(w0, w0)
        self.head = nn.Conv2d(w0, channels, 1)
        self.widths = tuple(widths)

    @staticmethod
    def _up(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, size=like.shape[-2:], mode="bilinear", align_corners=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e0 = self.enc0(x)
        e1 = self.enc1(e0)
        e2 = self.enc2(e1)
        e3 = self.enc3(e2)
        d2 = self.dec2(e2 + self._up(self.lat3(e3), e2))
        d1 = self.dec1(e1 + self._up(self.lat2(d2), e1))
        d0 = self.dec0(e0 + self._up(self.lat1(d1), e0))
        return self.head(d0)


def default_config(long_side: int = 768, widths=(16, 32, 64, 96)) -> dict:
    return {"arch": ARCH, "task": "segment", "options": {"widths": list(widths)},
            "channels": list(CHANNELS), "long_side": long_side, "out_stride": 2}


def build(config: dict) -> SegNet:
    return SegNet(tuple(config.get("options", {}).get("widths", (16, 32, 64, 96))), len(config["channels"]))


def save_segmenter(model: nn.Module, config: dict, stem: str | os.PathLike) -> Path:
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    tmp = stem.with_name(stem.name + ".safetensors.tmp")
    save_file(state, str(tmp))
    publish(tmp, stem.with_name(stem.name + ".safetensors"))
    tmpj = stem.with_name(stem.name + ".json.tmp")
    tmpj.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    publish(tmpj, stem.with_name(stem.name + ".json"))
    return stem


def resolve_stem(path: str | os.PathLike | None) -> Path:
    """A stem, .json or .safetensors path, or a bundled model name (default ``hooker-segment``)."""
    from inkpack.models.io import models_dir

    p = Path(path) if path is not None else Path(DEFAULT)
    if p.suffix in (".json", ".safetensors"):
        p = p.with_suffix("")
    if not p.with_name(p.name + ".json").exists() and (models_dir() / (p.name + ".json")).exists():
        p = models_dir() / p.name
    return p


def load_segmenter(path: str | os.PathLike | None = None) -> tuple[SegNet, dict]:
    """``path``: a stem, ``.json`` or ``.safetensors``; default the bundled hooker-segment."""
    stem = resolve_stem(path)
    js = stem.with_name(stem.name + ".json")
    try:
        config = json.loads(js.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelFileError(f"{js}: segmentation model not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ModelFileError(f"{js}: invalid JSON ({e})") from None
    for key in ("arch", "channels", "long_side"):
        if key not in config:
            raise ModelFileError(f"{js}: missing field {key!r}")
    if config["arch"] != ARCH:
        raise ModelFileError(f"{js}: arch {config['arch']!r} is not a segmentation model")
    model = build(config)
    wpath = stem.with_name(stem.name + ".safetensors")
    try:
        state = load_file(str(wpath))
        model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    except Exception as e:  # missing/corrupt file, wrong shapes
        raise ModelFileError(f"{wpath}: cannot load segmentation weights ({str(e).splitlines()[0]})") from None
    model.eval()
    return model, config


@torch.no_grad()
def fold_batchnorm(model: nn.Module) -> nn.Module:
    """Fold each eval-mode BatchNorm into the convolution before it (inference only, same outputs)."""
    for seq in model.modules():
        if not isinstance(seq, nn.Sequential):
            continue
        for k in range(len(seq) - 1):
            conv, bn = seq[k], seq[k + 1]
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
                conv.weight.mul_(scale[:, None, None, None])
                bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
                conv.bias = nn.Parameter((bias - bn.running_mean) * scale + bn.bias)
                seq[k + 1] = nn.Identity()
    return model
