"""The CTC training loop for line recognizers: resumable, logged, early-stopped.

Exact resume: the batch order of epoch ``e`` is a pure function of ``(seed, e)``,
augmentation is seeded per ``(seed, epoch, example)``, and the checkpoint stores the
model, optimizer, scheduler, torch/numpy/python RNG states and the position inside
the epoch. Restarting the same command after a SIGKILL continues from the last
checkpoint and takes the very same next step.

Data parallel: under ``torchrun`` (or ``inkpack train --nproc N``) every process builds
the same global batches (``batch_size`` is the global size) and trains on its
cost-balanced share of each (:mod:`inkpack.train.sharding`); DistributedDataParallel
averages the gradients of losses scaled so that N processes take the step one process
takes on the same global batch. Rank 0 alone writes checkpoints, logs, plots and the
best model; validation is sharded by batch and its counts summed, and rank 0's epoch
record is broadcast, so early stopping and the LR schedule agree on every rank.

The step, checkpoint, resume, loop, best model and logs are :class:`inkpack.train.base.TrainerBase`'s
(shared with the ink trainer); this module fills in its hooks for line images.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from tqdm import tqdm

from inkpack.batching import Batch, bucket_batches, random_batches
from inkpack.data.alphabet import Alphabet
from inkpack.data.lines import LineBatcher, load_lineset
from inkpack.devices import resolve_device
from inkpack.errors import InkpackError
from inkpack.models import REGISTRY, build_model
from inkpack.models.io import describe_data
from inkpack.models.registry import with_capability
from inkpack.train.base import TrainerBase
from inkpack.train.bmuf import BMUF, ddp_epoch_record
from inkpack.train.checkpoint import load_checkpoint
from inkpack.train.config import TrainConfig
from inkpack.train.ctc import BatchForward, needed_frames, train_forward, training_loss  # noqa: F401 (needed_frames: re-export)
from inkpack.train.ema import Precision, WeightEMA
from inkpack.train.distributed import (
    DistEnv,
    all_reduce_sums,
    broadcast_object,
    cleanup,
    init_distributed,
    save_atomic,
    scale_loss,
    wrap_model,
)
from inkpack.train.sharding import DistributedBatchSampler, batch_cost, imbalance
from inkpack.train.step_batches import BatchMaker, step_batches
from inkpack.train.teacher import Teachers, kd_loss
from inkpack.train.validate import restore_rng, trainable_lines, validate_lines

# cost model of a rank's share under each batching (pad-max pads all alike: cost = count)
SHARD_MODE = {"pad-min": "padded", "pack": "packed", "pad-max": "count"}


class Trainer(TrainerBase):
    """The line trainer on :class:`~inkpack.train.base.TrainerBase` (its loop, step, checkpoint)."""

    STATE = {k: k for k in ("epoch", "step_in_epoch", "global_step", "history", "best_cer", "bad_epochs",
                            "elapsed")} | {"epoch_loss": "run_loss", "epoch_imbalance": "epoch_imbalance"}
    STATE_DEFAULTS = {"epoch_loss": (0.0, 0), "epoch_imbalance": (0.0, 0)}
    RECORD_ON_STOP = False  # records are whole epochs
    RATE = "lines_s"

    def __init__(self, cfg: TrainConfig) -> None:
        self.cfg = cfg
        if cfg.arch not in REGISTRY:
            raise InkpackError(f"unknown architecture {cfg.arch!r}; known: {', '.join(sorted(REGISTRY))}")
        if cfg.batching not in ("pad-max", "pad-min", "pack"):
            raise InkpackError(f"--batching must be pad-max, pad-min or pack, not {cfg.batching!r}")
        if cfg.batching == "pack" and REGISTRY[cfg.arch].packing is None:
            raise InkpackError(f"--batching pack is implemented for {', '.join(with_capability('packing'))}, "
                               f"not {cfg.arch!r}")
        self._init_out(cfg)
        self.env = DistEnv()  # setup() joins the process group when launched by torchrun
        self.ddp: nn.Module | None = None
        self.bmuf: BMUF | None = None

    @property
    def is_main(self) -> bool:
        return self.env.is_main

    @property
    def epoch_loss(self) -> tuple[float, int]:  # the checkpoint's name of the loss since the last record
        return self.run_loss

    # ---------------------------------------------------------------- data
    def _load_data(self, alphabet: Alphabet | None, init=None) -> None:
        cfg = self.cfg
        progress = cfg.progress and self.env.is_main
        self.train_set = load_lineset(cfg.train, cfg.height, progress, cfg.limit, images_dir=cfg.images_dir)
        if len(self.train_set) == 0:
            raise InkpackError(f"{cfg.train}: no usable training lines ({len(self.train_set.skipped)} skipped)")
        if alphabet is None and init is not None:  # the source model's alphabet, resized for these texts
            alphabet = init.resolve(self.train_set.texts)
            self._say(init.describe())
        self.alphabet = alphabet or Alphabet.from_texts(self.train_set.texts)
        self.val_set = (load_lineset(cfg.val, cfg.height, progress, cfg.val_limit, images_dir=cfg.images_dir)
                        if cfg.val else None)
        self.skipped = list(self.train_set.skipped)
        self._filter_train()
        if not self.env.is_main:
            return
        with open(self.out / "skipped.txt", "w", encoding="utf-8") as f:
            f.write("\n".join(self.skipped) + ("\n" if self.skipped else ""))
        if self.skipped:
            tqdm.write(f"warning: skipped {len(self.skipped)} training samples (reasons in {self.out / 'skipped.txt'})")

    def _filter_train(self) -> None:
        self.train_set = trainable_lines(self.train_set, self.alphabet, self.model, self.skipped, self.cfg.train)

    def _epoch_batches(self, epoch: int) -> list[list[int]]:
        cfg, widths = self.cfg, self.train_set.widths
        seed = cfg.seed * 1000 + epoch
        if cfg.batching == "pad-min":
            return bucket_batches(widths, cfg.batch_size, shuffle=True, seed=seed)
        return random_batches(len(widths), cfg.batch_size, shuffle=True, seed=seed)

    def _make_batch(self, idx: list[int]) -> Batch:
        return self.batch_maker(idx)

    # ---------------------------------------------------------------- setup
    def setup(self) -> None:
        cfg = self.cfg
        env = init_distributed()
        if not env.distributed:  # --device; torchrun jobs take one GPU per rank (or the CPU)
            env = replace(env, device=resolve_device(cfg.device))
        self.env = env
        self.precision = Precision(env.device, cfg.precision)  # fp16 on CUDA, fp32 on the CPU (auto)
        torch.manual_seed(cfg.seed)
        ckpt = load_checkpoint(self.ckpt_path)
        alphabet = Alphabet.from_dict(ckpt["alphabet"]) if ckpt else None
        init = None
        if cfg.init_from and not ckpt:  # a resumed run already holds the warm-started weights
            from inkpack.train.warm_start import read_init

            init = read_init(cfg.init_from, cfg.init_layers, cfg.init_resize)
        opts = dict(cfg.options)
        if REGISTRY[cfg.arch].input_kind == "image":
            opts["height"] = cfg.height  # every image architecture takes its input height
        self.model_options = opts
        # a provisional model gives the width→frames ratio for filtering
        self.model = build_model(cfg.arch, 2, **opts)
        self._load_data(alphabet, init)
        torch.manual_seed(cfg.seed)
        self.model = build_model(cfg.arch, self.alphabet.num_classes, **opts).to(env.device)
        self.train_batcher = LineBatcher(
            self.train_set, self.alphabet, cfg.augment_config(), seed=cfg.seed, unknown_policy="error"
        )
        self.max_width = max(self.train_set.widths)
        pack_opts = None
        if cfg.batching == "pack":
            from inkpack.packing import pack_options

            pack_opts = pack_options(self.model)
        self.batch_maker = BatchMaker(self.train_batcher, cfg.batching, cfg.height, self.max_width, pack_opts)
        self.ema = WeightEMA(self.model, cfg.ema) if cfg.ema else None
        self.teachers = None
        if cfg.teacher and cfg.teacher_weight:
            self.teachers = Teachers(cfg.teacher, self.alphabet, cfg.height, cfg.batching,
                                     cfg.teacher_temperature, env.device)
        sizes = [(cfg.height, w) for w in self.train_set.widths]
        self.sampler = DistributedBatchSampler(
            self._epoch_batches, env.rank, env.world_size, sizes.__getitem__, SHARD_MODE[cfg.batching]
        )
        self.steps_per_epoch = len(self.sampler)  # global batches of epoch 0 (all of them single-process)
        self._init_optim(self.steps_per_epoch * cfg.epochs)
        self.best_cer, self.bad_epochs = float("inf"), 0
        self.skip_count = len(self.skipped)
        self.epoch_imbalance = (0.0, 0)
        if env.distributed:  # own dropout masks per rank (the model above is the same everywhere)
            torch.manual_seed(cfg.seed + 1_000_003 * (env.rank + 1))
        if ckpt:
            self.restore(ckpt)
            old_world = ckpt.get("world_size", 1)
            if old_world != env.world_size and self.step_in_epoch:
                self.step_in_epoch = self._remap_step(self.step_in_epoch, old_world)
            self._said_resumed()
        elif init is not None:
            self._say(init.apply(self.model))
        self.bmuf = BMUF.attach(self, ckpt)  # --sync bmuf: no DDP, filtered model averages every block
        if env.distributed and self.bmuf is None:  # DDP broadcasts rank 0's weights (all loaded the same ckpt)
            self.ddp = wrap_model(BatchForward(self.model), env)

    def _say(self, msg: str) -> None:
        if self.env.is_main:
            tqdm.write(msg)

    def restore_rng(self, ckpt: dict) -> None:
        restore_rng(ckpt, self.env, self.cfg.seed, self.global_step)

    def _remap_step(self, step: int, old_world: int) -> int:
        """The same place in the epoch under another number of processes, which keeps
        other global batches (those with fewer examples than processes are dropped)."""
        every = self._epoch_batches(self.epoch)
        done = [j for j, b in enumerate(every) if len(b) >= old_world][step - 1] + 1
        return sum(1 for b in every[:done] if len(b) >= self.env.world_size)

    def checkpoint(self) -> dict:
        """The checkpoint, on every rank: it gathers their RNG states (and BMUF's workers)."""
        env = self.env
        ckpt = super().checkpoint()
        ckpt["world_size"] = env.world_size
        cuda = env.device.type == "cuda"
        if cuda:
            ckpt["cuda_rng"] = torch.cuda.get_rng_state(env.device)
        if env.distributed:
            own = {"torch": torch.get_rng_state(), **({"cuda": ckpt["cuda_rng"]} if cuda else {})}
            ckpt["rng_ranks"] = [None] * env.world_size
            dist.all_gather_object(ckpt["rng_ranks"], own)
        if self.bmuf is not None:  # θ_g as "model", and every worker's local state
            self.bmuf.add_to_checkpoint(ckpt)
        return ckpt

    def save(self) -> None:
        """Write the checkpoint (rank 0); call on every rank."""
        save_atomic(self.checkpoint(), self.ckpt_path, self.env)

    def model_config(self, metrics: dict | None = None) -> dict:
        return {
            "arch": self.cfg.arch,
            "options": self.model_options,
            "alphabet": self.alphabet.to_dict(),
            "preprocessing": {"height": self.cfg.height, "ink": "1 on 0 background, contrast-stretched"},
            "input_kind": REGISTRY[self.cfg.arch].input_kind,
            "trained_on": describe_data(self.cfg.train, lines=len(self.train_set)),
            "metrics": metrics or {},
        }

    # ---------------------------------------------------------------- steps
    def step_loss(self, batch: Batch, global_count: int | None) -> tuple[torch.Tensor, torch.Tensor]:
        batch = batch.to(self.env.device)  # images only (a no-op on CPU); sizes stay on the CPU
        out = train_forward(self.model, batch) if self.ddp is None else self.ddp(batch)
        loss = training_loss(self.model, out, batch)
        if self.teachers is not None:  # knowledge distillation (inkpack.train.teacher)
            t_lp, t_len = self.teachers.log_probs(batch)
            loss = loss + self.cfg.teacher_weight * kd_loss(out[0], out[1], t_lp, t_len,
                                                             self.cfg.teacher_temperature)
        if self.ddp is None:
            return loss, loss
        return loss, scale_loss(loss * len(batch), global_count or len(batch), self.env.world_size)

    @property
    def eval_model(self) -> nn.Module:
        """What is validated and shipped: BMUF's global model, the weight average, or the model."""
        return self.bmuf.global_model() if self.bmuf else super().eval_model

    def validate(self) -> dict:
        return validate_lines(self.eval_model, self.val_set, self.alphabet, self.env)

    # ---------------------------------------------------------------- loop hooks
    def bar_desc(self) -> str:
        return f"epoch {self.epoch + 1}/{self.cfg.epochs}"

    def begin_epoch(self) -> int:
        env = self.env
        self.sampler.set_epoch(self.epoch)
        self._batches = batches = self.sampler.batches()
        self.train_batcher.epoch = self.epoch
        self._first = first = self.step_in_epoch
        if env.distributed:  # every rank's share of each remaining step (for the imbalance log)
            self._shares = [self.sampler.shares(k) for k in range(first, len(batches))]
            mine = [sh[env.rank] for sh in self._shares]
        else:
            mine = batches[first:]
        self._stream = step_batches(self.batch_maker, mine, self.cfg.workers)
        return len(batches)

    def run_step(self) -> tuple[float, int]:
        if self.env.distributed:
            sizes = [[self.sampler.cost_fn(i) for i in sh] for sh in self._shares[self.step_in_epoch - self._first]]
            self._imb = imbalance([batch_cost(sz, self.sampler.mode) for sz in sizes])
            s, k = self.epoch_imbalance
            self.epoch_imbalance = (s + self._imb, k + 1)
        batch = next(self._stream)
        return self.train_step(batch, len(self._batches[self.step_in_epoch])), len(batch)

    def agree(self, out: tuple[float, int], timed_out: bool) -> tuple[float, int, bool]:
        loss, n = out
        if self.bmuf is not None:  # local loss; the stop flag travels with the block update
            timed_out = self.bmuf.after_step(timed_out)
        elif self.env.distributed:  # global mean loss; stop when any rank hits the time limit
            tot = all_reduce_sums({"loss": loss * n, "n": n, "stop": float(timed_out)}, self.env)
            n, timed_out = round(tot["n"]), tot["stop"] > 0
            loss = tot["loss"] / n
        return loss, n, timed_out

    def postfix(self, loss: float, rate: float) -> dict:
        post = {"loss": f"{loss:.2f}", "lines_s": f"{rate:.1f}"}
        if self.env.distributed:
            post["imbalance"] = f"{self._imb:.2f}"
        return post

    def early_stop(self) -> bool:
        if self.cfg.val and self.bad_epochs >= self.cfg.patience:
            self._say(f"early stopping: no val CER improvement for {self.cfg.patience} epochs")
            return True
        return False

    def result(self, stop: str) -> dict:
        return {"stop": stop, "best_cer": self.best_cer, "epochs": self.epoch, "steps": self.global_step}

    def make_record(self, start: float) -> dict:
        """The epoch that just ended (``self.epoch`` counts it already)."""
        env = self.env
        s, k = self.run_loss
        rec = {"epoch": self.epoch, "step": self.global_step, "train_loss": s / max(1, k),
               "lines_per_s": self.epoch_seen / max(1e-9, time.time() - self.epoch_t0),
               "lr": self.opt.param_groups[0]["lr"]}
        if env.distributed:
            s, k = self.epoch_imbalance
            rec.update(imbalance=s / max(1, k), world_size=env.world_size)
            for b in ([] if self.bmuf else self.model.buffers()):  # validate with rank 0's BatchNorm statistics
                dist.broadcast(b, 0)
        rec.update(self.bmuf.epoch_record() if self.bmuf else ddp_epoch_record(self.model, len(self._batches), env))
        if self.val_set is not None:
            rec.update(self.validate())
        rec["elapsed_s"] = time.time() - start
        self.epoch_imbalance = (0.0, 0)
        return broadcast_object(rec, env)  # rank 0's record: every rank takes the same decisions

    def better(self, rec: dict) -> bool:
        """Lower val CER; without validation every epoch's model is kept (and counts as no gain)."""
        if self.val_set is not None and rec["val_cer"] < self.best_cer:
            self.best_cer, self.bad_epochs = rec["val_cer"], 0
            return True
        self.bad_epochs += 1
        return self.val_set is None

    def best_metrics(self, rec: dict) -> dict:
        return {k: rec[k] for k in ("val_cer", "val_wer", "epoch")} if self.val_set is not None else {}

    def describe(self, rec: dict, better: bool) -> str:
        msg = f"epoch {rec['epoch']}: loss {rec['train_loss']:.3f}, {rec['lines_per_s']:.1f} lines/s"
        if "val_cer" in rec:
            msg += f", val CER {100 * rec['val_cer']:.2f}% WER {100 * rec['val_wer']:.2f}%"
        if "imbalance" in rec:
            msg += f", rank imbalance {rec['imbalance']:.3f}"
        return msg + (" (best)" if better and self.val_set is not None else "")

    def plot(self, history: list[dict], path: Path) -> None:
        if self.val_set is not None:
            # imported here: only rank 0 pays for matplotlib
            from inkpack.train.plot import plot_curves

            plot_curves(history, path)


def train(cfg: TrainConfig) -> dict:
    """Train (single process, or one rank of a ``torchrun`` job) and leave the process group."""
    cfg.validate()
    trainer = Trainer(cfg)
    ok = False
    try:
        trainer.setup()
        result = trainer.fit()
        ok = True
        return result
    finally:
        del trainer  # the DDP wrapper holds the process group: release it before leaving
        cleanup(sync=ok)
