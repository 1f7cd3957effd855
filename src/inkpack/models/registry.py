"""A typed registry of named architectures.

Each entry maps a name to a builder ``f(num_classes, **options) -> nn.Module`` and
says which input it takes (``"image"`` for ``[B, 1, H, W]`` line images, ``"ink"`` for
point-feature sequences, ``"char"`` for whole-character ink classification). A model's
JSON config stores the name and the options so that ``build_model`` recreates it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from torch import nn

from inkpack.errors import InkpackError


@dataclass(frozen=True)
class ModelSpec:
    name: str
    builder: Callable[..., nn.Module]
    input_kind: str
    description: str
    defaults: dict = field(default_factory=dict)


REGISTRY: dict[str, ModelSpec] = {}


def register(name: str, input_kind: str, description: str, **defaults):
    """Decorator: ``@register("vgg-dblstm", "image", "...")`` on a builder function."""

    def deco(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in REGISTRY:
            raise ValueError(f"architecture {name!r} registered twice")
        REGISTRY[name] = ModelSpec(name, fn, input_kind, description, dict(defaults))
        return fn

    return deco


def build_model(name: str, num_classes: int, **options) -> nn.Module:
    spec = REGISTRY.get(name)
    if spec is None:
        raise InkpackError(f"unknown architecture {name!r}; known: {', '.join(sorted(REGISTRY))}")
    opts = {**spec.defaults, **options}
    return spec.builder(num_classes, **opts)
