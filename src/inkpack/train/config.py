"""Training configuration of the line recognizers: dataclass defaults, YAML file, CLI overrides.

``TrainConfig.validate()`` checks every field against its declared type and range and raises a
``ConfigError`` naming the field (and the file, for a YAML config). Paths in a YAML config
(``train``, ``val``, ``out``, ``init_from``) are relative to the config file's folder; a path
that exists only relative to the working directory is still taken from there (configs written
before this rule, run from the repository root).
"""

from __future__ import annotations

import math
import os
import re
import types
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path

import yaml

from inkpack.errors import ConfigError
from inkpack.jsonio import read_text

BATCHING = ("pad-max", "pad-min", "pack")
SYNC = ("ddp", "bmuf")
PATH_FIELDS = ("train", "val", "out", "init_from", "images_dir")
MIN_HEIGHT = 8
_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


@dataclass
class TrainConfig:
    train: str = ""
    val: str | None = None
    out: str = "runs/default"
    arch: str = "darknet-dblstm"
    height: int = 48
    batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 1e-4
    epochs: int = 30
    warmup_steps: int = 300
    patience: int = 8
    batching: str = "pad-min"  # pad-max | pad-min | pack
    augment: bool = True
    seed: int = 1234
    threads: int = 0
    time_limit: float = 0.0  # minutes; 0 = no limit
    max_steps: int = 0  # 0 = no limit
    ckpt_every: int = 200  # steps between mid-epoch checkpoints
    workers: int = 0  # DataLoader processes building batches ahead (augment, pad, pack); 0 = in the trainer
    limit: int | None = None  # use only the first N training lines (smoke tests)
    val_limit: int | None = None
    options: dict = field(default_factory=dict)
    # warm start (fresh runs only): a trained model whose same-named, same-shaped tensors are
    # copied in, optionally only those under the ``init_layers`` name prefixes (e.g. lstm., fc.)
    init_from: str | None = None
    init_layers: list[str] | None = None
    # characters of the data that the init model lacks: union (keep its characters, add the new
    # ones), new (only the data's characters), fail (refuse)
    init_resize: str = "union"
    images_dir: str | None = None  # PAGE-XML data: where the page images are (default: beside the XML)
    progress: bool = True
    # auto: CUDA when available (with automatic mixed precision), else the CPU
    device: str = "auto"
    # exponential moving average of the weights (0 = off; e.g. 0.999): validated, saved and
    # shipped instead of the raw weights when on
    ema: float = 0.0
    # data-parallel synchronization: ddp (all-reduce of the gradients every step) or bmuf
    # (blockwise model-update filtering, :mod:`inkpack.train.bmuf`): local steps, then every
    # ``block_steps`` steps the averaged update filtered with block momentum (default 1 - 1/N
    # for N workers) and block learning rate; ``nesterov`` starts blocks from the look-ahead
    sync: str = "ddp"
    block_steps: int = 8
    block_momentum: float | None = None
    block_lr: float = 1.0
    nesterov: bool = False

    @classmethod
    def from_yaml(cls, path: str, **overrides) -> "TrainConfig":
        """The config in ``path`` (paths resolved relative to it), then ``overrides`` (not None)."""
        data = read_yaml_mapping(path)
        task = data.pop("task", "lines")  # the YAML's task chose this trainer (cli.train_task)
        if task != "lines":
            raise ConfigError(f"{path}: task is {task!r}, a config for `inkpack train --task {task}`, "
                              f"not for the line-image trainer")
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ConfigError(f"{path}: unknown config keys {sorted(map(str, unknown))}")
        resolve_paths(data, path, PATH_FIELDS)
        data.update({k: v for k, v in overrides.items() if v is not None})
        try:
            cfg = cls(**data)
            cfg.validate()
        except ConfigError as e:
            raise ConfigError(f"{path}: {e}") from None
        return cfg

    def validate(self) -> "TrainConfig":
        """Types from the dataclass annotations, then ranges; ``ConfigError`` names the field."""
        check_types(self)
        positive = ("height", "batch_size", "epochs", "ckpt_every")
        for name in positive:
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}: must be at least 1, got {getattr(self, name)}")
        for name in ("warmup_steps", "patience", "threads", "max_steps", "workers", "seed"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name}: must be 0 or more, got {getattr(self, name)}")
        for name in ("limit", "val_limit"):
            v = getattr(self, name)
            if v is not None and v < 1:
                raise ConfigError(f"{name}: must be at least 1 (or absent), got {v}")
        if self.height < MIN_HEIGHT:
            raise ConfigError(f"height: must be at least {MIN_HEIGHT} pixels, got {self.height}")
        if not self.lr > 0:
            raise ConfigError(f"lr: must be a finite number greater than 0, got {self.lr}")
        for name in ("weight_decay", "time_limit"):
            if not getattr(self, name) >= 0:
                raise ConfigError(f"{name}: must be a finite number >= 0, got {getattr(self, name)}")
        if not 0.0 <= self.ema < 1.0:
            raise ConfigError(f"ema: must be in [0, 1) (0 = off, e.g. 0.999), got {self.ema}")
        if self.sync not in SYNC:
            raise ConfigError(f"sync: must be one of {', '.join(SYNC)}, got {self.sync!r}")
        if self.block_steps < 1:
            raise ConfigError(f"block_steps: must be at least 1, got {self.block_steps}")
        if self.block_momentum is not None and not 0.0 <= self.block_momentum < 1.0:
            raise ConfigError(f"block_momentum: must be in [0, 1) (or absent: 1 - 1/N), got {self.block_momentum}")
        if not self.block_lr > 0:
            raise ConfigError(f"block_lr: must be a finite number greater than 0, got {self.block_lr}")
        if self.sync == "bmuf" and self.ema:
            raise ConfigError("ema: not supported with sync: bmuf (validation uses the BMUF global model)")
        if self.batching not in BATCHING:
            raise ConfigError(f"batching: must be one of {', '.join(BATCHING)}, got {self.batching!r}")
        if not _DEVICE.match(self.device.strip().lower()):
            raise ConfigError(f"device: must be auto, cpu, cuda or cuda:N, got {self.device!r}")
        from inkpack.models import REGISTRY

        if self.arch not in REGISTRY:
            raise ConfigError(f"arch: unknown architecture {self.arch!r} (one of {', '.join(sorted(REGISTRY))})")
        return self


# ---------------------------------------------------------------------- shared helpers
def read_yaml_mapping(path: str) -> dict:
    """A YAML file holding a mapping, or a one-line ``ConfigError`` naming the file."""
    text = read_text(path, ConfigError, "a YAML config file")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: invalid YAML ({str(e).splitlines()[0]})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of config keys, got a YAML {type(data).__name__}")
    return data


def _exists(p: Path) -> bool:
    return p.exists() or p.with_name(p.name + ".json").exists()  # a model stem counts


def resolve_path(value: str, base: Path) -> str:
    """``value`` relative to ``base`` (the config's folder); kept as given when absolute, or when
    only the working directory has it (legacy configs run from the repository root)."""
    p = Path(os.path.expanduser(value))
    if p.is_absolute():
        return str(p)
    near = Path(os.path.normpath(base / p))
    if _exists(near) or not _exists(p):
        return str(near)
    return str(p)


def resolve_paths(data: dict, config_path: str, names: tuple[str, ...]) -> dict:
    base = Path(config_path).parent
    for name in names:
        if isinstance(data.get(name), str) and data[name]:
            data[name] = resolve_path(data[name], base)
    return data


def _type_ok(value, tp) -> tuple[bool, object]:
    """(ok, value converted) for a value against an annotation (int, float, str, bool, dict,
    list[str], X | None)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            ok, v = _type_ok(value, arg)
            if ok:
                return True, v
        return False, value
    if tp is type(None):
        return value is None, value
    if tp is bool:
        return isinstance(value, bool), value
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads ``1e-3`` as a string
            try:
                value = float(value)
            except ValueError:
                return False, value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False, value
        return math.isfinite(value), float(value)
    if origin is list:
        (inner,) = typing.get_args(tp) or (object,)
        if not isinstance(value, list):
            return False, value
        return all(inner is object or isinstance(v, inner) for v in value), value
    if tp is dict or origin is dict:
        return isinstance(value, dict), value
    if tp is str:
        return isinstance(value, str), value
    return True, value


_NAMES = {int: "an integer", float: "a finite number", str: "a string", bool: "true or false",
          dict: "a mapping"}


def _describe(tp) -> str:
    args = [a for a in typing.get_args(tp) if a is not type(None)] if typing.get_origin(tp) in (
        typing.Union, types.UnionType) else [tp]
    names = [_NAMES.get(a, "a list of strings" if typing.get_origin(a) is list else str(a)) for a in args]
    return " or ".join(names) + (" (or absent)" if len(args) < len(typing.get_args(tp)) else "")


def check_types(cfg) -> None:
    """Every dataclass field of ``cfg`` has a value of its annotated type (floats converted)."""
    hints = typing.get_type_hints(type(cfg))
    for f in fields(cfg):
        value = getattr(cfg, f.name)
        ok, conv = _type_ok(value, hints[f.name])
        if not ok:
            raise ConfigError(f"{f.name}: expected {_describe(hints[f.name])}, got {value!r}")
        setattr(cfg, f.name, conv)
