"""Teacher–student learning for CNN-DBLSTM line models (seeds 003/004).

Pipeline of the seed: the student copies the teacher's DBLSTM and IP (``fc``) layers, which stay
FIXED while the student's CNN and projection learn to imitate the teacher at one position of the
network (one criterion below); then the whole student is fine-tuned with CTC. Teacher and student
share the feature size and frame rate (width / 4), so frames align one to one. Every criterion is
averaged over the real (unpadded) frames of the batch: with ``M = Σ_b len_b`` real frames,

* ``softmax-ce`` (temperature τ): ``1/M Σ_t,b Σ_k p_T(k) [log p_T(k) − log p_S(k)]`` with
  ``p = softmax(logits / τ)``. This is the cross entropy minus the teacher's entropy (a
  constant), i.e. the KL divergence: same gradient as the seed's CE, but zero when the student
  matches the teacher. Not multiplied by τ².
* ``ip-l2``: ``1/M Σ ||z_T − z_S||²`` on the IP layer outputs (pre-softmax logits).
* ``lstm-l2``: ``1/M Σ ||h_T − h_S||²`` on the last (bidirectional) LSTM layer outputs.
* ``cnn-l2``: ``1/M Σ ||f_T − f_S||²`` on the CNN feature sequences that feed the first LSTM.
* ``cnn-mah``: the same features, distance measured through the teacher's first LSTM layer input
  weights: ``1/M Σ_t,b Σ_{d∈{fwd,bwd}} ||W_ih^(d) (f_T − f_S)||²`` where ``W_ih^(d)`` is
  ``lstm.weight_ih_l0`` / ``weight_ih_l0_reverse`` (4H × F, all four gates i, f, g, o stacked).
  It is the Mahalanobis-type distance ``δᵀ (Σ_d W_dᵀ W_d) δ``: a feature error counts as much as
  it changes the gate pre-activations of the succeeding LSTM layer (the biases cancel).

Dropout and the frozen layers run in eval mode during distillation; the CNN (batch norm) trains.
"""

from __future__ import annotations

import copy
import itertools
import time
from collections.abc import Callable, Iterable, Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from inkpack.batching import Batch
from inkpack.errors import InkpackError
from inkpack.train.base import optimizer_step, train_keep_norm
from inkpack.train.ctc import ctc_loss, frame_mask, run_model

__all__ = [
    "CRITERIA",
    "DistillStage",
    "distill",
    "distill_loss",
    "distill_narrow_lstm",
    "finetune_ctc",
    "frame_mask",
    "freeze_head",
    "init_student",
    "outputs",
]

CRITERIA = ("softmax-ce", "ip-l2", "lstm-l2", "cnn-l2", "cnn-mah")
_NEEDS = {"cnn-l2": "feats", "cnn-mah": "feats", "lstm-l2": "lstm", "ip-l2": "logits", "softmax-ce": "logits"}
_HEAD = ("lstm", "fc")


def outputs(model: nn.Module, images: Tensor, widths: Tensor, upto: str = "logits") -> dict[str, Tensor]:
    """The CNN feature sequence, last-LSTM outputs and IP outputs (``[T, B, ·]``), as far as `upto`."""
    lengths = model.output_lengths(widths).clamp(min=1)
    feats = model.features(images, widths)
    lengths = lengths.clamp(max=feats.shape[0])
    out = {"feats": feats, "lengths": lengths}
    if upto in ("lstm", "logits"):
        out["lstm"] = model.sequence(feats, lengths)
    if upto == "logits":
        out["logits"] = model.fc(out["lstm"])
    return out


def distill_loss(criterion: str, teacher: dict[str, Tensor], student: dict[str, Tensor], lengths: Tensor,
                 *, temperature: float = 1.0, w_ih: Tensor | None = None) -> Tensor:
    """One criterion (module docstring) on aligned ``[T, B, ·]`` outputs, mean over real frames."""
    if criterion not in CRITERIA:
        raise InkpackError(f"distill: unknown criterion {criterion!r} (one of {', '.join(CRITERIA)})")
    key = _NEEDS[criterion]
    t, s = teacher[key], student[key]
    frames = min(t.shape[0], s.shape[0])
    t, s = t[:frames], s[:frames]
    mask = frame_mask(lengths.clamp(max=frames), frames).to(s.dtype)  # [T, B]
    n = mask.sum().clamp_min(1.0)
    if criterion == "softmax-ce":
        lp_t = F.log_softmax(t / temperature, -1)
        lp_s = F.log_softmax(s / temperature, -1)
        per = (lp_t.exp() * (lp_t - lp_s)).sum(-1)
    else:
        d = t - s
        if criterion == "cnn-mah":
            if w_ih is None:
                raise InkpackError("distill: cnn-mah needs the teacher's first-layer LSTM input weights")
            d = d @ w_ih.t()
        per = d.pow(2).sum(-1)
    return (per * mask).sum() / n


def teacher_w_ih(teacher: nn.Module) -> Tensor:
    """First LSTM layer input weights of both directions stacked: [D·4H, F]."""
    lstm = teacher.lstm
    names = ["weight_ih_l0"] + (["weight_ih_l0_reverse"] if lstm.bidirectional else [])
    return torch.cat([getattr(lstm, n).detach() for n in names], 0)


def init_student(student: nn.Module, teacher: nn.Module) -> None:
    """Copy the teacher's DBLSTM and IP layers into the student (the seed's starting point)."""
    for name in _HEAD:
        try:
            getattr(student, name).load_state_dict(getattr(teacher, name).state_dict())
        except (RuntimeError, AttributeError) as e:
            raise InkpackError(f"distill: student {name} does not match the teacher's "
                               f"({str(e).splitlines()[0]})") from None


def freeze_head(student: nn.Module, frozen: bool = True) -> list[nn.Parameter]:
    """(Un)freeze the LSTM and IP layers; returns the parameters left to train (CNN + proj)."""
    for name in _HEAD:
        for p in getattr(student, name).parameters():
            p.requires_grad_(not frozen)
    return [p for p in student.parameters() if p.requires_grad]


def _cycle(batches: Iterable[Batch] | Callable[[int], Batch]) -> Iterator[Batch]:
    if callable(batches):
        return (batches(i) for i in itertools.count())
    return itertools.cycle(batches)


class DistillStage:
    """Distillation as a retraining task for :func:`inkpack.compress.converge.retrain_until`
    (``--converge``): batches, the criterion's loss against the teacher and the modules' modes.
    ``criterion="lstm-l2-narrow"`` is :func:`distill_narrow_lstm`'s (its adapter's parameters
    in ``params``, the IP layer composed by ``finish``); the others are :func:`distill`'s (call
    :func:`init_student` first; ``params`` is the CNN and projection, the head fixed)."""

    def __init__(self, teacher: nn.Module, student: nn.Module, batches: Callable[[int], Batch] | None, criterion: str,
                 temperature: float = 1.0) -> None:
        self.teacher, self.batches, self.criterion, self.temperature = teacher.eval(), batches, criterion, temperature
        self.narrow = criterion == "lstm-l2-narrow"
        if self.narrow:
            self.adapter = _narrow_setup(teacher, student)
            self.params = list(student.lstm.parameters()) + list(self.adapter.parameters())
        else:
            if criterion not in CRITERIA:
                raise InkpackError(f"distill: unknown criterion {criterion!r} (one of {', '.join(CRITERIA)})")
            self.params = freeze_head(student, True)
        self.w_ih = teacher_w_ih(teacher) if criterion == "cnn-mah" else None
        self.upto = "lstm" if self.narrow else _NEEDS[criterion]

    def batch(self, step: int) -> Batch:
        return self.batches(step)

    def prepare(self, student: nn.Module) -> None:
        student.train()
        for name in ("cnn",) if self.narrow else (*_HEAD, "dropout"):
            getattr(student, name).eval()

    def teacher_outputs(self, batch: Batch, upto: str | None = None) -> dict[str, Tensor]:
        with torch.no_grad():
            return outputs(self.teacher, batch.images, batch.widths, upto or self.upto)

    def loss(self, student: nn.Module, batch: Batch, t_out: dict[str, Tensor] | None = None) -> Tensor:
        """The criterion on one batch; ``t_out``: the teacher's outputs if already computed."""
        t_out = t_out if t_out is not None else self.teacher_outputs(batch)
        s_out = outputs(student, batch.images, batch.widths, self.upto)
        lengths = torch.minimum(t_out["lengths"], s_out["lengths"])
        if self.narrow:
            return distill_loss("lstm-l2", t_out, {"lstm": self.adapter(s_out["lstm"])}, lengths)
        return distill_loss(self.criterion, t_out, s_out, lengths, temperature=self.temperature, w_ih=self.w_ih)

    def finish(self, student: nn.Module) -> None:
        """Every parameter trainable again; a narrow student's IP layer composed with the adapter."""
        for p in student.parameters():
            p.requires_grad_(True)
        if self.narrow:
            _compose_head(self.teacher, student, self.adapter)
        student.eval()


def distill(teacher: nn.Module, student: nn.Module, batches: Iterable[Batch] | Callable[[int], Batch],
            criterion: str = "cnn-mah", steps: int = 1000, *, lr: float = 1e-3, temperature: float = 1.0,
            copy_head: bool = True, clip: float = 5.0, log_every: int = 0,
            log: Callable[[str], None] = print, cache: dict[int, dict[str, Tensor]] | None = None) -> dict:
    """Train the student's CNN + projection to imitate the teacher; LSTM/IP copied and fixed.

    `batches`: Batch objects (cycled) or a function step → Batch. Returns the loss history.
    `cache`: the teacher's outputs by step, filled on first use, for several students distilled
    on the same batch sequence (a VGG teacher's forward pass costs more than a student's step).
    """
    if criterion not in CRITERIA:
        raise InkpackError(f"distill: unknown criterion {criterion!r} (one of {', '.join(CRITERIA)})")
    if copy_head:
        init_student(student, teacher)
    stage = DistillStage(teacher, student, None, criterion, temperature)  # the head frozen
    params = stage.params
    opt = torch.optim.Adam(params, lr=lr)
    history, it, t0 = [], _cycle(batches), time.perf_counter()
    try:
        for step in range(1, steps + 1):
            batch = next(it)
            stage.prepare(student)
            if cache is not None and step in cache:
                t_out = cache[step]
            else:  # cached outputs go up to the logits, so that every criterion can use them
                t_out = stage.teacher_outputs(batch, "logits" if cache is not None else None)
                if cache is not None:
                    cache[step] = t_out
            _update(opt, params, stage.loss(student, batch, t_out), clip, history)
            _progress(history, step, steps, log_every, log, f"distill {criterion}")
    finally:
        freeze_head(student, False)
        student.eval()
    return {"criterion": criterion, "steps": steps, "losses": history, "seconds": time.perf_counter() - t0}


def _update(opt: torch.optim.Optimizer, params: list, loss: torch.Tensor, clip: float, history: list,
            after_step: Callable[[], None] | None = None) -> None:
    """One optimiser step on ``loss`` (gradient norm of ``params`` clipped to ``clip`` when set),
    logged in ``history``."""
    optimizer_step(loss, opt, params, clip, after_step=after_step)
    history.append(float(loss.detach()))


def _progress(history: list, step: int, steps: int, log_every: int, log: Callable[[str], None], what: str) -> None:
    if log_every and step % log_every == 0:
        log(f"{what} step {step}/{steps} loss {sum(history[-log_every:]) / log_every:.4g}")


def _narrow_setup(teacher: nn.Module, student: nn.Module) -> nn.Linear:
    """The teacher's CNN and projection copied into the student and fixed; the adapter from the
    student's DBLSTM outputs to the teacher's."""
    for name in ("cnn", "proj"):
        try:
            getattr(student, name).load_state_dict(getattr(teacher, name).state_dict())
        except (RuntimeError, AttributeError) as e:
            raise InkpackError(f"distill: student {name} does not match the teacher's ({str(e).splitlines()[0]})") from None
    for p in itertools.chain(student.cnn.parameters(), student.proj.parameters()):
        p.requires_grad_(False)
    return nn.Linear(2 * student.lstm.hidden_size, 2 * teacher.lstm.hidden_size)


@torch.no_grad()
def _compose_head(teacher: nn.Module, student: nn.Module, adapter: nn.Linear) -> None:
    student.fc.weight.copy_(teacher.fc.weight @ adapter.weight)
    student.fc.bias.copy_(teacher.fc.weight @ adapter.bias + teacher.fc.bias)


def distill_narrow_lstm(teacher: nn.Module, student: nn.Module, batches: Iterable[Batch] | Callable[[int], Batch],
                        steps: int = 1000, *, lr: float = 1e-3, clip: float = 5.0, log_every: int = 0,
                        log: Callable[[str], None] = print) -> dict:
    """LSTM-L2 for a student whose DBLSTM is narrower than the teacher's (issue 22, item 2).

    The student takes the teacher's CNN and projection, which stay fixed; its own DBLSTM learns
    ``1/M Σ ||h_T − A h_S − a||²`` on the last LSTM layer's outputs (real frames), ``A`` (2H_T × 2H_S)
    a linear adapter learnt with it, since the widths differ. Afterwards the student's IP layer is
    the teacher's composed with the adapter (``W_T A``, ``W_T a + b_T``), so the student starts
    CTC fine-tuning from the teacher's output layer. Returns the loss history."""
    stage = DistillStage(teacher, student, None, "lstm-l2-narrow")  # CNN and projection copied, fixed
    params = stage.params
    opt = torch.optim.Adam(params, lr=lr)
    history, it, t0 = [], _cycle(batches), time.perf_counter()
    try:
        for step in range(1, steps + 1):
            batch = next(it)
            stage.prepare(student)  # the fixed CNN's batch norm in eval mode
            _update(opt, params, stage.loss(student, batch), clip, history)
            _progress(history, step, steps, log_every, log, "distill lstm-l2 (narrow)")
    finally:
        for p in student.parameters():
            p.requires_grad_(True)
        student.eval()
    _compose_head(teacher, student, stage.adapter)
    return {"criterion": "lstm-l2", "steps": steps, "losses": history, "seconds": time.perf_counter() - t0}


def finetune_ctc(model: nn.Module, batches: Iterable[Batch] | Callable[[int], Batch], steps: int, *,
                 lr: float = 3e-4, clip: float = 5.0, params: list[nn.Parameter] | None = None,
                 after_step: Callable[[], None] | None = None, log_every: int = 0,
                 log: Callable[[str], None] = print) -> dict:
    """Fine-tune a whole image model with train/loop.py's CTC loss (the seed's last stage).

    `after_step` runs after each optimizer step (e.g. a Pruner's ``step`` or re-applying shared
    weights); `params` restricts what the optimizer updates."""
    opt = torch.optim.Adam(params if params is not None else [p for p in model.parameters() if p.requires_grad], lr=lr)
    history, it, t0 = [], _cycle(batches), time.perf_counter()
    train_keep_norm(model)  # fine-tuning keeps the trained BatchNorm statistics
    try:
        for step in range(1, steps + 1):
            batch = next(it)
            logits, lengths = run_model(model, batch)
            loss = ctc_loss(logits, lengths, batch)
            _update(opt, model.parameters(), loss, clip, history, after_step)  # clips all the model's gradients
            if log_every and step % log_every == 0:
                log(f"fine-tune step {step}/{steps} ctc {sum(history[-log_every:]) / log_every:.4g}")
    finally:
        model.eval()
    return {"steps": steps, "losses": history, "seconds": time.perf_counter() - t0}


def student_like(teacher_cfg: dict, arch: str, num_classes: int, **overrides) -> nn.Module:
    """A fresh student of `arch` with the teacher's head options (height, feat_dim, LSTM sizes);
    `overrides` change some (e.g. ``width=0.5`` for a half-width darknet CNN)."""
    from inkpack.models import build_model

    return build_model(arch, num_classes, **{**copy.deepcopy(teacher_cfg.get("options", {})), **overrides})
