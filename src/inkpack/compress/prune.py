"""Adaptive drop-weight (ADW, seed 001): gradual per-layer magnitude pruning during retraining.

Unlike Deep Compression's single hard threshold, each layer's weights are sorted by magnitude
and the smallest fraction is dropped, the fraction rising step by step to the layer's target.
Plain boolean masks are used instead of torch.nn.utils.prune: its reparametrisation
(weight_orig * mask in a forward pre-hook) does not reach nn.LSTM's flat weights.
"""

from __future__ import annotations

from fnmatch import fnmatch
from typing import Iterator

import torch
from torch import Tensor, nn

from inkpack.errors import InkpackError

__all__ = ["Pruner", "prunable_parameters", "schedule_fraction"]


def prunable_parameters(model: nn.Module) -> Iterator[tuple[str, nn.Parameter]]:
    """The weight matrices and kernels (dim ≥ 2): Conv, Linear, LSTM ih/hh, low-rank factors."""
    for name, p in model.named_parameters():
        if p.dim() >= 2 and p.is_floating_point():
            yield name, p


def schedule_fraction(step: int, steps: int, kind: str = "cubic") -> float:
    """Share of the final sparsity reached after `step` of `steps` updates.

    cubic (Zhu & Gupta 2017): 1 - (1 - t/N)^3, prunes fast while many weights are redundant;
    linear: t/N.
    """
    if steps <= 0:
        return 1.0
    t = min(max(step, 0), steps) / steps
    if kind == "cubic":
        return 1.0 - (1.0 - t) ** 3
    if kind == "linear":
        return t
    raise InkpackError(f"prune: unknown schedule {kind!r} (cubic or linear)")


class Pruner:
    """Masks that grow to per-layer target sparsities over `steps` calls of `.step()`.

    targets: one sparsity for every prunable parameter, or {parameter name or glob: sparsity}
    (e.g. {"lstm.weight_ih_*": 0.5, "lstm.weight_hh_*": 0.8}); the first matching key wins.
    Call `.step()` right after `optimizer.step()`: it raises the sparsity every `every` calls
    and always re-applies the masks so momentum cannot revive dropped weights.
    """

    def __init__(self, model: nn.Module, targets: dict[str, float] | float, steps: int,
                 schedule: str = "cubic", every: int = 1) -> None:
        self.model, self.steps, self.schedule, self.every = model, int(steps), schedule, max(1, int(every))
        schedule_fraction(0, 1, schedule)  # validate the name early
        self.params: dict[str, nn.Parameter] = {}
        self.targets: dict[str, float] = {}
        for name, p in prunable_parameters(model):
            target = self._target_for(name, targets)
            if target is None:
                continue
            if not 0.0 <= target < 1.0:
                raise InkpackError(f"prune: target sparsity for {name} must be in [0, 1), got {target}")
            self.params[name], self.targets[name] = p, float(target)
        if isinstance(targets, dict):
            for key in targets:
                if not any(fnmatch(n, key) for n in self.params):
                    raise InkpackError(f"prune: target {key!r} matches no prunable parameter")
        self.masks = {n: torch.ones_like(p, dtype=torch.bool) for n, p in self.params.items()}
        self.count = 0

    @staticmethod
    def _target_for(name: str, targets: dict[str, float] | float) -> float | None:
        if not isinstance(targets, dict):
            return float(targets)
        for key, value in targets.items():
            if fnmatch(name, key):
                return float(value)
        return None

    def current_sparsity(self, name: str) -> float:
        """The scheduled sparsity for one parameter after the updates made so far."""
        return self.targets[name] * schedule_fraction(self.count, self.steps, self.schedule)

    @torch.no_grad()
    def update_masks(self) -> None:
        """Drop exactly round(s·n) weights per layer: already dropped ones first, then the smallest."""
        for name, p in self.params.items():
            k = round(self.current_sparsity(name) * p.numel())
            mask = self.masks[name]
            score = p.detach().abs().flatten().float()
            score[~mask.flatten()] = -1.0  # keeps masks monotone: dropped weights stay dropped
            new = torch.ones(p.numel(), dtype=torch.bool, device=p.device)
            if k > 0:
                new[torch.topk(score, k, largest=False, sorted=False).indices] = False
            self.masks[name] = new.view_as(p)

    @torch.no_grad()
    def apply(self) -> None:
        """Zero the dropped weights (in place, so nn.LSTM's flat weights see it)."""
        for name, p in self.params.items():
            p.mul_(self.masks[name])

    def step(self) -> None:
        """One training step done: maybe raise sparsity, then re-apply the masks."""
        self.count += 1
        if self.count <= self.steps and (self.count % self.every == 0 or self.count == self.steps):
            self.update_masks()
        self.apply()

    def finish(self) -> None:
        """Jump to the final targets (e.g. to prune once without retraining)."""
        self.count = max(self.count, self.steps)
        self.update_masks()
        self.apply()

    def sparsity(self) -> dict[str, float]:
        """Measured share of zero weights per pruned parameter, plus "total" over all of them."""
        out, zeros, total = {}, 0, 0
        for name, p in self.params.items():
            z = int((p.detach() == 0).sum())
            out[name] = z / p.numel()
            zeros, total = zeros + z, total + p.numel()
        out["total"] = zeros / max(total, 1)
        return out

    def state_dict(self) -> dict[str, object]:
        return {"count": self.count, "masks": {n: m.clone() for n, m in self.masks.items()}}

    def load_state_dict(self, state: dict[str, object]) -> None:
        self.count = int(state["count"])  # type: ignore[arg-type]
        masks: dict[str, Tensor] = state["masks"]  # type: ignore[assignment]
        for name in self.masks:
            self.masks[name] = masks[name].to(self.masks[name].device)
