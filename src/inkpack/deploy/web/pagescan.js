// inkpack demo page: the page-scan panel (server side: segmentation and reading of a whole page).
// Uses the helpers app.js exposes as window.InkpackApp (api, needToken, confClass).
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const { api, needToken, confClass } = window.InkpackApp;

  // ------------------------------------------------------------ page scans
  // POST /v1/recognize/page?format=json with the image alone: the server finds the lines (polygon,
  // baseline, reading order) and reads them; the page is drawn scaled to fit with every line on it.
  const pageCanvas = $("page-canvas");
  const pageCtx = pageCanvas.getContext("2d");
  const page = { seq: 0, img: null, doc: null, scale: 1, selected: -1 };

  function setPageStatus(msg) { $("page-status").textContent = msg; }

  function loadImage(file) {  // null when the browser cannot show it (TIFF): the lines are drawn on blank paper
    return new Promise((resolve) => {
      const img = new Image();
      const url = URL.createObjectURL(file);
      img.onload = () => { URL.revokeObjectURL(url); resolve(img); };
      img.onerror = () => { URL.revokeObjectURL(url); resolve(null); };
      img.src = url;
    });
  }

  async function readPage(file) {
    const seq = ++page.seq;
    $("page-view").hidden = true;
    $("page-lines").replaceChildren();
    setPageStatus(`finding and reading the lines of ${file.name}…`);
    const form = new FormData();
    form.append("image", file, file.name || "page.png");
    try {
      const [r, img] = await Promise.all([
        api("/v1/recognize/page?format=json", { method: "POST", body: form }), loadImage(file)]);
      if (seq !== page.seq) return;
      if (needToken(r)) { setPageStatus("this server needs an access token: enter it above"); return; }
      let body = null;
      try { body = await r.json(); } catch (e) { body = null; }
      if (seq !== page.seq) return;
      if (!r.ok || !body || !Array.isArray(body.lines)) {
        setPageStatus((body && body.error) || `error ${r.status}`);
        return;
      }
      page.img = img; page.doc = body; page.selected = -1;
      const n = body.lines.length;
      setPageStatus(n === 0 ? "no text lines found on this page"
        : (img ? "" : "(the browser cannot show this image; the lines are drawn on a blank page)"));
      $("page-view").hidden = false;
      showPageLines(body.lines);
      drawPage();
    } catch (e) {
      if (seq === page.seq) setPageStatus("cannot reach the server");
    }
  }

  function showPageLines(lines) {
    const items = lines.map((ln, i) => {
      const li = document.createElement("li");
      li.dataset.index = String(i);
      li.dataset.text = ln.text || "";
      li.dataset.region = ln.region === undefined ? "" : String(ln.region);
      const num = document.createElement("span");
      num.className = "line-num";
      num.textContent = String(i + 1);
      const t = document.createElement("span");
      t.className = "line-text";
      t.textContent = ln.text ? ln.text : "∅";
      li.append(num, t);
      if (typeof ln.confidence === "number") {
        const c = document.createElement("span");
        c.className = `line-conf ${confClass(ln.confidence)}`;
        c.dataset.confidence = ln.confidence.toFixed(4);
        c.textContent = `${(100 * ln.confidence).toFixed(1)}%`;
        c.title = "how sure the model is of this line";
        li.appendChild(c);
      }
      li.tabIndex = 0;
      li.addEventListener("click", () => selectLine(i));
      li.addEventListener("keydown", (ev) => {
        if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); selectLine(i); }
      });
      return li;
    });
    $("page-lines").replaceChildren(...items);
    $("page-lines").dataset.count = String(items.length);
  }

  function selectLine(i) {
    page.selected = page.selected === i ? -1 : i;
    for (const li of $("page-lines").children) {
      li.classList.toggle("selected", Number(li.dataset.index) === page.selected);
    }
    drawPage();
  }

  function drawPage() {
    const doc = page.doc;
    if (!doc) return;
    const w = Math.max(1, doc.width), h = Math.max(1, doc.height);
    const avail = $("page-canvas-wrap").clientWidth || 800;
    const s = Math.min(1, avail / w);
    page.scale = s;
    pageCanvas.width = Math.max(1, Math.round(w * s));
    pageCanvas.height = Math.max(1, Math.round(h * s));
    pageCanvas.dataset.scale = String(s);
    const c = pageCtx;
    c.fillStyle = "#ffffff";
    c.fillRect(0, 0, pageCanvas.width, pageCanvas.height);
    if (page.img) c.drawImage(page.img, 0, 0, pageCanvas.width, pageCanvas.height);
    const path = (pts, close) => {
      c.beginPath();
      pts.forEach(([x, y], k) => (k ? c.lineTo(x * s, y * s) : c.moveTo(x * s, y * s)));
      if (close) c.closePath();
    };
    c.lineJoin = "round";
    doc.lines.forEach((ln, i) => {
      const sel = i === page.selected;
      if (ln.polygon && ln.polygon.length) {
        path(ln.polygon, true);
        if (sel) { c.fillStyle = "rgba(255, 196, 0, 0.35)"; c.fill(); }
        c.strokeStyle = sel ? "#d97706" : "rgba(47, 111, 143, 0.9)";
        c.lineWidth = sel ? 3 : 1.5;
        c.stroke();
      }
      if (ln.baseline && ln.baseline.length) {
        path(ln.baseline, false);
        c.strokeStyle = "#e0245e";
        c.lineWidth = 2;
        c.stroke();
      }
      const at = (ln.baseline && ln.baseline[0]) || (ln.polygon && ln.polygon[0]);
      if (at) {
        const label = String(i + 1);
        c.font = "bold 13px system-ui, sans-serif";
        const tw = c.measureText(label).width + 6;
        const x = Math.max(0, at[0] * s - tw - 2), y = Math.max(0, at[1] * s - 16);
        c.fillStyle = sel ? "#d97706" : "#2f6f8f";
        c.fillRect(x, y, tw, 16);
        c.fillStyle = "#ffffff";
        c.fillText(label, x + 3, y + 12.5);
      }
    });
  }

  function inside(pt, poly) {  // even-odd rule, image coordinates
    let inn = false;
    for (let a = 0, b = poly.length - 1; a < poly.length; b = a++) {
      const [xa, ya] = poly[a], [xb, yb] = poly[b];
      if ((ya > pt[1]) !== (yb > pt[1]) && pt[0] < ((xb - xa) * (pt[1] - ya)) / (yb - ya) + xa) inn = !inn;
    }
    return inn;
  }

  pageCanvas.addEventListener("click", (ev) => {
    if (!page.doc) return;
    const r = pageCanvas.getBoundingClientRect();
    const k = pageCanvas.width / (r.width || 1) / page.scale;
    const pt = [(ev.clientX - r.left) * k, (ev.clientY - r.top) * k];
    const i = page.doc.lines.findIndex((ln) => ln.polygon && inside(pt, ln.polygon));
    if (i >= 0) {
      selectLine(i);
      const li = $("page-lines").children[i];
      if (li && li.scrollIntoView) li.scrollIntoView({ block: "nearest" });
    }
  });

  $("page-file").addEventListener("change", () => {
    const file = $("page-file").files[0];
    if (file) readPage(file);
  });
  const drop = $("page-drop");
  drop.addEventListener("dragover", (ev) => { ev.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (ev) => {
    ev.preventDefault();
    drop.classList.remove("over");
    const file = ev.dataTransfer && ev.dataTransfer.files[0];
    if (file) readPage(file);
    else setPageStatus("drop an image file (PNG, JPEG or TIFF)");
  });
  if (typeof window !== "undefined" && window.addEventListener) {
    // a file dropped beside the drop zone must not replace the page
    for (const t of ["dragover", "drop"]) window.addEventListener(t, (ev) => ev.preventDefault());
    let resized = null;
    window.addEventListener("resize", () => { clearTimeout(resized); resized = setTimeout(drawPage, 150); });
  }
})();
