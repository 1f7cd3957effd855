// inkpack service worker: keeps the page, the onnxruntime-web files and the on-device models, so
// that a reload works with the network cut. Runtime and models (immutable, versioned by their
// sha256 in the URL): cache first. The page and its scripts: network first, the cache when offline.
// The recognition API (/v1/...) is never cached.
"use strict";

const CACHE = "inkpack-web-v1";
const CORE = ["./", "web/style.css", "web/app.js", "web/pagescan.js", "web/recognize.js", "web/ondevice.js",
  "web/vendor/onnxruntime-web/ort.wasm.min.js", "web/vendor/onnxruntime-web/ort-wasm-simd-threaded.mjs",
  "web/models/manifest.json"];

async function precache() {
  const c = await caches.open(CACHE);
  await c.addAll(CORE);
  const m = await (await c.match("web/models/manifest.json")).json();
  // what ondevice.js fetches: the gzip copies where the browser inflates them, else the plain files
  const gz = typeof DecompressionStream !== "undefined";
  const rt = m.runtime || {};
  const urls = [rt.wasm_gz && gz ? `web/models/${rt.wasm_gz}?v=${rt.wasm_gz_sha256.slice(0, 16)}`
    : "web/vendor/onnxruntime-web/ort-wasm-simd-threaded.wasm"];
  for (const e of Object.values(m.models || {})) {
    const q = e.sha256 ? `?v=${e.sha256.slice(0, 16)}` : "";
    urls.push(`web/models/${e.gz && gz ? e.gz : e.file}${q}`, `web/models/${e.config}${q}`);
  }
  await c.addAll(urls);
}

self.addEventListener("install", (ev) => { ev.waitUntil(precache().then(() => self.skipWaiting())); });
self.addEventListener("activate", (ev) => {
  ev.waitUntil(caches.keys()
    .then((keys) => Promise.all(keys.filter((k) => k.startsWith("inkpack-web-") && k !== CACHE).map((k) => caches.delete(k))))
    .then(() => self.clients.claim()));
});

function immutable(url) { return url.pathname.includes("/web/vendor/") || url.pathname.includes("/web/models/") && url.search; }

self.addEventListener("fetch", (ev) => {
  const url = new URL(ev.request.url);
  if (ev.request.method !== "GET" || url.origin !== self.location.origin) return;
  const scope = new URL(self.registration.scope);
  const rel = url.pathname.slice(scope.pathname.length);
  if (/^(v1\/|health|docs|openapi)/.test(rel)) return;
  ev.respondWith((async () => {
    const c = await caches.open(CACHE);
    if (immutable(url)) {
      const hit = await c.match(ev.request);
      if (hit) return hit;
    }
    try {
      const r = await fetch(ev.request);
      if (r.ok) c.put(ev.request, r.clone());
      return r;
    } catch (e) {
      const hit = await c.match(ev.request, { ignoreSearch: !immutable(url) });
      if (hit) return hit;
      if (ev.request.mode === "navigate") { const home = await c.match("./"); if (home) return home; }
      throw e;
    }
  })());
});
