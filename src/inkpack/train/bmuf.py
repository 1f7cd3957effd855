"""Blockwise model-update filtering (BMUF, Chen & Huo, ICASSP 2016) for data-parallel training.

Under ``--sync bmuf`` the model is not DDP-wrapped: every worker takes ordinary local
optimizer steps on its cost-balanced share of each global batch, and every ``τ`` steps
(``block_steps``) the workers meet once, in one all-reduce of a flattened buffer
(parameters, floating-point buffers such as BatchNorm statistics, and a stop flag):

    G = mean_k(θ_k) − θ_start              the block's averaged update
    Δ ← η·Δ + ζ·G                          block momentum η, block learning rate ζ
    θ_g ← θ_g + Δ                          the global model
    θ_start ← θ_g (classical) or θ_g + η·Δ (Nesterov); every worker restarts from θ_start

BatchNorm buffers are averaged at each synchronization. Validation, the best model and
the ``model`` of a checkpoint are ``θ_g`` (with the buffers of the last synchronization).
Blocks run on across epoch boundaries; a stop (``--max-steps``, time limit) inside a
block leaves it open, and the checkpoint holds everything to finish it exactly:
``θ_g``, ``Δ``, ``θ_start``, the position in the block and every worker's parameters,
buffers and optimizer state (gathered to rank 0 like the RNG states).

With ``block_warmup`` K > 0 (post-local SGD, Lin et al., ICLR 2020) the first K local steps
are synchronous: every step is its own block with ``η = 0, ζ = 1`` (model averaging each step, as often
as DDP communicates); from step K on the blocks of ``τ`` steps with ``η`` start from that model,
with ``Δ = 0``.

With ``moments`` (``--block-moments``) each synchronization also averages the workers' optimizer
moment buffers (AdamW's ``exp_avg`` and ``exp_avg_sq``), so every worker starts the next block
from the same model *and* the same optimizer state instead of its own momentum, which points
along its own share's gradients (our variant after the idea of BMUF-Adam, Chen et al., ICASSP
2020, whose exact rule we could not read; it triples the bytes of each synchronization).

Defaults follow the paper: ``ζ = 1`` and ``η = 1 − 1/N`` for N workers. With one worker,
``η = 0`` and ``ζ = 1`` it is plain training (up to float rounding); with ``τ = 1`` and
``η = 0`` it is synchronous model averaging.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from inkpack.errors import ModelFileError
from inkpack.train.distributed import DistEnv

BYTES_F32 = 4


def block_update(mean: torch.Tensor, start: torch.Tensor, glob: torch.Tensor, delta: torch.Tensor,
                 eta: float, zeta: float, nesterov: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The filter: ``(θ_g, Δ, θ_start)`` of the next block from the workers' mean ``mean``."""
    g = mean - start
    delta = eta * delta + zeta * g
    glob = glob + delta
    nxt = glob + eta * delta if nesterov else glob.clone()
    return glob, delta, nxt


def default_momentum(world_size: int) -> float:
    """The paper's block momentum ``1 − 1/N`` (0 for one worker)."""
    return 1.0 - 1.0 / max(1, world_size)


def _flatten(tensors: list[torch.Tensor]) -> torch.Tensor:
    """``parameters_to_vector`` for any memory layout (reshape, not view)."""
    return torch.cat([t.detach().reshape(-1).float() for t in tensors]) if tensors else torch.zeros(0)


def _assign(tensors: list[torch.Tensor], vec: torch.Tensor) -> None:
    """Copy ``vec`` into ``tensors`` in place (their storage and layout stay)."""
    i = 0
    with torch.no_grad():
        for t in tensors:
            n = t.numel()
            t.copy_(vec[i:i + n].view(t.shape).to(t.dtype))
            i += n


def _float_buffers(model: nn.Module) -> list[torch.Tensor]:
    return [b for b in model.buffers() if b.is_floating_point()]


def _buffers_vector(model: nn.Module, like: torch.Tensor) -> torch.Tensor:
    return _flatten(_float_buffers(model)).to(like.device)


def _set_buffers(model: nn.Module, vec: torch.Tensor) -> None:
    _assign(_float_buffers(model), vec)


@dataclass
class SyncCount:
    syncs: int = 0
    bytes: int = 0


class BMUF:
    """The filter's state on one worker, and its synchronization (call :meth:`after_step`)."""

    def __init__(self, model: nn.Module, opt: torch.optim.Optimizer, env: DistEnv, block_steps: int,
                 block_momentum: float | None = None, block_lr: float = 1.0, nesterov: bool = False,
                 warmup: int = 0, moments: bool = False) -> None:
        self.model, self.opt, self.env = model, opt, env
        self.moments = moments
        self.tau = block_steps
        self.eta = default_momentum(env.world_size) if block_momentum is None else block_momentum
        self.zeta, self.nesterov = block_lr, nesterov
        self.warmup = warmup
        self.steps = 0  # local steps taken, for the synchronous warm-up
        self.params = [p for p in model.parameters()]
        self.n_params = sum(p.numel() for p in self.params)
        if env.distributed:  # every worker starts from rank 0's model (as DDP does)
            vec = self._local()
            dist.broadcast(vec, 0)
            self._set_local(vec)
        self.glob = _flatten(self.params).to(env.device)
        self.glob_buffers = _buffers_vector(model, self.glob).clone()
        self.start = self.glob.clone()
        self.delta = torch.zeros_like(self.glob)
        self.step_in_block = 0
        self.epoch = SyncCount()
        self.total = SyncCount()
        self._eval: nn.Module | None = None

    @classmethod
    def attach(cls, trainer, ckpt: dict | None) -> "BMUF | None":
        """The filter of a :class:`~inkpack.train.loop.Trainer` under ``sync: bmuf`` (else None),
        restored from ``ckpt`` when resuming."""
        cfg = trainer.cfg
        if cfg.sync != "bmuf":
            return None
        f = cls(trainer.model, trainer.opt, trainer.env, cfg.block_steps, cfg.block_momentum, cfg.block_lr,
                cfg.nesterov, cfg.block_warmup, cfg.block_moments)
        f.load_checkpoint(ckpt or {}, str(trainer.ckpt_path))
        return f

    # ------------------------------------------------------------ local model
    def _local(self) -> torch.Tensor:
        p = _flatten(self.params).to(self.env.device)
        return torch.cat([p, _buffers_vector(self.model, p)])

    def _set_local(self, vec: torch.Tensor) -> None:
        n = self.n_params
        _assign(self.params, vec[:n])
        _set_buffers(self.model, vec[n:])

    def _moment_tensors(self) -> list[torch.Tensor]:
        """The optimizer's per-parameter moment buffers (tensors shaped like their parameter,
        e.g. AdamW's ``exp_avg`` and ``exp_avg_sq``; not step counters), in parameter order;
        empty without ``moments`` or before the first step."""
        if not self.moments:
            return []
        out = []
        for p in self.params:
            st = self.opt.state.get(p, {})
            out += [st[k] for k in sorted(st) if torch.is_tensor(st[k]) and st[k].shape == p.shape
                    and st[k].is_floating_point()]
        return out

    # ------------------------------------------------------------ block update
    def after_step(self, stop: bool) -> bool:
        """Count a local step; at the end of a block synchronize. Returns the agreed stop
        decision (any worker's ``stop``), taken only at synchronizations when distributed."""
        self.step_in_block += 1
        self.steps += 1
        if self.steps <= self.warmup:  # synchronous phase: every step a block, plain model averaging
            stop = self.sync(stop, eta=0.0, zeta=1.0)  # η = 0: no look-ahead either, Nesterov or not
            if self.steps == self.warmup:
                self.delta.zero_()  # the blocks start without momentum
            return stop
        if self.step_in_block < self.tau:
            return stop and not self.env.distributed
        return self.sync(stop)

    def sync(self, stop: bool = False, eta: float | None = None, zeta: float | None = None) -> bool:
        """One synchronization: the block update with ``eta`` and ``zeta`` (default: the filter's)."""
        local = self._local()
        moments = self._moment_tensors()
        flag = local.new_tensor([float(stop)])
        buf = torch.cat([local.float(), _flatten(moments).to(local.device), flag])
        if self.env.distributed:
            dist.all_reduce(buf, op=dist.ReduceOp.SUM)
            buf /= self.env.world_size
        n, m = self.glob.numel(), local.numel()
        mean, bufs, stop_any = buf[:n], buf[n:m], bool(buf[-1] > 0)
        _assign(moments, buf[m:-1])  # the workers' mean moments (a no-op copy for one worker)
        self.glob, self.delta, self.start = block_update(
            mean, self.start, self.glob, self.delta, self.eta if eta is None else eta,
            self.zeta if zeta is None else zeta, self.nesterov)
        self.glob_buffers = bufs.clone()
        self._set_local(torch.cat([self.start, bufs]))
        self.step_in_block = 0
        self._eval = None
        sent = buf.numel() * BYTES_F32 if self.env.distributed else 0  # the all-reduced buffer
        for c in (self.epoch, self.total):
            c.syncs += 1
            c.bytes += sent
        return stop_any

    # ------------------------------------------------------------ global model
    def global_model(self) -> nn.Module:
        """A copy of the model holding ``θ_g`` and the buffers of the last synchronization."""
        if self._eval is None:
            m = copy.deepcopy(self.model)
            _assign(list(m.parameters()), self.glob)
            _set_buffers(m, self.glob_buffers)
            self._eval = m
        return self._eval

    def global_state_dict(self) -> dict:
        return {k: v.detach().clone() for k, v in self.global_model().state_dict().items()}

    def epoch_record(self) -> dict:
        """Synchronizations and bytes of this epoch (then reset); bytes = all-reduce payload."""
        rec = {"syncs": self.epoch.syncs, "sync_bytes": self.epoch.bytes, "block_steps": self.tau,
               "block_momentum": self.eta}
        self.epoch = SyncCount()
        return rec

    # ------------------------------------------------------------ checkpoints
    def add_to_checkpoint(self, ckpt: dict) -> None:
        """Call on every rank inside ``save()``: gathers each worker's local state to rank 0."""
        own = {"local": self._local().clone(), "optimizer": self.opt.state_dict()}
        ranks: list | None = [own]
        if self.env.distributed:
            ranks = [None] * self.env.world_size if self.env.is_main else None
            dist.gather_object(own, ranks, dst=0)
        ckpt["model"] = self.global_state_dict()
        ckpt["bmuf"] = {
            "global": self.glob.clone(), "global_buffers": self.glob_buffers.clone(),
            "delta": self.delta.clone(), "start": self.start.clone(), "step_in_block": self.step_in_block,
            "steps": self.steps,
            "epoch_count": (self.epoch.syncs, self.epoch.bytes), "total_count": (self.total.syncs, self.total.bytes),
            "ranks": ranks, "settings": {"tau": self.tau, "eta": self.eta, "zeta": self.zeta,
                                         "nesterov": self.nesterov, "warmup": self.warmup,
                                         "moments": self.moments},
        }

    def load_checkpoint(self, ckpt: dict, path: str) -> None:
        """Restore from ``ckpt`` (already loaded into model and optimizer as rank 0's/θ_g).

        A checkpoint of a DDP run starts the filter from its model; one of another number of
        workers restarts the open block from ``θ_start`` with rank 0's optimizer state."""
        st = ckpt.get("bmuf")
        if st is None:
            return
        try:
            if st["global"].numel() != self.glob.numel():
                raise ValueError(f"{st['global'].numel()} parameters, the model has {self.glob.numel()}")
            self.glob, self.delta, self.start = st["global"].clone(), st["delta"].clone(), st["start"].clone()
            self.glob_buffers = st["global_buffers"].clone()
            self.steps = st.get("steps", self.warmup)  # checkpoints before the warm-up option: past it
            self.epoch, self.total = SyncCount(*st["epoch_count"]), SyncCount(*st["total_count"])
            ranks = st["ranks"] or []
            if len(ranks) == self.env.world_size:
                mine = ranks[self.env.rank]
                self._set_local(mine["local"])
                self.opt.load_state_dict(mine["optimizer"])
                self.step_in_block = st["step_in_block"]
            else:
                self._set_local(torch.cat([self.start, self.glob_buffers]))
                self.step_in_block = 0
        except (KeyError, ValueError, RuntimeError, TypeError) as e:
            raise ModelFileError(f"{path}: BMUF state does not fit this configuration "
                                 f"({str(e).splitlines()[0]}); delete or move it to start fresh") from None
        self._eval = None


def ddp_epoch_record(model: nn.Module, steps: int, env: DistEnv) -> dict:
    """What DDP communicated in an epoch: one all-reduce of all gradients per step."""
    grads = sum(p.numel() for p in model.parameters() if p.requires_grad) * BYTES_F32
    syncs = steps if env.distributed else 0
    return {"syncs": syncs, "sync_bytes": syncs * grads}
