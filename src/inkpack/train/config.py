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
PRECISIONS = ("auto", "fp32", "bf16", "fp16")  # see inkpack.train.ema.Precision
PATH_FIELDS = ("train", "val", "out", "init_from", "teacher", "images_dir")
MIN_HEIGHT = 8
_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


RESIZE = ("union", "new", "fail")


def flag(default, help: str, **cli):
    """A field that ``inkpack train`` also takes as an option (built by :mod:`inkpack.cli.train`):
    ``help`` (``(default: X)`` is appended unless it names its default), optionally ``type`` (a
    name in :mod:`inkpack.cli.types`, ``min_int:N``), ``flag`` (default ``--field-name``; a name
    without dashes is the optional positional argument), ``metavar``, ``choices``. A bool field
    is a switch that sets it true."""
    return field(default=default, metadata={"cli": {"help": help, **cli}})


@dataclass
class TrainConfig:
    train: str = flag("", "training data: TSV manifest, PAGE-XML file/folder or IAM lines.txt; --task line: .npz "
                          "ink lines; --task char: CASIA .pot characters (a file or a folder; default: synthetic "
                          "characters from the stroke medians)", flag="train")
    val: str | None = flag(None, "validation data (same formats; default: none, no early stopping; --task char: "
                                 "the synthetic validation set, or every tenth sample of .pot training data)")
    out: str = flag("runs/default", "run folder: checkpoints, logs, best model")
    arch: str = flag("darknet-dblstm", "architecture, see `inkpack models`")
    height: int = flag(48, "input line height in pixels", type=f"min_int:{MIN_HEIGHT}")
    batch_size: int = flag(16, "lines per step", type="positive_int")
    lr: float = flag(1e-3, "peak learning rate", type="positive_float")
    weight_decay: float = 1e-4
    epochs: int = flag(30, "epochs of the schedule", type="positive_int")
    warmup_steps: int = 300
    patience: int = flag(8, "early stopping: epochs without val improvement", type="nonneg_int")
    batching: str = flag("pad-min", "batch layout", choices=BATCHING)
    augment: bool = True
    # overrides of the augmentation's defaults (inkpack.data.augment.AugmentConfig), e.g.
    # {p_zoom: 0.15} for the zoomed-band crops; ignored with augment: false
    augment_options: dict = field(default_factory=dict)
    seed: int = flag(1234, "random seed", type="nonneg_int")
    threads: int = flag(0, "torch threads; 0 = torch's default (default: 0)", type="nonneg_int")
    time_limit: float = flag(0.0, "stop after this many minutes (default: 0 = none)", type="nonneg_float")
    max_steps: int = flag(0, "stop after this many steps (default: 0 = none)", type="nonneg_int")
    ckpt_every: int = 200  # steps between mid-epoch checkpoints
    workers: int = flag(0, "DataLoader processes that build batches ahead: augment, pad, pack", type="nonneg_int")
    limit: int | None = flag(None, "use only the first N training lines (default: all)", type="positive_int")
    val_limit: int | None = None
    options: dict = field(default_factory=dict)
    # warm start (fresh runs only): a trained model whose same-named, same-shaped tensors are
    # copied in, optionally only those under the ``init_layers`` name prefixes (e.g. lstm., fc.)
    init_from: str | None = flag(None, "warm start a fresh run from a trained model's same-named, same-shaped "
                                       "tensors; --task char|line also take its architecture, options and "
                                       "preprocessing, and validate it once before the first step (default: none)",
                                 metavar="MODEL")
    init_layers: list[str] | None = None
    init_resize: str = flag("union", "with --init-from, for characters of the data the model lacks: union keeps "
                                     "the model's characters and adds the new ones, new keeps only the data's "
                                     "characters, fail refuses", flag="--resize", choices=RESIZE)
    # knowledge distillation (inkpack.train.teacher): trained line models of the same height,
    # frame rate and alphabet (several: their averaged outputs, an ensemble) whose per-frame
    # distributions at ``teacher_temperature`` the student also learns, ``teacher_weight`` times
    # the KL divergence from them added to the CTC loss
    teacher: list[str] | None = None
    teacher_weight: float = 1.0
    teacher_temperature: float = 1.0
    images_dir: str | None = flag(None, "PAGE-XML data: look for page images here first (default: next to the "
                                        "XML, its parent, the OCR-D workspace root)", flag="--images", metavar="DIR")
    progress: bool = True
    device: str = flag("auto", "auto | cpu | cuda[:N]; auto = CUDA when available", type="device")
    precision: str = flag("auto", "arithmetic of the training step: fp32, bf16 (bfloat16 autocast; 1.3-1.6x "
                                  "faster on a CPU with AVX512-BF16/AMX), fp16 (CUDA); auto = fp16 on CUDA, "
                                  "fp32 on the CPU", choices=PRECISIONS)
    # exponential moving average of the weights (0 = off; e.g. 0.999): validated, saved and
    # shipped instead of the raw weights when on
    ema: float = flag(0.0, "exponential moving average of the weights, e.g. 0.999; 0 = off (default: 0)",
                      type="unit_interval", metavar="DECAY")
    # data-parallel synchronization: ddp (all-reduce of the gradients every step) or bmuf
    # (blockwise model-update filtering, :mod:`inkpack.train.bmuf`): local steps, then every
    # ``block_steps`` steps the averaged update filtered with block momentum (default 1 - 1/N
    # for N workers) and block learning rate; ``nesterov`` starts blocks from the look-ahead
    sync: str = flag("ddp", "data parallel: ddp = all-reduce the gradients every step; bmuf = blockwise "
                            "model-update filtering, local steps and one synchronization per block", choices=SYNC)
    block_steps: int = flag(8, "bmuf: local steps per block", type="positive_int", metavar="TAU")
    block_momentum: float | None = flag(None, "bmuf: block momentum in [0, 1) (default: 1 - 1/N for N workers)",
                                        type="unit_interval", metavar="ETA")
    block_lr: float = flag(1.0, "bmuf: block learning rate", type="positive_float", metavar="ZETA")
    nesterov: bool = flag(False, "bmuf: start each block from the Nesterov look-ahead θ_g + η·Δ (default: classical)")
    # post-local SGD (Lin et al., ICLR 2020): the first ``block_warmup`` steps synchronize every
    # step (model averaging, η = 0), then the blocks of ``block_steps`` start from that model
    block_warmup: int = flag(0, "bmuf: synchronous steps first (model averaging every step, no block momentum), "
                                "then the blocks start (post-local SGD; default: 0)", type="nonneg_int",
                             metavar="STEPS")
    # also average the workers' optimizer moments (AdamW's exp_avg, exp_avg_sq) at each sync
    block_moments: bool = flag(False, "bmuf: also average the workers' optimizer moment buffers at each "
                                      "synchronization (3x the bytes per synchronization)")

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
        if isinstance(data.get("teacher"), str):  # one model may be given without a list
            data["teacher"] = [data["teacher"]]
        resolve_paths(data, path, PATH_FIELDS)
        data.update({k: v for k, v in overrides.items() if v is not None})
        try:
            cfg = cls(**data)
            cfg.validate()
        except ConfigError as e:
            raise ConfigError(f"{path}: {e}") from None
        return cfg

    def augment_config(self):
        from inkpack.data.augment import AugmentConfig

        return AugmentConfig.from_dict(self.augment_options, enabled=self.augment)

    def validate(self) -> "TrainConfig":
        """Types from the dataclass annotations, then ranges; ``ConfigError`` names the field."""
        check_types(self)
        positive = ("height", "batch_size", "epochs", "ckpt_every")
        for name in positive:
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}: must be at least 1, got {getattr(self, name)}")
        for name in ("warmup_steps", "patience", "threads", "max_steps", "workers", "seed", "block_warmup"):
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
        self.augment_config()  # a ConfigError naming augment_options and the key
        if not 0.0 <= self.ema < 1.0:
            raise ConfigError(f"ema: must be in [0, 1) (0 = off, e.g. 0.999), got {self.ema}")
        if self.teacher is not None and not self.teacher:
            raise ConfigError("teacher: an empty list (leave it out for no teacher)")
        if not (math.isfinite(self.teacher_weight) and self.teacher_weight >= 0):
            raise ConfigError(f"teacher_weight: must be a finite number >= 0, got {self.teacher_weight}")
        if not (math.isfinite(self.teacher_temperature) and self.teacher_temperature > 0):
            raise ConfigError(f"teacher_temperature: must be a finite number greater than 0, "
                              f"got {self.teacher_temperature}")
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
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision: must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
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
        elif isinstance(data.get(name), list):  # a list of paths (teacher)
            data[name] = [resolve_path(v, base) if isinstance(v, str) and v else v for v in data[name]]
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
