"""Training augmentation of line images (ink = 1 on 0, at the model's height).

Small affine warps, elastic noise, blur, erosion/dilation and contrast changes, plus an
optional *zoom*: a horizontal band of 40–80% of the line's height, placed around the ink's
centre give or take a quarter of the height, scaled back up to the full height (width scaled
alike), so that ascenders, descenders or even the top or bottom of the letters are cut. The
Hooker collection holds such crops (about 8% of its val lines have more than 40 px of a 96-px
line per character, read at more than twice the CER of the others; docs/offline-recognition.md).

Every random choice comes from the ``rng`` the caller seeds per (epoch, example), so a batch is
a pure function of its indices (exact resume, workers).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import cv2
import numpy as np

from inkpack.errors import ConfigError


@dataclass
class AugmentConfig:
    """Training augmentation; all probabilities per line. ``enabled=False`` is identity."""

    enabled: bool = True
    p_affine: float = 0.7
    max_rotate: float = 1.5  # degrees
    max_shear: float = 0.3  # x += shear * y (relative)
    scale: tuple[float, float] = (0.85, 1.15)  # horizontal stretch
    p_elastic: float = 0.3
    elastic_alpha: float = 1.5  # displacement in pixels
    elastic_sigma: float = 6.0
    p_blur: float = 0.2
    p_morph: float = 0.3
    p_contrast: float = 0.5
    p_zoom: float = 0.0  # off by default: the shipped models were trained without it
    zoom: tuple[float, float] = (0.4, 0.8)  # share of the height the band keeps
    # zoom whole batches (p_zoom of them, one band share each) instead of single lines: a zoomed
    # line no longer pads its batch-mates to its width (see LineBatcher)
    zoom_batch: bool = False

    @classmethod
    def from_dict(cls, d: dict | None, enabled: bool = True, where: str = "augment_options") -> "AugmentConfig":
        """Defaults overridden by ``d`` (a config's ``augment_options``); an unknown key, a
        probability outside [0, 1] or a bad range is a ``ConfigError`` naming ``where``."""
        d = dict(d or {})
        known = {f.name for f in fields(cls)} - {"enabled"}
        bad = sorted(map(str, set(d) - known))
        if bad:
            raise ConfigError(f"{where}: unknown keys {bad} (known: {', '.join(sorted(known))})")
        for k, v in d.items():
            if k == "zoom_batch":
                if not isinstance(v, bool):
                    raise ConfigError(f"{where}: zoom_batch must be true or false, got {v!r}")
            elif k in ("scale", "zoom"):
                if (not isinstance(v, (list, tuple)) or len(v) != 2
                        or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v)
                        or not 0 < v[0] <= v[1] or (k == "zoom" and v[1] > 1)):
                    raise ConfigError(f"{where}: {k} must be [low, high] with 0 < low <= high"
                                      + (" <= 1" if k == "zoom" else "") + f", got {v!r}")
                d[k] = (float(v[0]), float(v[1]))
            elif isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0 or (k.startswith("p_") and v > 1):
                raise ConfigError(f"{where}: {k} must be a number" + (" in [0, 1]" if k.startswith("p_") else " >= 0")
                                  + f", got {v!r}")
            else:
                d[k] = float(v)
        return cls(enabled=enabled, **d)


def zoom_band(img: np.ndarray, rng: np.random.Generator, keep: tuple[float, float]) -> np.ndarray:
    """A band of ``img``'s rows (a share in ``keep`` of its height) around the ink's vertical
    centre (shifted by up to a quarter of the height), scaled back to the full height with the
    width scaled by the same factor."""
    h, w = img.shape
    frac = rng.uniform(*keep)
    band = min(h, max(2, int(round(h * frac))))
    rows = img.sum(axis=1)
    centre = float((rows * np.arange(h)).sum() / rows.sum()) if rows.sum() > 0 else h / 2
    centre += rng.uniform(-0.25, 0.25) * h  # off-centre too, as many of the collection's crops are
    top = int(np.clip(round(centre - band / 2), 0, h - band))
    new_w = max(4, int(round(w * h / band)))
    return cv2.resize(img[top : top + band], (new_w, h), interpolation=cv2.INTER_LINEAR)


def batch_zoom(cfg: AugmentConfig, seed: int, epoch: int, first: int) -> float | None:
    """With ``zoom_batch``: the band share of the batch whose first example is ``first`` (the same
    for each of its lines), or None when the batch is not zoomed; a pure function of its args."""
    if not (cfg.enabled and cfg.zoom_batch and cfg.p_zoom):
        return None
    rng = np.random.default_rng((seed, epoch, 7919, first))
    return float(rng.uniform(*cfg.zoom)) if rng.random() < cfg.p_zoom else None


def augment(img: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig, zoom: float | None = None) -> np.ndarray:
    """Zoom, small warps, blur, erosion/dilation and contrast changes on an ink=1 image.
    ``zoom``: with ``cfg.zoom_batch``, the band share :func:`batch_zoom` chose for the batch."""
    if not cfg.enabled:
        return img
    out = img
    if cfg.zoom_batch:
        if zoom is not None:
            out = zoom_band(out, rng, (zoom, zoom))
    elif cfg.p_zoom and rng.random() < cfg.p_zoom:  # no draw when off: the old streams stay as they were
        out = zoom_band(out, rng, cfg.zoom)
    h, w = out.shape
    if rng.random() < cfg.p_affine:
        sx = rng.uniform(*cfg.scale)
        shear = rng.uniform(-cfg.max_shear, cfg.max_shear)
        ang = np.deg2rad(rng.uniform(-cfg.max_rotate, cfg.max_rotate))
        new_w = max(4, int(round(w * sx + abs(shear) * h)))
        c, s = np.cos(ang), np.sin(ang)
        m = np.array([[sx * c, -s + shear, 0.0], [s * sx, c, 0.0]], dtype=np.float32)
        # keep the content inside: shift so that the warped corners start at x >= 0
        corners = np.array([[0, 0, 1], [w, 0, 1], [0, h, 1], [w, h, 1]], dtype=np.float32) @ m.T
        m[0, 2] -= corners[:, 0].min()
        m[1, 2] -= corners[:, 1].min() - 0.0
        m[1, 2] += (h - (corners[:, 1].max() - corners[:, 1].min())) / 2.0
        out = cv2.warpAffine(out, m, (new_w, h), flags=cv2.INTER_LINEAR, borderValue=0.0)
    if rng.random() < cfg.p_elastic:
        hh, ww = out.shape
        small = (max(2, ww // 16), max(2, hh // 16))
        dx = cv2.resize(rng.standard_normal((small[1], small[0])).astype(np.float32), (ww, hh))
        dy = cv2.resize(rng.standard_normal((small[1], small[0])).astype(np.float32), (ww, hh))
        xs, ys = np.meshgrid(np.arange(ww, dtype=np.float32), np.arange(hh, dtype=np.float32))
        a = cfg.elastic_alpha
        out = cv2.remap(out, xs + a * dx, ys + a * dy, cv2.INTER_LINEAR, borderValue=0.0)
    if rng.random() < cfg.p_blur:
        out = cv2.GaussianBlur(out, (3, 3), rng.uniform(0.3, 1.0))
    if rng.random() < cfg.p_morph:
        k = np.ones((2, 2), np.uint8)
        out = cv2.dilate(out, k) if rng.random() < 0.5 else cv2.erode(out, k)
    if rng.random() < cfg.p_contrast:
        out = np.clip(out * rng.uniform(0.6, 1.2) + rng.uniform(-0.05, 0.05), 0.0, 1.0)
    return np.ascontiguousarray(out, dtype=np.float32)
