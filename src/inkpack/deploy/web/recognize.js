// inkpack on-device recognition: the pure functions (no DOM, no runtime), shared by the page
// (window.InkpackRecognize) and node (require). Each mirrors the Python code named beside it;
// tests/deploy/test_web_golden.py checks them against vectors the Python code writes.
"use strict";

(function (root, factory) {
  if (typeof module === "object" && module.exports) module.exports = factory();
  else root.InkpackRecognize = factory();
})(typeof self !== "undefined" ? self : this, function () {
  const EPS = 1e-9;
  const f32 = Math.fround;

  // Python's round() and numpy.round(): halves go to the even neighbour
  function roundHalfEven(x) {
    const r = Math.round(x);
    return (Math.abs(x % 1) === 0.5 && r % 2 !== 0) ? r - 1 : r;
  }

  // ------------------------------------------------------------------ ink (data/ink_preprocess.py)
  // strokes: [[[x, y, t?], ...], ...] -> flat {xy: Float64Array(2N), last: Uint8Array(N)}
  function flatten(strokes) {
    let n = 0;
    for (const s of strokes) n += s.length;
    const xy = new Float64Array(2 * n), last = new Uint8Array(n);
    let i = 0;
    for (const s of strokes) {
      for (let k = 0; k < s.length; k++, i++) {
        xy[2 * i] = +s[k][0];
        xy[2 * i + 1] = +s[k][1];
        last[i] = k === s.length - 1 ? 1 : 0;
      }
    }
    return { xy, last, n };
  }

  // _norm_flat: centre ("mean" | "bbox") and scale ("std" | "y_std" | "height" | "max_side") -> target
  function normalize(xy, n, center, scale, target) {
    if (n === 0) return xy;
    let lox = Infinity, loy = Infinity, hix = -Infinity, hiy = -Infinity, sx = 0, sy = 0;
    for (let i = 0; i < n; i++) {
      const x = xy[2 * i], y = xy[2 * i + 1];
      lox = Math.min(lox, x); hix = Math.max(hix, x); loy = Math.min(loy, y); hiy = Math.max(hiy, y);
      sx += x; sy += y;
    }
    const mx = sx / n, my = sy / n;
    let cx, cy;
    if (center === "mean") { cx = mx; cy = my; } else if (center === "bbox") { cx = (lox + hix) / 2; cy = (loy + hiy) / 2; } else throw new Error(`unknown center ${center}`);
    const maxSide = () => Math.max(hix - lox, hiy - loy);
    const stats = {
      std: () => { let a = 0; for (let i = 0; i < n; i++) a += (xy[2 * i] - mx) ** 2 + (xy[2 * i + 1] - my) ** 2; return Math.sqrt(a / n / 2); },
      y_std: () => { let a = 0; for (let i = 0; i < n; i++) a += (xy[2 * i + 1] - my) ** 2; return Math.sqrt(a / n); },
      height: () => hiy - loy,
      max_side: maxSide,
    };
    if (!stats[scale]) throw new Error(`unknown scale ${scale}`);
    let s = stats[scale]();
    if (s <= EPS) s = maxSide();
    const k = s > EPS ? target / s : 1.0;
    const out = new Float64Array(2 * n);
    for (let i = 0; i < n; i++) { out[2 * i] = (xy[2 * i] - cx) * k; out[2 * i + 1] = (xy[2 * i + 1] - cy) * k; }
    return out;
  }

  // redundant_mask: walk each stroke with j = the last kept point; keep i when it is the stroke's
  // last point, or |p_i - p_j| >= minDist and the turn p_j->p_i, p_i->p_(i+1) has cosine <= maxCos
  function redundantMask(xy, last, n, minDist, maxCos) {
    const keep = new Uint8Array(n);
    let start = true, j = 0;
    for (let i = 0; i < n; i++) {
      if (start) { keep[i] = 1; j = i; start = last[i] === 1; continue; }
      let ok = last[i] === 1;
      if (!ok) {
        const vx = xy[2 * i] - xy[2 * j], vy = xy[2 * i + 1] - xy[2 * j + 1];
        const stx = xy[2 * i + 2] - xy[2 * i], sty = xy[2 * i + 3] - xy[2 * i + 1];
        const vlen = Math.hypot(vx, vy), denom = vlen * Math.hypot(stx, sty);
        const cos = denom > EPS ? (vx * stx + vy * sty) / Math.max(denom, EPS) : 1.0;
        ok = vlen >= minDist && cos <= maxCos;
      }
      if (ok) { keep[i] = 1; j = i; }
      if (last[i]) start = true;
    }
    return keep;
  }

  // ink_features (infer/ink_preprocess.py): normalise, drop redundant points, (x, y, dx, dy, pen_down, pen_up)
  function inkFeatures(strokes, pcfg) {
    const p = Object.assign({ center: "mean", scale: "std", min_dist: 0.04, max_cos: 0.99 }, pcfg || {});
    const { xy: raw, last, n } = flatten(strokes.filter((s) => s.length));
    const xy = normalize(raw, n, p.center, p.scale, 1.0);
    const keep = redundantMask(xy, last, n, p.min_dist, p.max_cos);
    const idx = [];
    for (let i = 0; i < n; i++) if (keep[i]) idx.push(i);
    const m = idx.length, feats = new Float32Array(6 * m), pointX = new Float64Array(m);
    for (let r = 0; r < m; r++) {
      const i = idx[r];
      // a stroke's end flag moves to its last kept point (Flat.masked); the last point is always kept
      const lastKept = last[i] === 1;
      feats[6 * r] = xy[2 * i];
      feats[6 * r + 1] = xy[2 * i + 1];
      if (r + 1 < m) {
        const k = idx[r + 1];
        feats[6 * r + 2] = xy[2 * k] - xy[2 * i];
        feats[6 * r + 3] = xy[2 * k + 1] - xy[2 * i + 1];
      }
      feats[6 * r + 4] = lastKept ? 0 : 1;
      feats[6 * r + 5] = lastKept ? 1 : 0;
      pointX[r] = raw[2 * i];
    }
    return { features: feats, length: m, pointX };
  }

  // ------------------------------------------------------------------ images (data/images.py)
  // RGBA (canvas ImageData, not premultiplied) -> uint8 gray as PIL's convert("L") after
  // alpha_composite on white paper: L = (19595 R + 38470 G + 7471 B + 0x8000) >> 16
  function rgbaToGray(rgba, width, height) {
    const n = width * height, out = new Uint8Array(n);
    for (let i = 0; i < n; i++) {
      let r = rgba[4 * i], g = rgba[4 * i + 1], b = rgba[4 * i + 2];
      const a = rgba[4 * i + 3];
      if (a !== 255) {
        const w = 255 * (255 - a);
        r = Math.round((r * a + w) / 255); g = Math.round((g * a + w) / 255); b = Math.round((b * a + w) / 255);
      }
      out[i] = (19595 * r + 38470 * g + 7471 * b + 0x8000) >>> 16;
    }
    return out;
  }

  function percentileU8(cum, q) {  // _percentile_u8: numpy's linear percentile from a histogram
    const n = cum[cum.length - 1], r = (q / 100.0) * (n - 1);
    const lo = Math.floor(r), hi = Math.ceil(r);
    const at = (v) => { let k = 0; while (k < cum.length && cum[k] <= v) k++; return k; };  // searchsorted right
    const vlo = at(lo), vhi = at(hi);
    return vlo + (vhi - vlo) * (r - lo);
  }

  // to_ink for uint8 gray -> Float32Array (ink = 1, paper = 0, contrast-stretched)
  function toInk(gray) {
    let hist = new Float64Array(256);
    for (let i = 0; i < gray.length; i++) hist[gray[i]]++;
    const cumsum = (h) => { const c = new Float64Array(256); let a = 0; for (let k = 0; k < 256; k++) { a += h[k]; c[k] = a; } return c; };
    // light on dark: the statistics of 255 - gray, and the table maps gray k through 255 - k
    const inv = percentileU8(cumsum(hist), 50) < 128.0;
    if (inv) hist = hist.slice().reverse();
    const cum = cumsum(hist);
    const paper = percentileU8(cum, 60), ink = percentileU8(cum, 1);
    const span = Math.max(paper - ink, 16.0);
    // numpy: float32 values, (paper - vals) / span in float32 (Python floats are weak scalars)
    const byGray = new Float32Array(256);
    for (let k = 0; k < 256; k++) {
      const v = f32(f32(f32(paper) - (inv ? 255 - k : k)) / f32(span));
      byGray[k] = Math.min(1, Math.max(0, v));
    }
    const out = new Float32Array(gray.length);
    for (let i = 0; i < gray.length; i++) out[i] = byGray[gray[i]];
    return out;
  }

  function scaledWidth(w, h, height) { return Math.max(1, roundHalfEven((w * height) / h)); }

  // OpenCV computeResizeAreaTab: [dst index, src index, weight] triples
  function areaTab(ssize, dsize, scale) {
    const tab = [];
    for (let dx = 0; dx < dsize; dx++) {
      const fsx1 = dx * scale, fsx2 = fsx1 + scale, cell = Math.min(scale, ssize - fsx1);
      let sx1 = Math.ceil(fsx1), sx2 = Math.floor(fsx2);
      sx2 = Math.min(sx2, ssize - 1);
      sx1 = Math.min(sx1, sx2);
      if (sx1 - fsx1 > 1e-3) tab.push([dx, sx1 - 1, f32((sx1 - fsx1) / cell)]);
      for (let sx = sx1; sx < sx2; sx++) tab.push([dx, sx, f32(1.0 / cell)]);
      if (fsx2 - sx2 > 1e-3) tab.push([dx, sx2, f32(Math.min(Math.min(fsx2 - sx2, 1.0), cell) / cell)]);
    }
    return tab;
  }

  function resizeArea(src, w, h, nw, nh) {  // cv2.INTER_AREA when shrinking (float32, one channel)
    const xtab = areaTab(w, nw, 1.0 / (nw / w)), ytab = areaTab(h, nh, 1.0 / (nh / h));
    const out = new Float32Array(nw * nh), buf = new Float32Array(nw), sum = new Float32Array(nw);
    let prev = ytab.length ? ytab[0][0] : 0;
    for (const [dy, sy, beta] of ytab) {
      buf.fill(0);
      const row = sy * w;
      for (const [dx, sx, alpha] of xtab) buf[dx] = f32(buf[dx] + f32(src[row + sx] * alpha));
      if (dy !== prev) {
        out.set(sum, prev * nw);
        for (let x = 0; x < nw; x++) sum[x] = f32(beta * buf[x]);
        prev = dy;
      } else {
        for (let x = 0; x < nw; x++) sum[x] = f32(sum[x] + f32(beta * buf[x]));
      }
    }
    out.set(sum, prev * nw);
    return out;
  }

  function linearCoeffs(ssize, dsize) {  // cv2.INTER_LINEAR: source index and weight per output
    const scale = 1.0 / (dsize / ssize), ofs = new Int32Array(dsize), a = new Float32Array(dsize);
    for (let d = 0; d < dsize; d++) {
      let fx = f32((d + 0.5) * scale - 0.5);
      let sx = Math.floor(fx);
      fx = f32(fx - sx);
      if (sx < 0) { fx = 0; sx = 0; }
      if (sx >= ssize - 1) { fx = 0; sx = ssize - 1; }
      ofs[d] = sx; a[d] = fx;
    }
    return [ofs, a];
  }

  function resizeLinear(src, w, h, nw, nh) {
    const [xo, xa] = linearCoeffs(w, nw);
    const rows = new Map();
    const hrow = (sy) => {
      if (!rows.has(sy)) {
        const r = new Float32Array(nw), base = sy * w;
        for (let x = 0; x < nw; x++) {
          const s = xo[x], fx = xa[x];
          r[x] = s + 1 < w ? f32(f32(src[base + s] * f32(1 - fx)) + f32(src[base + s + 1] * fx)) : src[base + s];
        }
        rows.set(sy, r);
      }
      return rows.get(sy);
    };
    const out = new Float32Array(nw * nh), scale = 1.0 / (nh / h);
    for (let dy = 0; dy < nh; dy++) {
      let fy = f32((dy + 0.5) * scale - 0.5);
      const sy = Math.floor(fy);
      fy = f32(fy - sy);
      const r0 = hrow(Math.min(Math.max(sy, 0), h - 1)), r1 = hrow(Math.min(Math.max(sy + 1, 0), h - 1));
      const b0 = f32(1 - fy);
      for (let x = 0; x < nw; x++) out[dy * nw + x] = f32(f32(r0[x] * b0) + f32(r1[x] * fy));
      if (dy > 2) rows.delete(sy - 2);
    }
    return out;
  }

  // resize_height: INTER_AREA when shrinking, INTER_LINEAR when growing
  function resizeHeight(img, w, h, height) {
    if (h === height) return { data: img, width: w };
    const nw = scaledWidth(w, h, height);
    return { data: h > height ? resizeArea(img, w, h, nw, height) : resizeLinear(img, w, h, nw, height), width: nw };
  }

  // Recognizer.prepare (infer/preprocess.py prepare_image): to_ink, resize_height, 8-bit rounding (line_to_u8 / u8_to_tensor)
  function prepareLine(gray, w, h, height) {
    const r = resizeHeight(toInk(gray), w, h, height);
    const out = new Float32Array(r.data.length);
    for (let i = 0; i < out.length; i++) {
      const u = Math.min(255, Math.max(0, roundHalfEven(f32(r.data[i] * 255.0))));
      out[i] = f32(u / 255.0);
    }
    return { data: out, width: r.width, height };
  }

  // ------------------------------------------------------------------ decoding (decode/greedy.py)
  // greedy_with_alignment of one [T, K] output (row-major), log-softmax first
  function ctcGreedy(lp, T, K, length) {
    const n = Math.min(T, length === undefined ? T : length);
    const best = new Int32Array(n), bestLp = new Float64Array(n);
    for (let t = 0; t < n; t++) {
      let m = -Infinity, am = 0;
      for (let k = 0; k < K; k++) { const v = lp[t * K + k]; if (v > m) { m = v; am = k; } }
      let s = 0;
      for (let k = 0; k < K; k++) s += Math.exp(lp[t * K + k] - m);
      best[t] = am; bestLp[t] = -Math.log(s);
    }
    const out = { labels: [], confidences: [], starts: [], ends: [] };
    for (let t = 0; t < n;) {
      let e = t, mx = bestLp[t];
      while (e + 1 < n && best[e + 1] === best[t]) { e++; mx = Math.max(mx, bestLp[e]); }
      if (best[t] !== 0) { out.labels.push(best[t]); out.confidences.push(Math.exp(mx)); out.starts.push(t); out.ends.push(e); }
      t = e + 1;
    }
    return out;
  }

  // api.char_positions: frame spans -> [x0, x1) pixels of the source image
  function charPositions(starts, ends, widthFactor, resizedWidth, sourceWidth) {
    const scale = sourceWidth / Math.max(1, resizedWidth);
    return starts.map((s, i) => {
      const x0 = Math.min(s * widthFactor, resizedWidth) * scale;
      const x1 = Math.min((ends[i] + 1) * widthFactor, resizedWidth) * scale;
      return [Math.floor(x0), Math.trunc(Math.min(sourceWidth, Math.ceil(x1)))];
    });
  }

  // Alphabet.decode: label k -> symbols[k - 1]; 0 is the blank
  function decodeLabels(labels, symbols) {
    return labels.map((k) => (k >= 1 && k <= symbols.length ? symbols[k - 1] : "")).join("");
  }

  // char_recognition (infer/decode.py): softmax, the top k classes (ties: the lower class first)
  function topK(logits, k, symbols) {
    let m = -Infinity;
    for (let i = 0; i < logits.length; i++) m = Math.max(m, logits[i]);
    let s = 0;
    for (let i = 0; i < logits.length; i++) s += Math.exp(logits[i] - m);
    const idx = Array.from(logits.keys()).sort((a, b) => (logits[b] - logits[a]) || (a - b)).slice(0, k);
    return idx.map((i) => ({ label: i, text: i >= 1 && i <= symbols.length ? symbols[i - 1] : "",
      probability: Math.exp(logits[i] - m) / s })).filter((c) => c.text);
  }

  return { roundHalfEven, flatten, normalize, redundantMask, inkFeatures, rgbaToGray, toInk, scaledWidth,
    resizeArea, resizeLinear, resizeHeight, prepareLine, ctcGreedy, charPositions, decodeLabels, topK };
});
