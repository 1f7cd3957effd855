"""Knowledge distillation while a line model trains: frame-level soft targets from teachers.

A config's ``teacher`` names one or more trained line models (model stems) that read the same
input height at the same frame rate as the student, with the same alphabet: every training
batch (augmented as the student sees it) also goes through them, their per-frame output
distributions at temperature ``teacher_temperature`` are averaged (several teachers: an
ensemble, whose average is usually a better teacher than any of its members), and
``teacher_weight`` times the KL divergence of the student's distributions from that average —
summed over a line's frames, averaged over lines like the CTC loss, times τ² (Hinton et al.
2015) — is added to the student's CTC loss. Frame-level targets need frames that correspond:
a teacher with another height, frame rate or alphabet is refused when the run starts, and a
batch whose frame counts disagree stops it with a clear error.

Teachers are frozen and run in eval mode, so their outputs are a pure function of the batch:
exact resume holds.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from inkpack.batching import Batch
from inkpack.data.alphabet import Alphabet
from inkpack.errors import ConfigError, InkpackError
from inkpack.train.ctc import frame_mask, run_model


class Teachers:
    """Frozen teacher models and their averaged per-frame log-probabilities."""

    def __init__(self, paths: Sequence[str], alphabet: Alphabet, height: int, batching: str,
                 temperature: float = 1.0, device: torch.device | str = "cpu") -> None:
        from inkpack.infer.preprocess import image_height
        from inkpack.models.io import load_model

        if batching == "pack":
            raise ConfigError("teacher: needs padded batches (batching pad-max or pad-min), not pack")
        self.models, self.temperature = [], float(temperature)
        for p in paths:
            model, cfg, t_alpha = load_model(p)
            if list(t_alpha.symbols) != list(alphabet.symbols):
                raise ConfigError(f"teacher {p}: its alphabet differs from the student's "
                                  f"({t_alpha.num_classes} against {alphabet.num_classes} classes): "
                                  "frame-level targets need the same classes")
            t_height = image_height(cfg)
            if t_height != height:
                raise ConfigError(f"teacher {p}: reads lines {t_height} px high, the student {height} px: "
                                  "frame-level targets need the same input height")
            model.eval().requires_grad_(False)
            self.models.append(model.to(device))
        if not self.models:
            raise ConfigError("teacher: names no model")

    @torch.no_grad()
    def log_probs(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """``[T, B, K]`` log of the teachers' averaged distributions at the temperature, and the
        frame counts ``[B]``."""
        probs, lengths = None, None
        for model in self.models:
            logits, n = run_model(model, batch)
            p = F.softmax(logits.float() / self.temperature, dim=-1)
            if lengths is None:
                probs, lengths = p, n
            elif not torch.equal(n.cpu(), lengths.cpu()):
                raise InkpackError("teacher: the teachers' frame counts differ (frame rate)")
            else:
                probs = probs + p
        return (probs / len(self.models)).clamp_min(1e-30).log(), lengths


def kd_loss(student_logits: torch.Tensor, lengths: torch.Tensor, teacher_lp: torch.Tensor,
            teacher_lengths: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """τ² · KL(teacher ‖ student) per frame, summed over each line's frames, mean over lines."""
    if student_logits.shape != teacher_lp.shape or not torch.equal(lengths.cpu(), teacher_lengths.cpu()):
        raise InkpackError(f"teacher: frame counts differ from the student's ({tuple(teacher_lp.shape)} "
                           f"against {tuple(student_logits.shape)}): the teacher needs the student's "
                           "frame rate")
    s_lp = F.log_softmax(student_logits.float() / temperature, dim=-1)
    kl = (teacher_lp.exp() * (teacher_lp - s_lp)).sum(-1)  # [T, B]
    kl = torch.where(frame_mask(lengths.to(kl.device), kl.shape[0]), kl, torch.zeros_like(kl))
    return kl.sum() / max(1, kl.shape[1]) * temperature ** 2
