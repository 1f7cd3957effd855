"""IAM-OnDB: ``lineStrokes`` XML files and the project's compact ``.npz`` form.

XML: ``WhiteboardCaptureSession/StrokeSet/Stroke/Point`` with ``x``, ``y`` and ``time``
(seconds); one file is one text line, its id is the file stem and its transcription
comes from elsewhere (the form's ascii file), so ``label`` is a parameter.

npz (``../shared/data/iamondb/*.npz``, see the data README): ``points`` int16 ``[N, 3]``
(x, y, pen_end), ``times_ms`` int32, ``offsets`` int64 ``[L+1]``, and per-line
``texts``, ``ids``, ``forms``, ``groups``. ``IamOnDbNpz`` gives random access without
building every line; a line that is inconsistent (bad offsets, last point without
``pen_end``, non-finite values) is a ``BadSampleError`` naming the file and line index.
IAM-OnDB itself must never be committed: tests write their own synthetic files.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from lxml import etree

from inkpack.data.ink import Collector, Ink, InkList, read_many
from inkpack.errors import BadSampleError, InkpackError

NPZ_KEYS = ("points", "times_ms", "offsets", "texts", "ids", "forms", "groups")


def read_iamondb_xml(path: str | Path, label: str | None = None) -> Ink:
    """One line's strokes; raises ``BadSampleError`` naming the file on any defect."""
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise InkpackError(f"{path}: cannot read ({e.strerror or e})") from None
    return parse_iamondb_xml(data, name=str(path), label=label)


def read_iamondb_xmls(paths: Iterable[str | Path], strict: bool = True) -> InkList:
    """Many line files under the strict / lenient policy of ``inkpack.data.ink``."""
    return read_many(read_iamondb_xml, paths, strict=strict)


def parse_iamondb_xml(data: bytes, name: str = "<bytes>", label: str | None = None) -> Ink:
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    try:
        root = etree.fromstring(data, parser)
    except etree.XMLSyntaxError as e:
        raise BadSampleError(f"{name}: not well-formed XML: {e}") from None
    if root.tag != "WhiteboardCaptureSession":
        raise BadSampleError(
            f"{name}: root element is <{root.tag}>, not <WhiteboardCaptureSession>")
    sset = root.find("StrokeSet")
    if sset is None:
        raise BadSampleError(f"{name}: no <StrokeSet>")
    strokes = []
    for k, st in enumerate(sset.iterfind("Stroke")):
        pts = st.findall("Point")
        if not pts:
            raise BadSampleError(f"{name}: stroke {k} has no points")
        try:
            a = np.array([(p.attrib["x"], p.attrib["y"], p.attrib["time"]) for p in pts],
                         dtype=np.float64)
        except KeyError as e:
            raise BadSampleError(f"{name}: stroke {k}: a <Point> lacks attribute {e}") from None
        except ValueError:
            raise BadSampleError(f"{name}: stroke {k}: a <Point> has a non-numeric value") from None
        strokes.append(a)
    if strokes:
        t0 = strokes[0][0, 2]
        for a in strokes:
            a[:, 2] = (a[:, 2] - t0) * 1000.0
    return Ink(strokes, label=label, id=Path(name).stem).check(name)


def _num(v: float) -> str:
    r = repr(float(v))
    return r[:-2] if r.endswith(".0") else r


def iamondb_xml_bytes(ink: Ink, name: str = "<xml>") -> bytes:
    """A lineStrokes document (times written in seconds, as IAM-OnDB does)."""
    ink.check(name)
    root = etree.Element("WhiteboardCaptureSession")
    desc = etree.SubElement(root, "WhiteboardDescription")
    etree.SubElement(desc, "SensorLocation", corner="top_left")
    sset = etree.SubElement(root, "StrokeSet")
    for s in ink.strokes:
        sec = s[:, 2] / 1000.0
        st = etree.SubElement(sset, "Stroke", colour="black",
                              start_time=_num(sec[0]), end_time=_num(sec[-1]))
        for (x, y, _), ts in zip(s.tolist(), sec.tolist()):
            etree.SubElement(st, "Point", x=_num(x), y=_num(y), time=_num(ts))
    return etree.tostring(root, xml_declaration=True, encoding="ISO-8859-1", pretty_print=True)


def write_iamondb_xml(path: str | Path, ink: Ink) -> None:
    data = iamondb_xml_bytes(ink, name=str(path))
    try:
        Path(path).write_bytes(data)
    except OSError as e:
        raise InkpackError(f"{path}: cannot write ({e.strerror or e})") from None


class IamOnDbNpz:
    """Random access to the lines of one IAM-OnDB ``.npz`` file."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        try:
            # the file is ours to close: np.load leaves it open when the archive is damaged
            with open(path, "rb") as f, np.load(f, allow_pickle=False) as z:
                missing = [k for k in NPZ_KEYS if k not in z.files]
                if missing:
                    raise InkpackError(f"{path}: missing arrays {missing}")
                arrs = {k: z[k] for k in NPZ_KEYS}
        except InkpackError:
            raise
        except Exception as e:  # noqa: BLE001  damaged archives fail in many ways (zip, zlib, npy)
            raise InkpackError(
                f"{path}: not a readable npz file ({type(e).__name__}: {e})") from None
        self.points, self.times = arrs["points"], arrs["times_ms"]
        self.offsets = arrs["offsets"]
        self.texts, self.ids = arrs["texts"], arrs["ids"]
        self.forms, self.groups = arrs["forms"], arrs["groups"]
        if self.points.ndim != 2 or self.points.shape[1] != 3:
            raise InkpackError(f"{path}: points has shape {self.points.shape}, want [N, 3]")
        if self.times.shape != (len(self.points),):
            raise InkpackError(f"{path}: times_ms has shape {self.times.shape}, want [N]")
        n = len(self.offsets) - 1
        if self.offsets.ndim != 1 or n < 0:
            raise InkpackError(f"{path}: offsets must be a 1-d array of L+1 entries")
        for k in ("texts", "ids", "forms", "groups"):
            if len(arrs[k]) != n:
                raise InkpackError(f"{path}: {k} has {len(arrs[k])} entries for {n} lines")

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> Ink:
        if not 0 <= i < len(self):
            raise IndexError(i)
        where = f"{self.path}: line {i}"
        a, b = int(self.offsets[i]), int(self.offsets[i + 1])
        if not 0 <= a < b <= len(self.points):
            raise BadSampleError(f"{where}: offsets [{a}, {b}) are empty or out of range")
        p = self.points[a:b]
        if p[-1, 2] != 1:
            raise BadSampleError(f"{where}: last point has no pen_end flag")
        t = self.times[a:b].astype(np.float64)
        ink = Ink.from_points(p, t, label=str(self.texts[i]), id=str(self.ids[i]))
        return ink.check(where)

    def read_all(self, strict: bool = True) -> InkList:
        col = Collector(strict)
        for i in range(len(self)):
            col.add(lambda i=i: self[i])
        return col.out


def read_iamondb_npz(path: str | Path, strict: bool = True) -> InkList:
    return IamOnDbNpz(path).read_all(strict=strict)


def write_iamondb_npz(
    path: str | Path,
    inks: Sequence[Ink],
    forms: Sequence[str] | None = None,
    groups: Sequence[str] | None = None,
) -> None:
    """The npz layout of the shared data (for tests and for converted corpora).

    Coordinates and times are rounded to integers (int16 points, int32 ms). Forms and
    groups default to the IAM id pattern ``a01-000u-01`` -> ``a01-000u`` -> ``a01``.
    """
    pts, times, offsets, ids = [], [], [0], []
    for i, ink in enumerate(inks):
        where = f"{path}: line {i}"
        ink.check(where)
        p, t = ink.to_points()
        p = np.rint(p)
        if p[:, :2].min() < -32768 or p[:, :2].max() > 32767:
            raise BadSampleError(f"{where}: coordinates outside int16")
        pts.append(p.astype(np.int16))
        if len(t) and np.abs(t).max() >= 2**31:
            raise BadSampleError(f"{where}: times outside int32 milliseconds")
        times.append(np.rint(t).astype(np.int32))
        offsets.append(offsets[-1] + len(p))
        ids.append(ink.id if ink.id is not None else f"line-{i}")
    forms = list(forms) if forms is not None else [s.rsplit("-", 1)[0] for s in ids]
    groups = list(groups) if groups is not None else [s.split("-", 1)[0] for s in ids]
    arrays = {
        "points": np.concatenate(pts) if pts else np.zeros((0, 3), np.int16),
        "times_ms": np.concatenate(times) if times else np.zeros(0, np.int32),
        "offsets": np.asarray(offsets, dtype=np.int64),
        "texts": np.array([ink.label or "" for ink in inks], dtype=str),
        "ids": np.array(ids, dtype=str),
        "forms": np.array(forms, dtype=str),
        "groups": np.array(groups, dtype=str),
    }
    try:
        with open(path, "wb") as f:  # a file object keeps numpy from appending ".npz"
            np.savez_compressed(f, **arrays)
    except OSError as e:
        raise InkpackError(f"{path}: cannot write ({e.strerror or e})") from None
