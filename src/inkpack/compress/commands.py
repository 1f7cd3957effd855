"""What ``inkpack compress`` and ``inkpack report`` call (their parsers are
:mod:`inkpack.cli.compress`). The recipes are in
:mod:`inkpack.compress.recipe`, their retraining in :mod:`inkpack.compress.retrain`, the report
in :mod:`inkpack.compress.measure`; their names stay importable from here. Compressed model
files are read by :func:`inkpack.models.io.load_model` (``int8=False``: the fp32 graph). Nothing
here imports torch at import time: `inkpack compress --help` stays light.
"""

from __future__ import annotations

from inkpack.compress.measure import (
    _accuracy,
    _example,
    accuracy,
    example_input,
    plot_report,
    report,
)
from inkpack.compress.recipe import (
    RECIPES,
    compress,
    model_files,
    out_stem,
    parse_bits,
    parse_recipe,
    store_half,
)
from inkpack.compress.retrain import Task, drop_weights, lr_factor, retrain, share_weights

__all__ = [  # the names this module held before the split, still imported from it
    "CRITERIA", "RECIPES", "Task", "_accuracy", "_example", "accuracy", "compress", "drop_weights",
    "example_input", "lr_factor", "model_files", "out_stem", "parse_bits", "parse_recipe", "plot_report", "report", "retrain",
    "share_weights", "store_half",
]

# distillation criteria (= inkpack.compress.distill.CRITERIA, kept here so --help needs no torch)
CRITERIA = ("softmax-ce", "ip-l2", "lstm-l2", "cnn-l2", "cnn-mah")
