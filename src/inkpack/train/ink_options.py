"""Checks of the online trainer's options that do not go together (one ``ConfigError`` each)."""

from __future__ import annotations

from inkpack.errors import ConfigError
from inkpack.models import REGISTRY


def check_combinations(cfg) -> None:
    """One ``ConfigError`` for options that do not go together."""
    import torch

    from inkpack.train.ema import resolve_precision
    from inkpack.train.ink_data import EXTRA_VALS, is_pot

    resolve_precision(cfg.precision, torch.device("cpu"), warn=False)  # ink training runs on the CPU
    if cfg.init_resize not in ("union", "new", "fail"):
        raise ConfigError(f"init_resize: must be union, new or fail, not {cfg.init_resize!r}")
    if cfg.init_layers is not None and not cfg.init_from:
        raise ConfigError("init_layers: needs init_from (the model to take the layers from)")
    if cfg.task == "line":
        for name in ("train", "val"):
            value = getattr(cfg, name)
            if value and is_pot(value):
                raise ConfigError(f"{name} {value}: .pot characters are data for --task char, not line")
        if cfg.extra_val or cfg.order_augment:
            raise ConfigError("extra_val / order_augment: character task options (--task char)")
        return
    bad = [n for n in cfg.extra_val if n not in EXTRA_VALS]
    if bad:
        raise ConfigError(f"extra_val: unknown {bad} (one of {', '.join(EXTRA_VALS)})")
    for name in ("train", "val"):
        value = getattr(cfg, name)
        if value and not is_pot(value):
            raise ConfigError(f"{name} {value}: --task char reads CASIA .pot characters (a file or a folder of "
                              "them); without data it trains on the synthetic medians")
    if cfg.train and cfg.class_schedule:
        raise ConfigError("class_schedule: a curriculum over the synthetic charset, not for .pot training data")
    if cfg.train and cfg.num_chars:
        raise ConfigError("num_chars: selects synthetic classes, not for .pot training data (use limit)")
    if cfg.train and cfg.extra_val:
        raise ConfigError("extra_val: the writer / order validations are synthetic, not for .pot training data")
    if cfg.init_from and cfg.class_schedule:
        raise ConfigError("class_schedule: a curriculum from scratch, not for a warm start (init_from)")


def check_init_kind(cfg, src: dict) -> None:
    """The warm start model reads the task's input."""
    want = "char" if cfg.task == "char" else "ink"
    kind = src.get("input_kind") or (REGISTRY[src["arch"]].input_kind if src.get("arch") in REGISTRY else None)
    if kind != want:
        raise ConfigError(f"init_from {cfg.init_from}: a {kind!r} model cannot start a --task {cfg.task} run "
                          f"(it needs a {want!r} model)")


def input_width(cfg, pcfg) -> int:
    """The model's ``in_features``: the width of the preprocessing's feature rows; an ``options``
    value that disagrees is a ``ConfigError``."""
    width = pcfg.num_features
    given = (cfg.options or {}).get("in_features")
    if given is not None and given != width:
        raise ConfigError(f"options.in_features: {given!r} does not match preprocessing.features "
                          f"{pcfg.features!r} ({width} features per row); leave it out")
    return width
