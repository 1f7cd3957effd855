"""``inkpack train``: the parser, the YAML ``task`` that chooses the trainer, and the calls into
the trainers (``inkpack.train.loop.train`` for line images, ``inkpack.train.ink_train.fit_ink``
for ink characters and lines; ``--task segment`` is ``inkpack.train.segment``'s own command line,
routed by :func:`inkpack.cli.main`)."""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import fields

from inkpack.cli import types as T
from inkpack.errors import ConfigError
from inkpack.jsonio import check_output_dir, dumps

TASKS = ("lines", "char", "line", "segment")  # `inkpack train --task`; a config's `task` key chooses too

def _relaunch_distributed(nproc: int, argv: list[str]) -> int:
    """``train --nproc N ARGS`` = ``torchrun --standalone --nproc_per_node N -m inkpack train ARGS``."""
    import subprocess

    rest, skip = [], False
    for tok in argv:
        if not skip and tok != "--nproc" and not tok.startswith("--nproc="):
            rest.append(tok)
        skip = tok == "--nproc"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "inkpack", *rest]
    proc = subprocess.Popen(cmd)
    try:
        return proc.wait()
    except KeyboardInterrupt:  # torchrun got the same SIGINT: let it stop its workers
        return proc.wait()


def overrides(a: argparse.Namespace, config_cls) -> dict:
    """The options of ``a`` that are fields of the config dataclass (None: not given)."""
    return {f.name: getattr(a, f.name) for f in fields(config_cls) if hasattr(a, f.name)}


def add_config_flags(p, config_cls) -> None:
    """An option for every field of ``config_cls`` with ``cli`` metadata (``inkpack.train.config.flag``):
    its default is None (not given: the YAML's value, else the field's default, which the help names)."""
    for f in fields(config_cls):
        spec = dict(f.metadata.get("cli") or {})
        if not spec:
            continue
        text, name, kind = spec.pop("help"), spec.pop("flag", "--" + f.name.replace("_", "-")), spec.pop("type", None)
        if "default" not in text.lower():
            text += f" (default: {f.default})"
        if not name.startswith("-"):
            spec["nargs"] = "?"
        elif name.lstrip("-").replace("-", "_") != f.name:
            spec["dest"] = f.name
        if isinstance(f.default, bool):  # a switch: given = true, absent = the config's value
            spec.update(action="store_const", const=True, default=None)
        elif kind:
            base, _, arg = kind.partition(":")
            spec["type"] = getattr(T, base)(int(arg)) if arg else getattr(T, base)
        p.add_argument(name, help=text, **spec)


def train_config(a: argparse.Namespace):
    """The validated ``TrainConfig`` of ``inkpack train`` (YAML config, then flags)."""
    from inkpack.train.config import TrainConfig

    over = overrides(a, TrainConfig)
    if a.no_augment:
        over["augment"] = False
    if a.config:
        cfg = TrainConfig.from_yaml(a.config, **over)
    else:
        if not a.train:
            raise ConfigError("train: give TRAIN data (a TSV manifest, PAGE-XML or IAM lines.txt) or --config")
        cfg = TrainConfig(**{k: v for k, v in over.items() if v is not None}).validate()
    if not cfg.train:
        raise ConfigError("train: no training data (set 'train' in the config or pass TRAIN)")
    check_output_dir(cfg.out, "--out")
    if os.path.isdir(cfg.out) and not os.access(cfg.out, os.W_OK | os.X_OK):
        raise ConfigError(f"--out {cfg.out}: run folder not writable (permission denied)")
    return cfg


def ink_train_config(args: argparse.Namespace):
    """The ``InkTrainConfig`` of ``inkpack train --task char|line``: flags override the YAML config."""
    from inkpack.train.ink_train import InkTrainConfig

    over = overrides(args, InkTrainConfig)
    over["task"] = getattr(args, "task", None)
    if over["init_resize"] and not over["init_from"] and not getattr(args, "config", None):
        raise ConfigError("--resize: needs --init-from (the model whose alphabet it resizes)")
    if over["train"] and over["task"] == "char" and (over["num_chars"] or over["per_class"]):
        raise ConfigError("--num-chars / --per-class: synthetic training options, not for .pot training data")
    if getattr(args, "no_augment", False):
        over["augment"] = False
    if getattr(args, "config", None):
        return InkTrainConfig.from_yaml(args.config, **over)
    return InkTrainConfig(**{k: v for k, v in over.items() if v is not None})


def train_ink(args: argparse.Namespace) -> int:
    """``inkpack train --task char|line``."""
    from inkpack.train.ink_train import fit_ink

    print(dumps(fit_ink(ink_train_config(args))))
    return 0


def config_task(path: str | None) -> str | None:
    """The ``task`` key of a training YAML (None when absent or unreadable: the trainer that
    reads the file reports what is wrong with it)."""
    if not path:
        return None
    from inkpack.train.config import read_yaml_mapping

    try:
        task = read_yaml_mapping(path).get("task")
    except ConfigError:
        return None
    return task if isinstance(task, str) else None


def train_task(task: str | None, config: str | None) -> str:
    """``--task`` if given, else the config's ``task`` key, else ``lines``."""
    chosen = task or config_task(config) or "lines"
    if chosen not in TASKS:
        raise ConfigError(f"{config}: task must be one of {', '.join(TASKS)}, not {chosen!r}")
    return chosen


def cmd_train(a: argparse.Namespace) -> int:
    a.task = train_task(a.task, a.config)
    if a.task in ("char", "line"):  # online handwriting: characters or ink lines
        return train_ink(a)
    if a.nproc is not None and a.nproc > 1 and "LOCAL_RANK" not in os.environ:  # not yet under torchrun
        train_config(a)  # validate here, once, before starting N processes
        return _relaunch_distributed(a.nproc, getattr(a, "argv", None) or sys.argv[1:])
    cfg = train_config(a)
    from inkpack.train.loop import train

    result = train(cfg)
    if os.environ.get("RANK", "0") == "0":
        print(dumps(result))
    return 0


def add_parser(sub) -> None:
    """``train``: the options of ``TrainConfig``'s fields (their help next to the dataclass), then
    those of the trainer choice, the ink trainer and data-parallel runs."""
    from inkpack.train.config import TrainConfig

    t = sub.add_parser("train", help="train a line recognizer with CTC")
    t.add_argument("--config", help="YAML config; its paths are relative to it; flags override it")
    add_config_flags(t, TrainConfig)
    t.add_argument("--no-augment", action="store_true", help="switch training augmentation off (default: on)")
    t.add_argument("--task", choices=TASKS, default=None,
                   help="lines: offline line images; char: lstm-char on synthetic hanzi or .pot characters; "
                        "line: online-blstm on IAM-OnDB-style .npz ink lines; segment: page line segmenter "
                        "(default: the config's task key, else lines)")
    t.add_argument("--num-chars", type=T.positive_int, help="char task: use only the first N classes (default: all)")
    t.add_argument("--per-class", type=T.positive_int, help="char task: synthetic samples per class and epoch")
    t.add_argument("--nproc", type=T.positive_int, metavar="N",
                   help="data-parallel training with N processes on this machine (runs torch.distributed.run)")
    t.set_defaults(fn=cmd_train)
