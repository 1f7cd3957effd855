"""Handwriting-like Chinese characters synthesised from font stroke medians.

CASIA OLHWDB is not available here, so the character recognizer of seed 001 is trained
on synthetic ink: the hanzi-writer medians (``../shared/data/hanzi``; font-derived, y up,
converted with ``y_img = 900 - y``) are distorted the way writers differ:

1. a global affine (rotation, shear, scale, aspect) and a per-stroke affine (each
   stroke slightly rotated, scaled and shifted: imprecise placement);
2. a smooth random displacement field (a few low-frequency sinusoids) that bends
   the straight font segments;
3. with some probability, cursive joining of consecutive strokes by a curved ligature;
4. resampling at a 10 ms clock along a speed profile (bell-shaped, slow at the ends,
   with a random time warp and per-stroke speed), with pen-up pauses between strokes;
5. random point dropping and sensor noise.

Everything is drawn from the ``numpy.random.Generator`` passed in, so a sample is a pure
function of its seed.

Writers (``SynthConfig.writer_style``, issue 25): each sample is given one of ``writers``
simulated writers, whose :class:`WriterStyle` (slant, rotation, proportions, speed, cursive
joining, warp, stroke-order habits) is fixed across the characters they write and replaces the
per-sample draws of those quantities. Each style dimension has a range (``STYLE_RANGES``);
``style_split`` says which part writers draw from: ``train`` the inner part of every range,
``heldout`` only the outer bands (``HELD_OUT`` of each range, half at each end), which no
``train`` writer ever has: a writer-style split. Held-out writers keep the reference stroke
order (order habits are measured by the perturbed-order validation, ``inkpack.data.ink_perturb``);
``all`` draws from the whole ranges. A character's class index is ``label_offset + its position`` in
``gb2312_level1.txt``; the default offset 1 makes it the label of
``Alphabet(list(chars))`` (0 = the unused blank), the convention the deploy code uses
for ``char`` models (build them with ``alphabet.num_classes`` = 3,756 outputs); use
``label_offset=0`` for a plain 3,755-way classifier.
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from inkpack.data.ink import Ink
from inkpack.data.ink_perturb import PerturbConfig, perturb_order
from inkpack.data.ink_preprocess import PreprocessConfig, drop_points, preprocess
from inkpack.errors import InkpackError

Y_FLIP = 900.0
VAL_SEED = 20240611
_TRAIN, _VAL = 1, 2
# the range of each writer-style dimension over all writers (speed: log-uniform, units / ms)
STYLE_RANGES = {"slant": (-0.4, 0.4), "rotate_deg": (-12.0, 12.0), "aspect": (-0.3, 0.3),
                "speed": (1.0, 6.0), "join_prob": (0.0, 0.5), "warp_amp": (6.0, 30.0),
                "swap": (0.0, 0.1), "reverse": (0.0, 0.06)}
HELD_OUT = 0.3  # share of each shape/dynamics range held out of training: its two outer bands
ORDER_DIMS = ("swap", "reverse")
STYLE_SPLITS = ("train", "heldout", "all")


def load_medians(path: str | Path) -> dict[str, list[np.ndarray]]:
    """``{char: [stroke [k, 2] float64 in image coordinates (y down)]}``."""
    try:
        with gzip.open(path, "rt", encoding="utf-8") as f:
            raw = json.load(f)
    except (OSError, EOFError, ValueError) as e:
        raise InkpackError(f"{path}: cannot read stroke medians ({e})") from None
    out = {}
    for ch, strokes in raw.items():
        arrs = []
        for k, s in enumerate(strokes):
            a = np.asarray(s, dtype=np.float64)
            if a.ndim != 2 or a.shape[1] != 2 or len(a) == 0:
                raise InkpackError(f"{path}: character {ch!r} stroke {k} is not a list of [x, y]")
            a[:, 1] = Y_FLIP - a[:, 1]
            arrs.append(a)
        out[ch] = arrs
    return out


def load_charset(path: str | Path) -> str:
    try:
        return Path(path).read_text(encoding="utf-8").strip()
    except OSError as e:
        raise InkpackError(f"{path}: cannot read character list ({e.strerror or e})") from None


@dataclass
class SynthConfig:
    """Distortion strengths, in units of the 1024-unit em square and milliseconds."""

    rotate_deg: float = 6.0
    shear: float = 0.15
    scale: float = 0.12
    aspect: float = 0.12
    stroke_rotate_deg: float = 5.0
    stroke_scale: float = 0.1
    stroke_shift: float = 18.0
    warp_amp: float = 14.0
    warp_waves: int = 3
    speed: tuple[float, float] = (1.5, 4.0)
    stroke_speed: float = 0.25
    dt_ms: float = 10.0
    pen_up_ms: tuple[float, float] = (60.0, 250.0)
    join_prob: float = 0.15
    join_max_dist: float = 500.0
    drop_max: float = 0.1
    noise: float = 1.5
    densify: float = 8.0
    writer_style: bool = False  # per-writer styles (see the module doc)
    writers: int = 200
    style_split: str = "train"  # train | heldout | all


@dataclass
class WriterStyle:
    """One simulated writer's habits (see ``STYLE_RANGES``)."""

    slant: float = 0.0
    rotate_deg: float = 0.0
    aspect: float = 0.0
    speed: float = 2.5
    join_prob: float = 0.15
    warp_amp: float = 14.0
    swap: float = 0.0
    reverse: float = 0.0


def draw_style(rng: np.random.Generator, split: str = "train") -> WriterStyle:
    """A writer's style: ``train`` writers draw the inner part of every range, ``heldout``
    writers the outer bands only (and the reference stroke order), ``all`` the whole ranges."""
    if split not in STYLE_SPLITS:
        raise InkpackError(f"style_split must be one of {', '.join(STYLE_SPLITS)}, not {split!r}")
    h = HELD_OUT / 2
    vals = {}
    for name, (lo, hi) in STYLE_RANGES.items():
        u = rng.random()
        if name in ORDER_DIMS:
            u = 0.0 if split == "heldout" else u
        elif split == "train":
            u = h + u * (1 - 2 * h)
        elif split == "heldout":  # [0, h) or (1 - h, 1]
            u = u * h if u < 0.5 else 1 - (1 - u) * h
        if name == "speed":
            vals[name] = float(np.exp(np.log(lo) + u * (np.log(hi) - np.log(lo))))
        else:
            vals[name] = float(lo + u * (hi - lo))
    return WriterStyle(**vals)


def _affines(rng: np.random.Generator, n: int, rot_deg: float, shear: float, scale: float,
             aspect: float) -> np.ndarray:
    """``[n, 2, 2]`` random rotation @ shear @ scale/aspect matrices."""
    th = np.deg2rad(rng.uniform(-rot_deg, rot_deg, n))
    sh = rng.uniform(-shear, shear, n)
    sc = np.exp(rng.uniform(-scale, scale, n))
    a = np.exp(rng.uniform(-aspect, aspect, n))
    return _matrices(th, sh, sc, a)


def _matrices(th: np.ndarray, sh: np.ndarray, sc: np.ndarray, a: np.ndarray) -> np.ndarray:
    c, s = np.cos(th), np.sin(th)
    sx, sy = sc * a, sc / a
    # [[c, -s], [s, c]] @ [[1, sh], [0, 1]] @ diag(sx, sy)
    return np.stack([np.stack([c * sx, (c * sh - s) * sy], -1),
                     np.stack([s * sx, (s * sh + c) * sy], -1)], -2)


def _arclen(p: np.ndarray, lens: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Arc length within each stroke ``[N]``, stroke lengths ``[S]``, stroke starts ``[S]``."""
    starts = np.cumsum(lens) - lens
    d = np.r_[0.0, np.hypot(*np.diff(p, axis=0).T)]
    d[starts] = 0.0
    cs = np.cumsum(d)
    within = cs - np.repeat(cs[starts], lens)
    return within, within[starts + lens - 1], starts


def _sample(p: np.ndarray, lens: np.ndarray, at: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Points at arc lengths ``at`` (``counts[i]`` of them in stroke ``i``), all strokes at once."""
    within, length, _ = _arclen(p, lens)
    offs = np.cumsum(np.r_[0.0, length[:-1] + 1.0])  # a unit gap keeps strokes apart
    g = within + np.repeat(offs, lens)
    ga = at + np.repeat(offs, counts)
    return np.column_stack([np.interp(ga, g, p[:, 0]), np.interp(ga, g, p[:, 1])])


def _ramps(counts: np.ndarray) -> np.ndarray:
    """Per-stroke ``linspace(0, 1, counts[i])`` concatenated."""
    starts = np.cumsum(counts) - counts
    pos = np.arange(int(counts.sum())) - np.repeat(starts, counts)
    return pos / np.repeat(np.maximum(counts - 1, 1), counts)


def _ligature(a: np.ndarray, b: np.ndarray, rng: np.random.Generator, step: float) -> np.ndarray:
    """A curved connection from ``a`` to ``b`` (quadratic Bezier, excluding its ends)."""
    d = b - a
    dist = float(np.hypot(*d))
    ctrl = (a + b) / 2 + np.array([-d[1], d[0]]) * rng.uniform(-0.3, 0.3)
    u = np.linspace(0.0, 1.0, max(2, int(dist / step)) + 1)[1:-1, None]
    return (1 - u) ** 2 * a + 2 * u * (1 - u) * ctrl + u ** 2 * b


def synth(char_strokes: list[np.ndarray], rng: np.random.Generator,
          cfg: SynthConfig | None = None, label: str | None = None,
          style: WriterStyle | None = None) -> Ink:
    """One handwriting-like sample of a character given its medians (image coordinates),
    written by ``style``'s writer when given (else with per-sample draws of ``cfg``)."""
    cfg = cfg or SynthConfig()
    if not char_strokes:
        raise InkpackError(f"synth: character {label!r} has no strokes")
    if style is not None:
        if style.swap or style.reverse:  # the writer's stroke-order habits, on the medians
            habit = PerturbConfig(swap=style.swap, reverse=style.reverse, join=0.0)
            char_strokes = [s[:, :2] for s in perturb_order(Ink.from_xy(char_strokes), rng, habit).strokes]
        cfg = replace(cfg, warp_amp=style.warp_amp, join_prob=style.join_prob)
    lens = np.array([len(s) for s in char_strokes])
    pts = np.concatenate(char_strokes)
    ns = len(lens)
    sid = np.repeat(np.arange(ns), lens)
    centre = (pts.min(0) + pts.max(0)) / 2
    # per-stroke then global affine
    m = _affines(rng, ns, cfg.stroke_rotate_deg, 0.0, cfg.stroke_scale, 0.0)
    c = np.add.reduceat(pts, np.cumsum(lens) - lens) / lens[:, None]
    shift = rng.normal(0.0, cfg.stroke_shift, (ns, 2))
    q = np.einsum("nij,nj->ni", m[sid], pts - c[sid]) + (c + shift)[sid]
    if style is None:
        g = _affines(rng, 1, cfg.rotate_deg, cfg.shear, cfg.scale, cfg.aspect)[0]
    else:  # the writer's slant, rotation and proportions, a little jitter per sample
        j = rng.normal(0.0, 1.0, 3)
        g = _matrices(np.deg2rad([style.rotate_deg + 1.5 * j[0]]), np.array([style.slant + 0.03 * j[1]]),
                      np.exp(rng.uniform(-cfg.scale, cfg.scale, 1)), np.exp([style.aspect + 0.03 * j[2]]))[0]
    q = (q - centre) @ g.T + centre
    # densify so that the warp can bend straight segments
    _, length, _ = _arclen(q, lens)
    counts = np.maximum(np.ceil(length / cfg.densify).astype(np.int64) + 1, 1)
    counts[length <= 0] = 1
    q = _sample(q, lens, _ramps(counts) * np.repeat(length, counts), counts)
    lens = counts
    # smooth warp: a few random plane waves, one field for the whole character
    k = cfg.warp_waves
    freq = rng.normal(0.0, 2 * np.pi * 1.5 / 1024, (k, 2))
    phase = rng.uniform(0, 2 * np.pi, k)
    amp = rng.normal(0.0, cfg.warp_amp / np.sqrt(k), (k, 2))
    q = q + np.sin(q @ freq.T + phase) @ amp
    # cursive joining of consecutive strokes
    paths = np.split(q, np.cumsum(lens)[:-1])
    joined = [paths[0]]
    for p, u in zip(paths[1:], rng.random(ns - 1)):
        a, b = joined[-1][-1], p[0]
        if u < cfg.join_prob and np.hypot(*(b - a)) < cfg.join_max_dist:
            joined[-1] = np.concatenate([joined[-1], _ligature(a, b, rng, cfg.densify), p])
        else:
            joined.append(p)
    lens = np.array([len(p) for p in joined])
    q = np.concatenate(joined)
    ns = len(lens)
    # timing: writer speed x per-stroke speed, bell-shaped profile with a random time warp
    _, length, _ = _arclen(q, lens)
    base = np.log(style.speed) + rng.normal(0.0, 0.1) if style is not None else \
        rng.uniform(np.log(cfg.speed[0]), np.log(cfg.speed[1]))
    v = np.exp(base + rng.normal(0.0, cfg.stroke_speed, ns))
    counts = np.where(length > 1e-9, np.maximum(2, np.rint(length / v / cfg.dt_ms)) + 1, 1)
    counts = counts.astype(np.int64)
    u = _ramps(counts)
    amp_w, kk = rng.uniform(-0.6, 0.6, ns), rng.integers(1, 3, ns)
    w = rng.uniform(0.3, 0.9, ns)
    aw, kw, ww = (np.repeat(x, counts) for x in (amp_w, kk, w))
    u = u + aw * np.sin(2 * np.pi * kw * u) / (2 * np.pi * kw)
    frac = ww * (10 * u**3 - 15 * u**4 + 6 * u**5) + (1 - ww) * u
    xy = _sample(q, lens, frac * np.repeat(length, counts), counts)
    pause = rng.uniform(*cfg.pen_up_ms, ns)
    dur = (counts - 1) * cfg.dt_ms
    t0 = np.cumsum(np.r_[0.0, (dur + pause)[:-1]])
    t = np.repeat(t0, counts) + (np.arange(len(xy)) - np.repeat(np.cumsum(counts) - counts,
                                                                 counts)) * cfg.dt_ms
    ink = Ink(np.split(np.column_stack([xy, t]), np.cumsum(counts)[:-1]), label=label)
    if cfg.drop_max > 0:
        ink = drop_points(ink, rng.uniform(0.0, cfg.drop_max), rng)
    if cfg.noise > 0:
        for st in ink.strokes:
            st[:, :2] += rng.normal(0.0, cfg.noise, (len(st), 2))
    return ink


class HanziSynthDataset:
    """``(features float32 [T, 6], class_index)`` pairs of synthetic characters.

    ``split="train"``: sample ``i`` of epoch ``e`` comes from the seed ``(seed, 1, e, i)``
    and the training augmentation of ``preprocess`` (30% point drop, affine, jitter) is
    applied; call ``set_epoch`` to get new samples. ``split="val"``: seed ``(seed, 2, i)``
    whatever the epoch and no training augmentation, so the validation set is fixed;
    the two seed streams never overlap. Item ``i`` shows ``chars[i % len(chars)]`` and has
    class ``label_offset + i % len(chars)``.

    With ``synth_cfg.writer_style``, item ``i`` is written by writer
    ``(seed, 3, i) -> [0, writers)`` (the same for every epoch) whose style comes from the seed
    ``(seed, 4, writer)`` and ``synth_cfg.style_split``. ``perturb`` (a
    :class:`~inkpack.data.ink_perturb.PerturbConfig`) changes the stroke order / direction of
    every synthesised sample with its own seed ``(seed, 6, epoch, i)``, so that a perturbed
    set shows the very samples of the unperturbed one with the same seed.
    """

    def __init__(self, medians: dict[str, list[np.ndarray]] | str | Path, chars: str,
                 per_class: int = 1, seed: int = 0, split: str = "train",
                 synth_cfg: SynthConfig | None = None,
                 prep_cfg: PreprocessConfig | None = None, label_offset: int = 1,
                 perturb: PerturbConfig | None = None) -> None:
        if split not in ("train", "val"):
            raise ValueError(f"split must be train or val, got {split!r}")
        self.medians = load_medians(medians) if isinstance(medians, (str, Path)) else medians
        missing = [c for c in chars if c not in self.medians]
        if missing:
            raise InkpackError(f"hanzi synth: no medians for {''.join(missing[:20])!r}")
        self.chars = chars
        self.per_class = per_class
        self.label_offset = label_offset
        self.seed = seed
        self.split = split
        self.epoch = 0
        self.synth_cfg = synth_cfg or SynthConfig()
        self.prep_cfg = prep_cfg or PreprocessConfig()
        self.perturb = perturb if perturb is not None and perturb.active() else None
        self._styles: dict[int, WriterStyle] = {}
        if self.synth_cfg.writer_style and self.synth_cfg.writers < 1:
            raise InkpackError(f"hanzi synth: writers must be at least 1, got {self.synth_cfg.writers}")

    @classmethod
    def validation(cls, medians: dict[str, list[np.ndarray]] | str | Path, chars: str,
                   per_class: int = 1, **kw) -> "HanziSynthDataset":
        """The fixed validation set (seed ``VAL_SEED``)."""
        return cls(medians, chars, per_class=per_class, seed=VAL_SEED, split="val", **kw)

    def __len__(self) -> int:
        return len(self.chars) * self.per_class

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _rng(self, i: int) -> np.random.Generator:
        key = [self.seed, _TRAIN, self.epoch, i] if self.split == "train" else [self.seed, _VAL, i]
        return np.random.default_rng(key)

    def ink(self, i: int) -> tuple[Ink, np.random.Generator]:
        if not 0 <= i < len(self):
            raise IndexError(i)
        ch = self.chars[i % len(self.chars)]
        rng = self._rng(i)
        ink = synth(self.medians[ch], rng, self.synth_cfg, label=ch, style=self.style(i))
        if self.perturb is not None:
            ink = perturb_order(ink, np.random.default_rng([self.seed, 6, self.epoch, i]), self.perturb)
        return ink, rng

    def style(self, i: int) -> WriterStyle | None:
        """The style of the writer of item ``i`` (None without ``writer_style``)."""
        cfg = self.synth_cfg
        if not cfg.writer_style:
            return None
        w = int(np.random.default_rng([self.seed, 3, i]).integers(cfg.writers))
        if w not in self._styles:
            self._styles[w] = draw_style(np.random.default_rng([self.seed, 4, w]), cfg.style_split)
        return self._styles[w]

    def char(self, i: int) -> str:
        return self.chars[i % len(self.chars)]

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        ink, rng = self.ink(i)
        feats = preprocess(ink, self.prep_cfg, rng if self.split == "train" else None)
        return feats, self.label_offset + i % len(self.chars)


def collate_chars(batch: list[tuple[np.ndarray, int]]):
    """``(features [B, T, F] zero-padded, lengths [B], targets [B])`` as torch tensors."""
    import torch

    lengths = torch.tensor([len(f) for f, _ in batch], dtype=torch.long)
    feats = torch.zeros(len(batch), int(lengths.max()), batch[0][0].shape[1])
    for b, (f, _) in enumerate(batch):
        feats[b, : len(f)] = torch.from_numpy(f)
    return feats, lengths, torch.tensor([c for _, c in batch], dtype=torch.long)
