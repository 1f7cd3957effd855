"""The web page against a server started with ``--token``: it asks for the token and sends it.

The page's script runs in Node with a minimal stand-in for the DOM and ``fetch`` (a server that
answers 401 unless ``Authorization: Bearer s3cret`` is sent), so this runs without a browser.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

APP = Path(__file__).resolve().parents[2] / "src" / "inkpack" / "deploy" / "web" / "app.js"
NODE = shutil.which("node") or shutil.which("nodejs")

HARNESS = r"""
const fs = require("fs");
const calls = [];
const els = {};
function el(id) {
  if (!els[id]) {
    const listeners = {};
    els[id] = {
      id, value: "", hidden: id === "token-row", textContent: "", dataset: {}, style: {}, width: 480, height: 320,
      files: [], listeners,
      addEventListener(type, fn) { (listeners[type] = listeners[type] || []).push(fn); },
      fire(type, ev) { for (const fn of listeners[type] || []) fn(ev); },
      focus() { this.focused = true; }, replaceChildren() {}, appendChild() {}, setPointerCapture() {},
      getBoundingClientRect() { return { left: 0, top: 0, width: 480, height: 320 }; },
      getContext() { return new Proxy({}, { get: () => () => {} }); },
    };
  }
  return els[id];
}
global.document = { getElementById: el, createElement: () => el("x" + Math.random()) };
global.sessionStorage = { store: {}, getItem(k) { return this.store[k] || null; }, setItem(k, v) { this.store[k] = v; } };
global.fetch = async (path, opts) => {
  const auth = (opts && opts.headers && opts.headers["Authorization"]) || null;
  calls.push({ path, auth });
  const ok = auth === "Bearer s3cret";
  const body = !ok ? { error: "missing or wrong bearer token" }
    : path === "/v1/models" ? { line: { name: "tiny", arch: "a", backend: "torch" }, ink: { name: "chars", kind: "char" } }
    : { text: "x", candidates: [{ text: "x", probability: 0.9 }] };
  return { ok, status: ok ? 200 : 401, json: async () => body };
};
const tick = () => new Promise((r) => setTimeout(r, 20));
(async () => {
  eval(fs.readFileSync(process.argv[2], "utf8"));
  await tick();
  const before = { models: el("models").textContent, rowHidden: el("token-row").hidden };
  el("token").value = "  s3cret ";
  el("token-form").fire("submit", { preventDefault() {} });
  await tick();
  const after = el("models").textContent;
  const ev = (x) => ({ button: 0, pointerId: 1, clientX: x, clientY: 100, timeStamp: x, preventDefault() {} });
  el("pad").fire("pointerdown", ev(10));
  el("pad").fire("pointermove", ev(60));
  el("pad").fire("pointerup", ev(90));
  await tick();
  console.log(JSON.stringify({ before, after, calls, stored: sessionStorage.store["inkpack-token"],
                               inkStatus: el("ink-status").textContent }));
})();
"""


@pytest.mark.skipif(NODE is None, reason="node is not installed")
def test_page_asks_for_the_token_and_sends_it_on_every_call(tmp_path):
    harness = tmp_path / "harness.js"
    harness.write_text(HARNESS)
    p = subprocess.run([NODE, str(harness), str(APP)], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout.strip().splitlines()[-1])
    assert "needs an access token" in out["before"]["models"] and out["before"]["rowHidden"] is False
    assert out["after"].startswith("line images: tiny") and "chars (characters)" in out["after"]
    assert out["stored"] == "s3cret"
    paths = [(c["path"], c["auth"]) for c in out["calls"]]
    assert paths[0] == ("/v1/models", None)  # no token yet: refused, the page asks for it
    assert paths[1:] == [("/v1/models", "Bearer s3cret"), ("/v1/recognize/ink", "Bearer s3cret")]
    assert out["inkStatus"] == ""
