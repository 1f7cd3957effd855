"""A typed registry of named architectures and what each one can do.

Each entry maps a name to a builder ``f(num_classes, **options) -> nn.Module`` and
declares the architecture's capabilities, so that no other module needs a list of
architectures or an ``isinstance`` chain:

* ``input_kind``: ``"image"`` for ``[B, 1, H, W]`` line images, ``"ink"`` for point-feature
  sequences, ``"char"`` for whole-character ink classification;
* ``model_class``: the class the builder returns (finds the entry of a bare module);
* ``packing``: the module of its packed forward pass (``pack_options``, ``prepare``,
  ``packed_forward``; see :mod:`inkpack.packing`), None when it has none;
* ``exporter``: ``"module:function"`` writing it to ONNX, ``f(model, path) -> facts``
  (see :mod:`inkpack.deploy.export`), None when it has none; ``no_export`` says why;
* ``preprocess``: ``"module:function"`` turning one raw input into the model's input,
  ``f(raw, config) -> tensor``.

Capabilities are named by dotted strings and imported where they run: the registry (and so
every architecture module) stays below packing, export and inference in the import graph.
Adding an architecture is one module: its classes and one ``@register(...)``. A model's
JSON config stores the name and the options so that ``build_model`` recreates it.
"""

from __future__ import annotations

import dataclasses
import importlib
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
    model_class: type | None = None
    packing: str | None = None
    exporter: str | None = None
    no_export: str = ""
    preprocess: str | None = None


CAPABILITIES = ("model_class", "packing", "exporter", "no_export", "preprocess")
REGISTRY: dict[str, ModelSpec] = {}


def register(name: str, input_kind: str, description: str, *, model_class: type | None = None,
             packing: str | None = None, exporter: str | None = None, no_export: str = "",
             preprocess: str | None = None, **defaults):
    """Decorator: ``@register("vgg-dblstm", "image", "...", packing=..., **default_options)``
    on a builder function."""

    def deco(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in REGISTRY:
            raise ValueError(f"architecture {name!r} registered twice")
        REGISTRY[name] = ModelSpec(name, fn, input_kind, description, dict(defaults), model_class,
                                   packing, exporter, no_export, preprocess)
        return fn

    return deco


def declare(name: str, **capabilities) -> ModelSpec:
    """Add capabilities to a registered architecture (for an entry written before they existed)."""
    unknown = set(capabilities) - set(CAPABILITIES)
    if unknown:
        raise ValueError(f"unknown capabilities {sorted(unknown)}; known: {', '.join(CAPABILITIES)}")
    REGISTRY[name] = dataclasses.replace(REGISTRY[name], **capabilities)
    return REGISTRY[name]


def build_model(name: str, num_classes: int, **options) -> nn.Module:
    spec = REGISTRY.get(name)
    if spec is None:
        raise InkpackError(f"unknown architecture {name!r}; known: {', '.join(sorted(REGISTRY))}")
    opts = {**spec.defaults, **options}
    return spec.builder(num_classes, **opts)


def spec_for(model: nn.Module, config: dict | None = None) -> ModelSpec | None:
    """The entry of ``model``: by ``config["arch"]`` when given, else the first registered
    architecture whose ``model_class`` the model is (several may share a class: the CNN-DBLSTMs)."""
    if config and config.get("arch") in REGISTRY:
        return REGISTRY[config["arch"]]
    return next((s for s in REGISTRY.values() if s.model_class is not None and isinstance(model, s.model_class)),
                None)


def with_capability(what: str) -> list[str]:
    """Names of the architectures that declare ``what`` (e.g. ``"packing"``), sorted."""
    return sorted(n for n, s in REGISTRY.items() if getattr(s, what))


def load_capability(ref: str):
    """The object a capability names: ``"pkg.module"`` or ``"pkg.module:attribute"``."""
    mod, _, attr = ref.partition(":")
    obj = importlib.import_module(mod)
    return getattr(obj, attr) if attr else obj
