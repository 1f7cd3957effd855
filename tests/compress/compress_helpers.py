"""Shared by the compression tests: a tiny saved darknet-dblstm (`base` fixture) and the
`compress` command's parser."""

from __future__ import annotations

import argparse

import pytest
import torch

from inkpack.cli.compress import add_parsers
from inkpack.data.alphabet import Alphabet
from inkpack.models import build_model
from inkpack.models.io import save_model

OPTS = {"height": 16, "feat_dim": 16, "lstm_hidden": 8}


def save_tiny_base(root):
    """A seeded tiny darknet-dblstm saved as ``root / "base"``; returns its stem."""
    torch.manual_seed(0)
    alphabet = Alphabet(list(" abcdefghijklmnopqrstuvwxyz"))
    model = build_model("darknet-dblstm", alphabet.num_classes, **OPTS).eval()
    cfg = {"arch": "darknet-dblstm", "options": OPTS, "alphabet": alphabet.to_dict(),
           "preprocessing": {"height": 16}, "input_kind": "image"}
    return save_model(model, cfg, root / "base")


def line_batch(seed: int, widths: list[int], height: int = 16):
    """A seeded batch of random line images ``(x, heights, widths)`` for the tiny base: every
    image as wide as the first, zero (no ink) right of its own width, as padding leaves it."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(len(widths), 1, height, widths[0], generator=g)
    for i, w in enumerate(widths):
        x[i, :, :, w:] = 0
    return x, torch.full((len(widths),), height), torch.tensor(widths)


@pytest.fixture
def base(tmp_path):
    return save_tiny_base(tmp_path)


def parse(*argv):
    p = argparse.ArgumentParser()
    add_parsers(p.add_subparsers())
    return p.parse_args(list(argv))
