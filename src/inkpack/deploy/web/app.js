// inkpack demo page: a writing pad (pointer events) and a line-image reader. No dependencies.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const pad = $("pad");
  const ctx = pad.getContext("2d");
  const strokes = [];      // each stroke: [[x, y, t_ms], ...] in canvas pixels
  let current = null;      // the stroke being drawn
  let t0 = null;           // time origin of the sample (first point)
  let requestSeq = 0;      // responses older than the newest request are ignored
  let inkKind = null;      // "char" | "ink" | null (no ink model)

  // ------------------------------------------------------------ access token (serve --token)
  const TOKEN_KEY = "inkpack-token";
  let token = "";
  try { token = sessionStorage.getItem(TOKEN_KEY) || ""; } catch (e) { token = ""; }
  $("token").value = token;
  // every API call: with `Authorization: Bearer TOKEN` once a token is entered
  function api(path, opts) {
    const o = Object.assign({}, opts || {});
    o.headers = Object.assign({}, o.headers || {});
    if (token) o.headers["Authorization"] = `Bearer ${token}`;
    return fetch(path, o);
  }
  function needToken(r) {
    if (r.status !== 401) return false;
    $("token-row").hidden = false;
    $("token").focus();
    return true;
  }
  $("token-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    token = $("token").value.trim();
    try { sessionStorage.setItem(TOKEN_KEY, token); } catch (e) { /* storage off: kept for this page */ }
    loadModels();
  });

  // ------------------------------------------------------------ models
  function loadModels() {
    api("/v1/models").then(async (r) => {
      if (needToken(r)) {
        $("models").textContent = token ? "the access token was refused: check it"
          : "this server needs an access token: enter it above";
        return;
      }
      const m = await r.json();
      const parts = [];
      if (m.line) parts.push(`line images: ${m.line.name} (${m.line.arch}, ${m.line.backend})`);
      if (m.ink) parts.push(`ink: ${m.ink.name} (${m.ink.kind === "char" ? "characters" : "text lines"})`);
      else parts.push("ink: no model loaded");
      inkKind = m.ink ? m.ink.kind : null;
      $("models").textContent = parts.join(" · ");
      if (!m.ink) setInkStatus("No ink model is loaded on the server; start it with --ink-model to recognize writing.");
      else setInkStatus("");
      const noLine = m.line ? "" : "No line model is loaded on the server.";
      $("line-status").textContent = noLine;
      $("page-status").textContent = noLine;
    }).catch(() => { $("models").textContent = "cannot reach the server"; });
  }

  // ------------------------------------------------------------ on the device or on the server
  // On the device (onnxruntime-web, ondevice.js) whenever the page has on-device models
  // (web/models/manifest.json); on the server only when asked: ?server=1 or the checkbox.
  const device = (typeof window !== "undefined" && window.InkpackDevice) || null;
  const wantServer = typeof location !== "undefined" && new URLSearchParams(location.search).get("server") === "1";
  let onDevice = false, deviceInfo = null;
  function showDeviceModels(i) {
    const mb = (b) => `${(b / 1e6).toFixed(2)} MB`;
    const parts = [];
    if (i.line) parts.push(`line images: ${i.line.name} (int8, ${mb(i.line.bytes)})`);
    const ink = i.char || i.ink;
    if (ink) parts.push(`ink: ${ink.name} (${ink.kind === "char" ? "characters" : "text lines"}, int8, ${mb(ink.bytes)})`);
    $("models").textContent = `on this device: ${parts.join(" · ")}`;
    setInkStatus(ink ? "" : "No on-device ink model.");
    $("line-status").textContent = i.line ? "" : "No on-device line model.";
    $("page-status").textContent = "Page scans are segmented and read by the server.";
  }
  function useServer(yes) {
    onDevice = !yes && !!deviceInfo;
    if (document.body) document.body.dataset.mode = onDevice ? "device" : "server";
    if (onDevice) showDeviceModels(deviceInfo); else loadModels();
  }
  if (device) {
    $("models").textContent = "loading the on-device models…";
    device.init().then((i) => {
      deviceInfo = i;
      if (i) { $("mode-row").hidden = false; $("use-server").checked = wantServer; }
      useServer(wantServer);
    }).catch((e) => { $("models").textContent = `on-device recognition unavailable (${e.message})`; useServer(true); });
    $("use-server").addEventListener("change", () => useServer($("use-server").checked));
  } else {
    loadModels();
  }

  // ------------------------------------------------------------ drawing
  function scale() {
    const r = pad.getBoundingClientRect();
    return [pad.width / r.width, pad.height / r.height, r];
  }
  function point(ev) {
    const [sx, sy, r] = scale();
    if (t0 === null) t0 = ev.timeStamp;
    return [Math.round((ev.clientX - r.left) * sx * 10) / 10,
            Math.round((ev.clientY - r.top) * sy * 10) / 10,
            Math.max(0, Math.round(ev.timeStamp - t0))];
  }
  function redraw() {
    ctx.clearRect(0, 0, pad.width, pad.height);
    ctx.lineWidth = 4;
    ctx.lineCap = "round";
    ctx.lineJoin = "round";
    ctx.strokeStyle = "#1b2a3a";
    for (const s of strokes.concat(current ? [current] : [])) {
      ctx.beginPath();
      ctx.moveTo(s[0][0], s[0][1]);
      if (s.length === 1) ctx.lineTo(s[0][0] + 0.1, s[0][1]);
      for (let i = 1; i < s.length; i++) ctx.lineTo(s[i][0], s[i][1]);
      ctx.stroke();
    }
    $("stroke-count").textContent = `${strokes.length} stroke${strokes.length === 1 ? "" : "s"}`;
  }

  pad.addEventListener("pointerdown", (ev) => {
    if (ev.button !== undefined && ev.button > 0) return;
    ev.preventDefault();
    pad.setPointerCapture(ev.pointerId);
    current = [point(ev)];
    redraw();
  });
  pad.addEventListener("pointermove", (ev) => {
    if (!current) return;
    ev.preventDefault();
    const events = ev.getCoalescedEvents ? ev.getCoalescedEvents() : [ev];
    for (const e of (events.length ? events : [ev])) current.push(point(e));
    redraw();
  });
  function endStroke(ev) {
    if (!current) return;
    ev.preventDefault();
    strokes.push(current);
    current = null;
    redraw();
    recognizeInk();
  }
  pad.addEventListener("pointerup", endStroke);
  pad.addEventListener("pointercancel", endStroke);

  $("undo").addEventListener("click", () => { strokes.pop(); redraw(); recognizeInk(); });
  $("clear").addEventListener("click", () => {
    strokes.length = 0; t0 = null; redraw(); requestSeq++;
    $("candidates").replaceChildren(); setInkStatus("");
  });

  // ------------------------------------------------------------ ink recognition
  function setInkStatus(msg) { $("ink-status").textContent = msg; }

  async function recognizeInk() {
    const seq = ++requestSeq;
    if (!strokes.length) { $("candidates").replaceChildren(); return; }
    setInkStatus("recognizing…");
    if (onDevice) {
      try {
        const body = await device.recognizeInk(strokes, 5);
        if (seq !== requestSeq) return;
        setInkStatus("");
        showCandidates(body);
        $("candidates").dataset.ms = body.ms.toFixed(2);
      } catch (e) {
        if (seq === requestSeq) setInkStatus(`on-device recognition failed: ${e.message}`);
      }
      return;
    }
    try {
      const r = await api("/v1/recognize/ink", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ strokes }),
      });
      if (seq !== requestSeq) return;
      if (needToken(r)) { setInkStatus("this server needs an access token: enter it above"); return; }
      const body = await r.json();
      if (!r.ok) { setInkStatus(body.error || `error ${r.status}`); $("candidates").replaceChildren(); return; }
      setInkStatus("");
      showCandidates(body);
    } catch (e) {
      if (seq === requestSeq) setInkStatus("cannot reach the server");
    }
  }

  function showCandidates(body) {
    const list = body.candidates && body.candidates.length
      ? body.candidates : [{ text: body.text, probability: null }];
    const items = list.map((c) => {
      const li = document.createElement("li");
      li.dataset.text = c.text;
      const t = document.createElement("span");
      t.className = "cand-text";
      t.textContent = c.text === "" ? "∅" : c.text;
      li.appendChild(t);
      if (c.probability !== null && c.probability !== undefined) {
        const p = document.createElement("span");
        p.className = "cand-prob";
        p.textContent = `${(100 * c.probability).toFixed(1)}%`;
        li.appendChild(p);
      }
      return li;
    });
    $("candidates").replaceChildren(...items);
    $("candidates").dataset.count = String(items.length);
  }

  // ------------------------------------------------------------ line images
  function confClass(c) { return c >= 0.9 ? "conf-high" : c >= 0.6 ? "conf-mid" : "conf-low"; }

  $("line-file").addEventListener("change", async () => {
    const file = $("line-file").files[0];
    if (!file) return;
    const img = $("line-preview");
    img.src = URL.createObjectURL(file);
    $("line-preview-wrap").hidden = false;
    $("line-box").hidden = true;
    $("line-status").textContent = "recognizing…";
    $("line-result").replaceChildren();
    if (onDevice) {
      try {
        const body = await device.recognizeLine(file);
        $("line-status").textContent = body.text ? "" : "(no text recognized)";
        showLine(body);
        $("line-result").dataset.ms = body.ms.toFixed(2);
      } catch (e) {
        $("line-status").textContent = `on-device recognition failed: ${e.message}`;
      }
      return;
    }
    const form = new FormData();
    form.append("file", file, file.name);
    try {
      const r = await api("/v1/recognize/line", { method: "POST", body: form });
      if (needToken(r)) { $("line-status").textContent = "this server needs an access token: enter it above"; return; }
      const body = await r.json();
      if (!r.ok) { $("line-status").textContent = body.error || `error ${r.status}`; return; }
      $("line-status").textContent = body.text ? "" : "(no text recognized)";
      showLine(body);
    } catch (e) {
      $("line-status").textContent = "cannot reach the server";
    }
  });

  function showLine(body) {
    const img = $("line-preview");
    const spans = Array.from(body.text).map((ch, i) => {
      const s = document.createElement("span");
      const c = body.confidences[i];
      s.textContent = ch;
      s.className = confClass(c);
      s.dataset.confidence = c.toFixed(4);
      s.title = `${JSON.stringify(ch)} confidence ${(100 * c).toFixed(1)}%`;
      const pos = body.positions[i];
      s.addEventListener("mouseenter", () => {
        const w = img.naturalWidth || 1;
        const box = $("line-box");
        box.style.left = `${(100 * pos[0]) / w}%`;
        box.style.width = `${(100 * Math.max(1, pos[1] - pos[0])) / w}%`;
        box.hidden = false;
      });
      s.addEventListener("mouseleave", () => { $("line-box").hidden = true; });
      return s;
    });
    $("line-result").replaceChildren(...spans);
  }

  if (typeof window !== "undefined") window.InkpackApp = { api, needToken, confClass };
})();
