"""W3C InkML (read and write the subset handwriting corpora use).

What a sample is:

* the ``<ink>`` root holds ``<trace>`` elements directly: the whole document is one sample
  (label = the root's truth annotation; its ``<traceGroup>`` elements are then a
  segmentation and are ignored, as in CROHME) — unless the root has no label and its
  labelled ``<traceGroup>`` elements point at the traces with ``<traceView traceDataRef>``:
  then each such group is one sample (documents annotated by reference);
* otherwise every top-level ``<traceGroup>`` is one sample, with the traces inside it and its
  own truth annotation; an unlabelled wrapper group whose child groups are labelled is
  looked into (each labelled child is a sample).

A label is the ``<annotation type="truth">`` (else ``type="transcription"``). Traces are
comma-separated points of whitespace-separated numbers. The channel order of a trace comes
from its context: the trace's (or its enclosing group's) ``contextRef`` → ``<context>`` →
its inline ``<traceFormat>``, its ``traceFormatRef`` or its own ``contextRef``; without one,
the document's first ``<traceFormat>`` (default X Y T). ``T`` is taken as milliseconds
unless its channel says ``units="s"``; times are shifted to start at 0. Difference-encoded
traces (``'`` / ``"`` prefixes, as Office writes) are decoded (:mod:`.inkml_trace`).

``xml:id`` values that are not NCNames or repeat (CROHME writes ``xml:id="0"``) make the
file invalid, not unreadable: such files are read as if valid.

Damage policy (see ``inkpack.data.ink``): in lenient mode a file that is not well-formed
XML is re-read with lxml's recovering parser and only the samples that end before the
first syntax error are kept; the syntax error itself is recorded. Entities are never
expanded and nothing is fetched (no XXE, no XML bombs).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from lxml import etree

from inkpack.data.formats.inkml_trace import decode_trace
from inkpack.data.ink import Collector, Ink, InkList, nominal_times
from inkpack.errors import BadSampleError, InkpackError

NS = "http://www.w3.org/2003/InkML"
XML_ID = "{http://www.w3.org/XML/1998/namespace}id"
_NCNAME = re.compile(r"^[A-Za-z_][\w.\-]*$")


def read_inkml(path: str | Path, strict: bool = True) -> InkList:
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise InkpackError(f"{path}: cannot read ({e.strerror or e})") from None
    return parse_inkml(data, name=str(path), strict=strict)


def _local(el) -> str:
    # string ops, not etree.QName: recovered documents can hold tags QName rejects
    return el.tag.rsplit("}", 1)[-1] if isinstance(el.tag, str) else ""


# validity errors of a well-formed document (CROHME writes xml:id="0"; repeated ids resolve
# to their first element)
_BENIGN = {"DTD_XMLID_VALUE", "DTD_ID_REDEFINED"}
_LABELS = ("truth", "transcription")
_DEFAULT_COLS = (0, 1, 2, 1.0, False)


def _parse(data: bytes, name: str, col: Collector):
    """``(root, first error line)``: strict parse, tolerating only invalid ``xml:id`` values."""
    safe = dict(resolve_entities=False, no_network=True, load_dtd=False)
    parser = etree.XMLParser(**safe)
    try:
        return etree.fromstring(data, parser), None
    except etree.XMLSyntaxError as e:
        errors = [err for err in (parser.error_log or e.error_log) if err.level >= etree.ErrorLevels.ERROR]
        benign = bool(errors) and all(err.type_name in _BENIGN for err in errors)
        if not benign:
            col.error(InkpackError(f"{name}: not well-formed XML: {' '.join(str(e).split())}"))
    parser = etree.XMLParser(recover=True, **safe)
    try:
        root = etree.fromstring(data, parser)
    except etree.XMLSyntaxError:
        root = None
    if benign:
        return root, None
    return root, min((err.line for err in parser.error_log if err.type_name not in _BENIGN), default=1)


def parse_inkml(data: bytes, name: str = "<bytes>", strict: bool = True) -> InkList:
    col = Collector(strict)
    root, first_error_line = _parse(data, name, col)
    if root is None:
        return col.out
    if _local(root) != "ink":
        col.error(InkpackError(f"{name}: root element is <{_local(root)}>, not <ink>"))
        return col.out
    try:
        fmt = _Formats(root, name)
    except InkpackError as e:
        col.error(e)
        return col.out
    stem = Path(name).stem
    kids = [c for c in root if isinstance(c.tag, str)]
    root_traces = [c for c in kids if _local(c) == "trace"]
    if root_traces:
        groups = [] if _label(root) is not None else _referencing_groups(root)
        if groups:
            samples = [(g, lambda g=g: _viewed_traces(g, fmt), j) for j, g in enumerate(groups)]
        else:
            samples = [(root, lambda: root_traces, None)]
    else:
        samples = []
        for k, c in enumerate(kids):
            if _local(c) != "traceGroup":
                continue
            nxt = kids[k + 1].sourceline if k + 1 < len(kids) else None
            if first_error_line is not None and (nxt is None or nxt >= first_error_line):
                break  # this group may have been cut or garbled by the syntax error
            for g in _sample_groups(c):
                samples.append((g, lambda g=g: _group_traces(g, fmt), len(samples)))
        if not any(_local(c) == "traceGroup" for c in kids) and first_error_line is None:
            col.error(InkpackError(f"{name}: no <trace> or <traceGroup> under <ink>"))
    if first_error_line is not None and root_traces:
        return col.out  # traces at the root and a syntax error: no sample is known to be whole
    for el, traces, j in samples:
        idx = 0 if j is None else j
        sid = _annotation(el, "id") or el.get(XML_ID) or (stem if j is None else f"{stem}:{j}")
        where = f"{name}: sample {idx}"
        col.add(lambda el=el, traces=traces, where=where, sid=sid:
                _sample(el, traces, fmt, where, sid))
    return col.out


def _label(el) -> str | None:
    for kind in _LABELS:
        v = _annotation(el, kind)
        if v is not None:
            return v
    return None


def _sample_groups(g) -> list:
    """``g``, or (for an unlabelled wrapper of labelled groups) its labelled descendants."""
    subs = [c for c in g if isinstance(c.tag, str) and _local(c) == "traceGroup"]
    if _label(g) is not None or not subs or not any(_label(c) is not None for c in subs):
        return [g]
    return [s for c in subs for s in _sample_groups(c)]


def _referencing_groups(root) -> list:
    """Top-most labelled ``traceGroup`` elements that hold ``traceView`` references."""
    out, stack = [], [c for c in reversed(root) if isinstance(c.tag, str) and _local(c) == "traceGroup"]
    while stack:
        g = stack.pop()
        if _label(g) is not None and any(_local(v) == "traceView" for v in g.iter()):
            out.append(g)
        else:
            stack.extend(c for c in reversed(g) if isinstance(c.tag, str) and _local(c) == "traceGroup")
    return out


def _group_traces(g, fmt: "_Formats") -> list:
    traces = [t for t in g.iter() if _local(t) == "trace"]
    return traces if traces else _viewed_traces(g, fmt)


def _viewed_traces(g, fmt: "_Formats") -> list:
    out = []
    for v in g.iter():
        if _local(v) != "traceView":
            continue
        ref = v.get("traceDataRef") or ""
        target = fmt.ids.get(ref.lstrip("#"))
        if target is None:
            raise BadSampleError(f"traceView refers to {ref!r}, which is not in the document")
        if v.get("from") is not None or v.get("to") is not None:
            raise BadSampleError(f"traceView of {ref!r} selects part of a trace (from/to), not supported")
        out += [target] if _local(target) == "trace" else [t for t in target.iter() if _local(t) == "trace"]
    return out


class _Formats:
    """Each trace's channel layout ``(x col, y col, t col, t to ms, t required)``, from its context."""

    def __init__(self, root, name: str) -> None:
        self.name = name
        self.ids = {}
        for el in root.iter():
            if isinstance(el.tag, str):
                for key in (XML_ID, "id"):
                    if el.get(key) is not None:
                        self.ids.setdefault(el.get(key), el)
        first = next((e for e in root.iter() if _local(e) == "traceFormat"), None)
        self.default = _channels(first, name) if first is not None else _DEFAULT_COLS
        self._cache: dict[int, tuple] = {}

    def _ref(self, el, attr: str, kind: str):
        ref = el.get(attr)
        if ref is None:
            return None
        target = self.ids.get(ref.lstrip("#"))
        if target is None or _local(target) != kind:
            raise BadSampleError(f"{attr}={ref!r} does not name a <{kind}> in the document")
        return target

    def _context_cols(self, ctx, depth: int = 0):
        if depth > 16:
            raise BadSampleError(f"context {ctx.get(XML_ID)!r}: contextRef chain too long (a cycle?)")
        inline = next((c for c in ctx if _local(c) == "traceFormat"), None)
        if inline is not None:
            return _channels(inline, self.name)
        tf = self._ref(ctx, "traceFormatRef", "traceFormat")
        if tf is not None:
            return _channels(tf, self.name)
        base = self._ref(ctx, "contextRef", "context")
        return self._context_cols(base, depth + 1) if base is not None else self.default

    def cols(self, trace) -> tuple:
        tf = self._ref(trace, "traceFormatRef", "traceFormat")
        if tf is not None:
            return _channels(tf, self.name)
        holder = next((a for a in [trace, *trace.iterancestors()] if a.get("contextRef")), None)
        if holder is None:
            return self.default
        key = id(holder)
        if key not in self._cache:
            self._cache[key] = self._context_cols(self._ref(holder, "contextRef", "context"))
        return self._cache[key]


def _channels(fmt, name: str) -> tuple[int, int, int | None, float, bool]:
    """``(x column, y column, t column, t to ms factor, t required)`` of a ``<traceFormat>``."""
    chans = [c for c in fmt if _local(c) == "channel"]  # intermittent channels come after these
    names = [(c.get("name") or "").upper() for c in chans]
    if "X" not in names or "Y" not in names:
        raise InkpackError(f"{name}: traceFormat has no X and Y channels ({names})")
    ti = names.index("T") if "T" in names else None
    scale = 1000.0 if ti is not None and (chans[ti].get("units") or "").lower() == "s" else 1.0
    return names.index("X"), names.index("Y"), ti, scale, True


def _annotation(el, kind: str) -> str | None:
    for a in el:
        if isinstance(a.tag, str) and _local(a) == "annotation" and a.get("type") == kind:
            return (a.text or "").strip()
    return None


def _sample(el, find_traces, fmt: _Formats, where: str, sid: str) -> Ink:
    try:
        traces = find_traces()
        layouts = [fmt.cols(tr) for tr in traces]
    except BadSampleError as e:
        raise BadSampleError(f"{where}: {e}") from None
    if not traces:
        raise BadSampleError(f"{where}: no traces")
    # the default format has T only if every such trace starts with 3 values
    default_t = all(len(_first_point(tr)) > 2 for tr, c in zip(traces, layouts) if not c[4])
    arrays = []
    for k, (tr, (xi, yi, ti, tscale, t_required)) in enumerate(zip(traces, layouts)):
        if not t_required and not default_t:
            ti = None
        need = max(c for c in (xi, yi, ti) if c is not None) + 1
        a = decode_trace(tr.text or "", f"{where}: trace {k}", need)
        if a.shape[1] < need:
            raise BadSampleError(f"{where}: trace {k} points have fewer than {need} values")
        arrays.append((a, xi, yi, None if ti is None else a[:, ti] * tscale))
    timed = all(t is not None for *_, t in arrays)
    strokes, n = [], 0
    for a, xi, yi, t in arrays:
        strokes.append(np.column_stack([a[:, xi], a[:, yi], t if timed else nominal_times(len(a), n)]))
        n += len(a)
    if timed:
        t0 = strokes[0][0, 2]
        for s in strokes:
            s[:, 2] -= t0
    return Ink(strokes, label=_label(el), id=sid).check(where)


def _first_point(tr) -> list[str]:
    return (tr.text or "").split(",", 1)[0].split()


def _num(v: float) -> str:
    r = repr(float(v))
    return r[:-2] if r.endswith(".0") else r


def inkml_bytes(inks: Iterable[Ink], name: str = "<inkml>") -> bytes:
    """An InkML document with one ``traceGroup`` per ink (X, Y, T in ms)."""
    root = etree.Element(f"{{{NS}}}ink", nsmap={None: NS})
    fmt = etree.SubElement(root, f"{{{NS}}}traceFormat")
    for ch, extra in (("X", {}), ("Y", {}), ("T", {"units": "ms"})):
        etree.SubElement(fmt, f"{{{NS}}}channel", name=ch, type="decimal", **extra)
    used: set[str] = set()
    for i, ink in enumerate(inks):
        where = f"{name}: sample {i}"
        ink.check(where)
        g = etree.SubElement(root, f"{{{NS}}}traceGroup")
        try:  # xml:id must be a unique NCName; other ids go into an annotation
            if ink.id is not None and _NCNAME.match(ink.id) and ink.id not in used:
                g.set(XML_ID, ink.id)
                used.add(ink.id)
            elif ink.id is not None:
                etree.SubElement(g, f"{{{NS}}}annotation", type="id").text = ink.id
            if ink.label is not None:
                etree.SubElement(g, f"{{{NS}}}annotation", type="truth").text = ink.label
        except ValueError as e:
            raise BadSampleError(f"{where}: label or id cannot be stored in XML ({e})") from None
        for s in ink.strokes:
            tr = etree.SubElement(g, f"{{{NS}}}trace")
            tr.text = ", ".join(" ".join(_num(v) for v in row) for row in s.tolist())
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)


def write_inkml(path: str | Path, inks: Iterable[Ink]) -> None:
    data = inkml_bytes(inks, name=str(path))
    try:
        Path(path).write_bytes(data)
    except OSError as e:
        raise InkpackError(f"{path}: cannot write ({e.strerror or e})") from None
