"""W3C InkML (read and write the subset handwriting corpora use).

What a sample is: if the ``<ink>`` root holds ``<trace>`` elements directly, the whole
document is one sample (label = the root's ``<annotation type="truth">``; its
``<traceGroup>`` elements are then a segmentation and are ignored, as in CROHME).
Otherwise every top-level ``<traceGroup>`` is one sample, with the traces inside it
and its own truth annotation. Traces are comma-separated points of whitespace-separated
numbers; the channel order comes from the first ``<traceFormat>`` (default X Y T). ``T``
is taken as milliseconds unless its channel says ``units="s"``; times are shifted to
start at 0. Difference-encoded traces (``'`` / ``"`` prefixes) are not supported and
are reported as malformed.

Damage policy (see ``inkpack.data.ink``): in lenient mode a file that is not well-formed
XML is re-read with lxml's recovering parser and only the samples that end before the
first syntax error are kept; the syntax error itself is recorded.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from lxml import etree

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


def parse_inkml(data: bytes, name: str = "<bytes>", strict: bool = True) -> InkList:
    col = Collector(strict)
    safe = dict(resolve_entities=False, no_network=True, load_dtd=False)
    first_error_line = None
    try:
        root = etree.fromstring(data, etree.XMLParser(**safe))
    except etree.XMLSyntaxError as e:
        col.error(InkpackError(f"{name}: not well-formed XML: {e}"))
        parser = etree.XMLParser(recover=True, **safe)
        try:
            root = etree.fromstring(data, parser)
        except etree.XMLSyntaxError:
            root = None
        if root is None:
            return col.out
        first_error_line = min((err.line for err in parser.error_log), default=1)
    if _local(root) != "ink":
        col.error(InkpackError(f"{name}: root element is <{_local(root)}>, not <ink>"))
        return col.out
    try:
        cols = _channels(root, name)
    except InkpackError as e:
        col.error(e)
        return col.out
    stem = Path(name).stem
    kids = [c for c in root if isinstance(c.tag, str)]
    if any(_local(c) == "trace" for c in kids):
        samples = [(root, [c for c in kids if _local(c) == "trace"], None)]
    else:
        groups = [(k, c) for k, c in enumerate(kids) if _local(c) == "traceGroup"]
        samples = []
        for j, (k, g) in enumerate(groups):
            nxt = kids[k + 1].sourceline if k + 1 < len(kids) else None
            if first_error_line is not None and (nxt is None or nxt >= first_error_line):
                break  # this group may have been cut or garbled by the syntax error
            samples.append((g, [t for t in g.iter() if _local(t) == "trace"], j))
        if not groups and first_error_line is None:
            col.error(InkpackError(f"{name}: no <trace> or <traceGroup> under <ink>"))
    if first_error_line is not None and samples and samples[0][2] is None:
        return col.out  # a single-sample document with a syntax error: nothing is safe
    for el, traces, j in samples:
        idx = 0 if j is None else j
        sid = _annotation(el, "id") or el.get(XML_ID) or (stem if j is None else f"{stem}:{j}")
        where = f"{name}: sample {idx}"
        col.add(lambda el=el, traces=traces, where=where, sid=sid:
                _sample(el, traces, cols, where, sid))
    return col.out


def _channels(root, name: str) -> tuple[int, int, int | None, float, bool]:
    """``(x column, y column, t column, t to ms factor, t required)``."""
    fmt = next((e for e in root.iter() if _local(e) == "traceFormat"), None)
    if fmt is None:  # the default format: X Y, and T when a point has a third value
        return 0, 1, 2, 1.0, False
    chans = [c for c in fmt.iter() if _local(c) == "channel"]
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


def _sample(el, traces, cols, where: str, sid: str) -> Ink:
    xi, yi, ti, tscale, t_required = cols
    need = max(c for c in (xi, yi, ti if t_required else None) if c is not None) + 1
    if not t_required and traces:  # default format: T only if each trace starts with 3 values
        ti = ti if all(len(_first_point(tr)) > ti for tr in traces) else None
    strokes, n = [], 0
    for k, tr in enumerate(traces):
        pieces = [p.split() for p in (tr.text or "").split(",") if p.strip()]
        if not pieces:
            raise BadSampleError(f"{where}: trace {k} is empty")
        try:
            a = np.array(pieces, dtype=np.float64)
        except ValueError:
            raise BadSampleError(f"{where}: trace {k} is not a list of numeric points") from None
        if a.ndim != 2 or a.shape[1] < need:
            raise BadSampleError(f"{where}: trace {k} points have fewer than {need} values")
        t = a[:, ti] * tscale if ti is not None else nominal_times(len(a), n)
        strokes.append(np.column_stack([a[:, xi], a[:, yi], t]))
        n += len(a)
    if ti is not None and strokes:
        t0 = strokes[0][0, 2]
        for s in strokes:
            s[:, 2] -= t0
    return Ink(strokes, label=_annotation(el, "truth"), id=sid).check(where)


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
