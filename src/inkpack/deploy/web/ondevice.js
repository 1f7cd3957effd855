// inkpack on-device recognition in the page: onnxruntime-web (vendored, WebAssembly, one thread)
// runs the int8 ONNX models listed in web/models/manifest.json (written by `inkpack web --out DIR`
// or served by `inkpack serve --web-models DIR`); the pure pre/post-processing is recognize.js.
// window.InkpackDevice.init() resolves to null when this page has no on-device models.
"use strict";

(function () {
  const R = window.InkpackRecognize;
  const BASE = new URL(".", document.currentScript ? document.currentScript.src : document.baseURI).href;  // .../web/
  const VENDOR = BASE + "vendor/onnxruntime-web/";
  const state = { manifest: null, models: {}, bytes: 0, ready: null };

  function loadScript(src) {
    return new Promise((resolve, reject) => {
      if (window.ort) { resolve(); return; }
      const s = document.createElement("script");
      s.src = src;
      s.onload = () => resolve();
      s.onerror = () => reject(new Error(`cannot load ${src}`));
      document.head.appendChild(s);
    });
  }

  async function fetchOk(url, as) {
    const r = await fetch(url);
    if (!r.ok) throw new Error(`${url}: HTTP ${r.status}`);
    return as === "json" ? r.json() : r.arrayBuffer();
  }

  // a file in web/models/, the gzip copy when the manifest has one and the browser can inflate it
  const canInflate = typeof DecompressionStream !== "undefined";
  async function fetchModelFile(plain, gz, sha) {
    const q = sha ? `?v=${sha.slice(0, 16)}` : "";
    if (!(gz && canInflate)) { const b = await fetchOk(BASE + "models/" + plain + q); state.bytes += b.byteLength; return b; }
    const packed = await fetchOk(BASE + "models/" + gz + q);
    state.bytes += packed.byteLength;
    return new Response(new Blob([packed]).stream().pipeThrough(new DecompressionStream("gzip"))).arrayBuffer();
  }

  async function loadModel(kind, entry) {
    const q = entry.sha256 ? `?v=${entry.sha256.slice(0, 16)}` : "";
    const [buf, config] = await Promise.all([
      fetchModelFile(entry.file, entry.gz, entry.sha256), fetchOk(BASE + "models/" + entry.config + q, "json")]);
    const t0 = performance.now();
    const session = await window.ort.InferenceSession.create(new Uint8Array(buf),
      { executionProviders: ["wasm"], graphOptimizationLevel: "all" });
    const onnx = config.onnx || {};
    return {
      kind, name: entry.name || kind, session, config, bytes: buf.byteLength,
      inputKind: onnx.input_kind || config.input_kind, symbols: Array.from(config.alphabet.symbols),
      pcfg: config.preprocessing || {}, height: onnx.height || (config.preprocessing || {}).height || 48,
      widthFactor: onnx.width_factor || null, createMs: performance.now() - t0, runs: 0, lastMs: null,
    };
  }

  // the manifest, the runtime and both sessions; null when the page has no on-device models
  async function init() {
    if (state.ready) return state.ready;
    state.ready = (async () => {
      let manifest;
      try { manifest = await fetchOk(BASE + "models/manifest.json", "json"); } catch (e) { return null; }
      await loadScript(VENDOR + "ort.wasm.min.js");
      const ort = window.ort;
      ort.env.wasm.wasmPaths = VENDOR;
      ort.env.wasm.numThreads = 1;  // one thread: no SharedArrayBuffer / cross-origin isolation needed
      ort.env.wasm.proxy = false;
      const rt = manifest.runtime || {};
      if (rt.wasm_gz && canInflate) {  // 2.9 MB instead of 11.2 MB (else ort fetches the plain .wasm)
        ort.env.wasm.wasmBinary = await fetchModelFile(null, rt.wasm_gz, rt.wasm_gz_sha256);
      }
      state.manifest = manifest;
      for (const [kind, entry] of Object.entries(manifest.models || {})) {
        state.models[kind] = await loadModel(kind, entry);
      }
      registerWorker();
      return info();
    })();
    return state.ready;
  }

  function info() {
    const out = { bytes: state.bytes, runtime: state.manifest && state.manifest.runtime };
    for (const [k, m] of Object.entries(state.models)) {
      out[k] = { name: m.name, bytes: m.bytes, kind: m.inputKind, createMs: m.createMs, runs: m.runs, lastMs: m.lastMs };
    }
    return out;
  }

  function registerWorker() {  // the service worker keeps page, runtime and models for offline reloads
    if (!("serviceWorker" in navigator) || !window.isSecureContext) return;
    navigator.serviceWorker.register(new URL("../sw.js", BASE).href).catch(() => {});
  }

  let queue = Promise.resolve();  // one model call at a time (a session runs one request at a time)
  function timed(m, fn) {
    const p = queue.then(() => timedNow(m, fn));
    queue = p.catch(() => {});
    return p;
  }

  async function timedNow(m, fn) {
    const t0 = performance.now();
    const out = await fn();
    m.lastMs = performance.now() - t0;
    m.runs += 1;
    out.ms = m.lastMs;
    out.model = m.name;
    return out;
  }

  // strokes [[[x, y, t], ...], ...] -> {text, candidates} (character model) or {text, confidences}
  async function recognizeInk(strokes, topK) {
    const m = state.models.char || state.models.ink;
    if (!m) throw new Error("no on-device ink model");
    return timed(m, async () => {
      const f = R.inkFeatures(strokes, m.pcfg);
      if (f.length === 0) return { text: "", candidates: [] };
      const ort = window.ort;
      const feeds = { features: new ort.Tensor("float32", f.features, [1, f.length, 6]),
        lengths: new ort.Tensor("int64", BigInt64Array.from([BigInt(f.length)]), [1]) };
      const out = await m.session.run(feeds);
      if (m.inputKind === "char") {
        const cands = R.topK(out.log_probs.data, topK || 5, m.symbols);
        return { text: cands.length ? cands[0].text : "", candidates: cands.map((c) => ({ text: c.text, probability: c.probability })) };
      }
      const lp = out.log_probs, n = Number(out.lengths_out.data[0]);
      const al = R.ctcGreedy(lp.data, lp.dims[0], lp.dims[2], n);
      const text = R.decodeLabels(al.labels, m.symbols);
      const prob = al.confidences.reduce((a, c) => a * c, 1);
      return { text, confidences: al.confidences, candidates: [{ text, probability: prob }] };
    });
  }

  // a prepared line: gray uint8 [h, w] -> {text, confidences, positions}
  async function recognizeGray(gray, w, h) {
    const m = state.models.line;
    if (!m) throw new Error("no on-device line model");
    return timed(m, async () => {
      const p = R.prepareLine(gray, w, h, m.height);
      const ort = window.ort;
      const out = await m.session.run({ images: new ort.Tensor("float32", p.data, [1, 1, p.height, p.width]),
        widths: new ort.Tensor("int64", BigInt64Array.from([BigInt(p.width)]), [1]) });
      const lp = out.log_probs, n = Number(out.lengths.data[0]);
      const al = R.ctcGreedy(lp.data, lp.dims[0], lp.dims[2], n);
      const wf = m.widthFactor || p.width / Math.max(1, n);
      return { text: R.decodeLabels(al.labels, m.symbols), confidences: al.confidences,
        positions: R.charPositions(al.starts, al.ends, wf, p.width, w) };
    });
  }

  // an image file or blob -> gray pixels as the browser decodes them (no colour management)
  async function grayOf(blob) {
    const bmp = await createImageBitmap(blob, { colorSpaceConversion: "none", premultiplyAlpha: "none" });
    const c = document.createElement("canvas");
    c.width = bmp.width; c.height = bmp.height;
    const g = c.getContext("2d", { willReadFrequently: true });
    g.drawImage(bmp, 0, 0);
    const d = g.getImageData(0, 0, bmp.width, bmp.height);
    return { gray: R.rgbaToGray(d.data, bmp.width, bmp.height), width: bmp.width, height: bmp.height };
  }

  async function recognizeLine(blob) {
    const g = await grayOf(blob);
    return recognizeGray(g.gray, g.width, g.height);
  }

  window.InkpackDevice = { init, info, recognizeInk, recognizeLine, recognizeGray, grayOf,
    has: (kind) => !!state.models[kind] || (kind === "char" && !!state.models.ink) };
})();
