// Runs the page's pure functions (src/inkpack/deploy/web/recognize.js) and the vendored
// onnxruntime-web on the golden vectors test_web_golden.py writes with the Python code, and
// writes what JavaScript computes: node web_golden_check.js WEB_DIR VECTORS.json OUT.json
"use strict";
const fs = require("fs");
const path = require("path");

const [webDir, vectorsPath, outPath] = process.argv.slice(2);
const R = require(path.join(webDir, "recognize.js"));
const V = JSON.parse(fs.readFileSync(vectorsPath, "utf8"));
const arr = (a) => Array.from(a);

async function main() {
  const out = { inks: [], images: [], gray: [], ctc: [], topk: [], models: [] };
  for (const c of V.inks) {
    const f = R.inkFeatures(c.strokes, c.pcfg);
    out.inks.push({ features: arr(f.features), length: f.length, point_x: arr(f.pointX) });
  }
  for (const c of V.images) {
    const g = Uint8Array.from(c.gray);
    const p = R.prepareLine(g, c.width, c.height, c.target);
    out.images.push({ to_ink: arr(R.toInk(g)), data: arr(p.data), width: p.width });
  }
  for (const c of V.gray) out.gray.push(arr(R.rgbaToGray(Uint8Array.from(c.rgba), c.width, c.height)));
  for (const c of V.ctc) {
    const al = R.ctcGreedy(Float32Array.from(c.log_probs), c.T, c.K, c.length);
    out.ctc.push({ ...al, text: R.decodeLabels(al.labels, Array.from(c.symbols)),
      positions: R.charPositions(al.starts, al.ends, c.width_factor, c.resized_width, c.source_width) });
  }
  for (const c of V.topk) out.topk.push(R.topK(Float32Array.from(c.logits), c.k, Array.from(c.symbols)));
  if (V.models.length) {
    const ort = require(path.join(webDir, "vendor", "onnxruntime-web", "ort.wasm.min.js"));
    ort.env.wasm.numThreads = 1;
    ort.env.wasm.wasmPaths = path.join(webDir, "vendor", "onnxruntime-web") + path.sep;
    for (const m of V.models) {
      const s = await ort.InferenceSession.create(fs.readFileSync(m.path));
      const feeds = {};
      for (const [name, t] of Object.entries(m.inputs)) {
        feeds[name] = t.dtype === "int64" ? new ort.Tensor("int64", BigInt64Array.from(t.data.map(BigInt)), t.shape)
          : new ort.Tensor("float32", Float32Array.from(t.data), t.shape);
      }
      const r = await s.run(feeds);
      const o = {};
      for (const [name, t] of Object.entries(r)) o[name] = { shape: t.dims, data: Array.from(t.data, Number) };
      out.models.push(o);
    }
  }
  fs.writeFileSync(outPath, JSON.stringify(out));
}

main().catch((e) => { console.error(e && e.stack ? e.stack : String(e)); process.exit(1); });
