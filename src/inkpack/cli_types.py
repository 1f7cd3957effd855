"""argparse value types: a bad option value is one line naming the flag, before any work starts;
and the parser every command uses (:class:`Parser`: one-line usage errors, exit 2).

Light on purpose (no torch): ``inkpack --help`` imports this module.
"""

from __future__ import annotations

import argparse
import math
import re


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def _float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return v


def positive_int(text: str) -> int:
    v = _int(text)
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {v}")
    return v


def nonneg_int(text: str) -> int:
    v = _int(text)
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {v}")
    return v


def finite_float(text: str) -> float:
    return _float(text)


def positive_float(text: str) -> float:
    v = _float(text)
    if v <= 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0, got {text}")
    return v


def nonneg_float(text: str) -> float:
    v = _float(text)
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return v


def unit_interval(text: str) -> float:
    """A decay or share in ``[0, 1)`` (0 = off)."""
    v = _float(text)
    if not 0.0 <= v < 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {text}")
    return v


def port(text: str) -> int:
    v = _int(text)
    if not 0 <= v <= 65535:
        raise argparse.ArgumentTypeError(f"must be a TCP port 0..65535, got {v}")
    return v


DEVICE_RE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


def device(text: str) -> str:
    t = text.strip().lower()
    if not DEVICE_RE.match(t):
        raise argparse.ArgumentTypeError(f"must be auto, cpu, cuda or cuda:N, got {text!r}")
    return t


def min_int(lo: int):
    """An integer ``>= lo`` (e.g. the input height of a line model)."""

    def check(text: str) -> int:
        v = _int(text)
        if v < lo:
            raise argparse.ArgumentTypeError(f"must be at least {lo}, got {v}")
        return v

    check.__name__ = f"int>={lo}"
    return check


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Appends ``(default: X)`` unless the help already says it or there is no real default."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text.lower() or action.default is None or action.default is False or \
                action.default == argparse.SUPPRESS or \
                isinstance(action, (argparse._HelpAction, argparse._VersionAction)):
            return text
        return super()._get_help_string(action)


class Parser(argparse.ArgumentParser):
    """One-line usage errors (``inkpack evaluate: error: argument --batch-size: ...``), exit 2."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def perturb_rates(text: str) -> dict:
    """``swap=0.05,reverse=0.03,join=0.1[,permute]`` -> a mapping of stroke-order perturbation
    rates (checked again, with the field named, by ``PerturbConfig.from_dict``)."""
    out: dict = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        if part == "permute":
            out["permute"] = True
            continue
        key, eq, value = part.partition("=")
        if not eq:
            raise argparse.ArgumentTypeError(f"expected NAME=RATE or permute, got {part!r}")
        out[key.strip()] = unit_interval(value)
    if not out:
        raise argparse.ArgumentTypeError("give at least one of swap=, reverse=, join=, permute")
    return out
