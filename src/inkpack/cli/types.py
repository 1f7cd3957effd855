"""argparse value types: a bad option value is one line naming the flag, before any work starts;
and the parser every command uses (:class:`Parser`: one-line usage errors, exit 2).

Light on purpose (no torch): ``inkpack --help`` imports this module (``inkpack.cli.types``).
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


def _checked(parse, ok, message: str, name: str):
    """An argparse type: ``parse(text)`` whose value must satisfy ``ok``, else ``message``
    (formatted with the value ``v`` and the ``text`` given)."""

    def check(text: str):
        v = parse(text)
        if not ok(v):
            raise argparse.ArgumentTypeError(message.format(v=v, text=text))
        return v

    check.__name__ = name
    return check


positive_int = _checked(_int, lambda v: v >= 1, "must be at least 1, got {v}", "positive_int")
nonneg_int = _checked(_int, lambda v: v >= 0, "must be 0 or more, got {v}", "nonneg_int")
finite_float = _checked(_float, lambda v: True, "", "finite_float")
positive_float = _checked(_float, lambda v: v > 0, "must be greater than 0, got {text}", "positive_float")
nonneg_float = _checked(_float, lambda v: v >= 0, "must be 0 or more, got {text}", "nonneg_float")
# a decay or share in [0, 1) (0 = off)
unit_interval = _checked(_float, lambda v: 0.0 <= v < 1.0, "must be in [0, 1), got {text}", "unit_interval")
port = _checked(_int, lambda v: 0 <= v <= 65535, "must be a TCP port 0..65535, got {v}", "port")


DEVICE_RE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


def device(text: str) -> str:
    t = text.strip().lower()
    if not DEVICE_RE.match(t):
        raise argparse.ArgumentTypeError(f"must be auto, cpu, cuda or cuda:N, got {text!r}")
    return t


def min_int(lo: int):
    """An integer ``>= lo`` (e.g. the input height of a line model)."""
    return _checked(_int, lambda v: v >= lo, f"must be at least {lo}, got {{v}}", f"int>={lo}")


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
