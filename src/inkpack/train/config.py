"""Training configuration of the line recognizers: dataclass defaults, YAML file, CLI overrides."""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import yaml

from inkpack.errors import InkpackError


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
    progress: bool = True
    # auto: CUDA when available (with automatic mixed precision), else the CPU
    device: str = "auto"
    # exponential moving average of the weights (0 = off; e.g. 0.999): validated, saved and
    # shipped instead of the raw weights when on
    ema: float = 0.0

    @classmethod
    def from_yaml(cls, path: str, **overrides) -> "TrainConfig":
        try:
            with open(path, encoding="utf-8") as f:
                data = yaml.safe_load(f) or {}
        except FileNotFoundError:
            raise InkpackError(f"{path}: config file not found") from None
        except yaml.YAMLError as e:
            raise InkpackError(f"{path}: invalid YAML ({str(e).splitlines()[0]})") from None
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise InkpackError(f"{path}: unknown config keys {sorted(unknown)}")
        data.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**data)
