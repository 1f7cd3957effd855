"""Page images and target maps for the segmenter (with seeded training augmentation)."""

from __future__ import annotations

import math

import cv2
import numpy as np

from inkpack.data.images import load_gray
from inkpack.segment.pages import GTPage

STRIDE = 16  # the network's total stride: inputs are padded to a multiple of it


def normalize(gray: np.ndarray) -> np.ndarray:
    """uint8 gray -> float32, paper ~0 and ink ~1 (median = paper, 1st percentile = ink)."""
    g = gray.astype(np.float32)
    med = float(np.median(g))
    dark = float(np.percentile(g, 1))
    return np.clip((med - g) / max(med - dark, 24.0), -1.0, 1.5)


def page_scale(w: int, h: int, long_side: int) -> float:
    return long_side / max(w, h)


def padded(n: float) -> int:
    return max(STRIDE, int(math.ceil(n / STRIDE)) * STRIDE)


def prepare(gray: np.ndarray, long_side: int) -> tuple[np.ndarray, float]:
    """The network input for a page (no augmentation) and the scan->input scale."""
    h, w = gray.shape
    s = page_scale(w, h, long_side)
    nw, nh = max(1, round(w * s)), max(1, round(h * s))
    small = cv2.resize(gray, (nw, nh), interpolation=cv2.INTER_AREA)
    x = np.zeros((padded(nh), padded(nw)), np.float32)
    x[:nh, :nw] = normalize(small)
    return x, s


def _tf(pts: np.ndarray, m: np.ndarray) -> np.ndarray:
    return pts @ m[:, :2].T + m[:, 2]


def rasterize(page: GTPage, m: np.ndarray, out_shape: tuple[int, int], baseline_px: int = 3) -> np.ndarray:
    """Targets [3, H, W] uint8 (baseline, line, region) for the scan->output affine ``m``."""
    h, w = out_shape
    sh = 4  # sub-pixel bits for cv2 drawing
    k = float(1 << sh)
    t = np.zeros((3, h, w), np.uint8)
    regions = [np.round(_tf(p, m) * k).astype(np.int32) for p in page.regions.values()]
    if regions:
        cv2.fillPoly(t[2], regions, 1, lineType=cv2.LINE_8, shift=sh)
    polys = [np.round(_tf(ln.polygon, m) * k).astype(np.int32) for ln in page.lines]
    if polys:
        cv2.fillPoly(t[1], polys, 1, lineType=cv2.LINE_8, shift=sh)
        cv2.polylines(t[1], polys, True, 0, 1, lineType=cv2.LINE_8, shift=sh)
    bases = [np.round(_tf(ln.baseline, m) * k).astype(np.int32) for ln in page.lines if ln.baseline is not None]
    if bases:
        cv2.polylines(t[0], bases, False, 1, baseline_px, lineType=cv2.LINE_8, shift=sh)
    return t


def sample(gray: np.ndarray, page: GTPage, long_side: int, rng: np.random.Generator | None = None
           ) -> tuple[np.ndarray, np.ndarray]:
    """(input [H, W] float32, targets [3, H/2, W/2] uint8); augmented when ``rng`` is given."""
    h, w = gray.shape
    sx, sy = w / page.width, h / page.height  # XML -> image pixels (1 when they agree)
    s = page_scale(w, h, long_side)
    ang, zoom, shear = 0.0, 1.0, 0.0
    if rng is not None:
        ang = math.radians(rng.uniform(-2.5, 2.5))
        zoom = rng.uniform(0.8, 1.15)
        shear = rng.uniform(-0.05, 0.05)
    a = s * zoom
    c, sn = math.cos(ang), math.sin(ang)
    lin = a * np.array([[c, -sn + shear], [sn, c]])
    corners = np.array([[0, 0], [w, 0], [0, h], [w, h]], np.float64) @ lin.T
    off = -corners.min(0)
    size = corners.max(0) - corners.min(0)
    m_img = np.concatenate([lin, off[:, None]], 1)                       # image -> input
    ow, oh = padded(size[0]), padded(size[1])
    med = int(np.median(gray))
    x = cv2.warpAffine(gray, m_img, (ow, oh), flags=cv2.INTER_AREA if a < 1 else cv2.INTER_LINEAR,
                       borderMode=cv2.BORDER_CONSTANT, borderValue=med)
    if rng is not None:
        g = x.astype(np.float32)
        g = (g - med) * rng.uniform(0.6, 1.3) + med + rng.uniform(-30, 30)
        if rng.random() < 0.3:
            g = cv2.GaussianBlur(g, (0, 0), rng.uniform(0.5, 1.2))
        g += rng.normal(0, rng.uniform(0, 6), g.shape).astype(np.float32)
        x = np.clip(g, 0, 255).astype(np.uint8)
    xin = normalize(x)
    m_xml = m_img @ np.array([[sx, 0, 0], [0, sy, 0], [0, 0, 1]])
    m_out = m_xml / 2.0
    return xin, rasterize(page, m_out, (oh // 2, ow // 2))


def load_page_gray(path: str) -> np.ndarray:
    return load_gray(path)
