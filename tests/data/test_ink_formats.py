"""Readers and writers of online ink: round-trips, hand-built files, damaged input."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inkpack.data.formats.iamondb import (
    IamOnDbNpz,
    iamondb_xml_bytes,
    parse_iamondb_xml,
    read_iamondb_npz,
    read_iamondb_xml,
    read_iamondb_xmls,
    write_iamondb_npz,
    write_iamondb_xml,
)
from inkpack.data.formats.inkml import inkml_bytes, parse_inkml, read_inkml, write_inkml
from inkpack.data.formats.pot import parse_pot, read_pot, sample_bytes, write_pot
from inkpack.data.ink import Ink
from inkpack.errors import BadSampleError, InkpackError

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"
HYP = settings(max_examples=60, deadline=None,
               suppress_health_check=[HealthCheck.function_scoped_fixture])


def make_ink(rng: np.random.Generator, label: str | None = "x", id: str | None = "s",
             integer: bool = True) -> Ink:
    strokes, t = [], 0
    for _ in range(int(rng.integers(1, 5))):
        k = int(rng.integers(1, 12))
        xy = rng.uniform(0, 2000, (k, 2))
        if integer:
            xy = np.rint(xy)
        tt = t + np.cumsum(rng.integers(1, 30, k)) - 1
        t = int(tt[-1]) + 50
        strokes.append(np.column_stack([xy, tt]))
    strokes[0][:, 2] -= strokes[0][0, 2]
    return Ink(strokes, label=label, id=id)


def same_xy(a: Ink, b: Ink) -> None:
    assert a.num_strokes == b.num_strokes
    for s, r in zip(a.strokes, b.strokes):
        np.testing.assert_allclose(s[:, :2], r[:, :2])


def same_xyt(a: Ink, b: Ink) -> None:
    same_xy(a, b)
    for s, r in zip(a.strokes, b.strokes):
        np.testing.assert_allclose(s[:, 2], r[:, 2], atol=1e-6)


# ---- ink model --------------------------------------------------------------------------

def test_ink_points_roundtrip_and_bbox():
    ink = Ink.from_xy([[[0, 0], [3, 4]], [[5, -1]]])
    pts, t = ink.to_points()
    np.testing.assert_array_equal(pts, [[0, 0, 0], [3, 4, 1], [5, -1, 1]])
    np.testing.assert_array_equal(t, [0, 10, 20])
    assert ink.bbox() == (0, -1, 5, 4) and ink.num_points == 3 and ink.num_strokes == 2
    back = Ink.from_points(pts, t)
    same_xyt(ink, back)


@pytest.mark.parametrize("strokes,msg", [
    ([], "no strokes"),
    ([np.zeros((0, 3))], "stroke 0 is empty"),
    ([[[0, 0, 0], [np.nan, 1, 1]]], "NaN"),
    ([[[0, 0, 0]], [[np.inf, 1, 1]]], "stroke 1"),
    ([[[0, 0, 0], [3e6, 1, 1]]], "beyond"),
])
def test_check_names_the_problem(strokes, msg):
    with pytest.raises(BadSampleError, match=msg):
        Ink(strokes, id="f.pot:7").check()


def test_single_point_stroke_is_valid():
    Ink.from_xy([[[1, 2]]]).check()


# ---- .pot -------------------------------------------------------------------------------

def test_pot_hand_built_bytes():
    # label 啊 = GB2312 B0 A1; strokes (10,20)(11,22) | (5,6)
    pts = [(10, 20), (11, 22), (-1, 0), (5, 6), (-1, 0), (-1, -1)]
    body = b"".join(struct.pack("<hh", *p) for p in pts)
    sample = struct.pack("<H", 8 + len(body)) + b"\xb0\xa1\0\0" + struct.pack("<H", 2) + body
    (ink,) = parse_pot(sample, name="w.pot")
    assert ink.label == "啊" and ink.id == "w.pot:0"
    np.testing.assert_array_equal(ink.strokes[0][:, :2], [[10, 20], [11, 22]])
    np.testing.assert_array_equal(ink.strokes[1][:, :2], [[5, 6]])
    assert sample_bytes(ink) == sample  # the writer produces the same layout


def test_pot_roundtrip_file(tmp_path):
    rng = np.random.default_rng(0)
    inks = [make_ink(rng, label=c) for c in ["中", "a", None, "龘"]]
    write_pot(tmp_path / "a.pot", inks)
    back = read_pot(tmp_path / "a.pot")
    assert [b.label for b in back] == ["中", "a", None, "龘"]
    for a, b in zip(inks, back):
        same_xy(a, b)


def test_pot_truncated_keeps_readable_samples(tmp_path):
    rng = np.random.default_rng(1)
    data = b"".join(sample_bytes(make_ink(rng)) for _ in range(3))
    p = tmp_path / "t.pot"
    p.write_bytes(data[:-5])
    with pytest.raises(BadSampleError, match=r"t\.pot: sample 2: truncated"):
        read_pot(p)
    got = read_pot(p, strict=False)
    assert len(got) == 2 and len(got.errors) == 1


def test_pot_bad_sample_in_the_middle_is_skipped():
    rng = np.random.default_rng(2)
    good = [sample_bytes(make_ink(rng, label=c)) for c in "abc"]
    bad = bytearray(good[1])
    bad[6] ^= 0x7  # stroke count field
    got = parse_pot(good[0] + bytes(bad) + good[2], name="m.pot", strict=False)
    assert [g.label for g in got] == ["a", "c"]
    assert "sample 1: stroke count" in str(got.errors[0])


@pytest.mark.parametrize("xy", [[[-1, 0]], [[-1, -1]], [[40000, 0]]])
def test_pot_writer_refuses_unrepresentable_points(xy):
    with pytest.raises(BadSampleError):
        sample_bytes(Ink.from_xy([xy]))


def test_pot_writer_refuses_long_label():
    with pytest.raises(BadSampleError, match="tag code"):
        sample_bytes(Ink.from_xy([[[1, 1]]], label="abcde"))


# ---- InkML ------------------------------------------------------------------------------

def test_inkml_roundtrip_file(tmp_path):
    rng = np.random.default_rng(3)
    inks = [make_ink(rng, label="ab", id="x1", integer=False),
            make_ink(rng, label="文", id="file.pot:3"),  # not an NCName
            make_ink(rng, label=None, id="x1")]  # duplicate id
    write_inkml(tmp_path / "a.inkml", inks)
    back = read_inkml(tmp_path / "a.inkml")
    assert [(b.label, b.id) for b in back] == [("ab", "x1"), ("文", "file.pot:3"), (None, "x1")]
    for a, b in zip(inks, back):
        same_xyt(a, b)


CROHME_LIKE = b"""<ink xmlns="http://www.w3.org/2003/InkML">
<traceFormat><channel name="X" type="decimal"/><channel name="Y" type="decimal"/></traceFormat>
<annotation type="truth">$x+1$</annotation>
<trace id="0">1.5 2, 3 4,5 6</trace>
<trace id="1">7 8</trace>
<traceGroup><traceGroup><annotation type="truth">x</annotation></traceGroup></traceGroup>
</ink>"""


def test_inkml_document_with_root_traces_is_one_sample():
    (ink,) = parse_inkml(CROHME_LIKE, name="/d/e.inkml")
    assert ink.label == "$x+1$" and ink.id == "e"
    np.testing.assert_array_equal(ink.strokes[0], [[1.5, 2, 0], [3, 4, 10], [5, 6, 20]])
    np.testing.assert_array_equal(ink.strokes[1], [[7, 8, 30]])


def test_inkml_channel_order_and_seconds():
    doc = b"""<ink><traceFormat><channel name="T" units="s"/><channel name="Y"/>
    <channel name="X"/><channel name="F"/></traceFormat>
    <traceGroup><trace>5.0 1 2 9, 5.5 3 4 9</trace></traceGroup></ink>"""
    (ink,) = parse_inkml(doc)
    np.testing.assert_allclose(ink.strokes[0], [[2, 1, 0], [4, 3, 500]])


def test_inkml_broken_xml_keeps_complete_groups(tmp_path):
    rng = np.random.default_rng(4)
    data = inkml_bytes([make_ink(rng, label=str(i), id=f"s{i}") for i in range(4)])
    cut = data[: data.rindex(b"<traceGroup") + 30]
    p = tmp_path / "cut.inkml"
    p.write_bytes(cut)
    with pytest.raises(InkpackError, match=r"cut\.inkml: not well-formed XML"):
        read_inkml(p)
    got = read_inkml(p, strict=False)
    assert [g.id for g in got] == ["s0", "s1", "s2"] and len(got.errors) == 1


@pytest.mark.parametrize("trace,msg", [
    ("1 2, 3 x", "not a list of numeric"),
    ("", "empty"),
    ("1 2, 3", "not a list of numeric"),
    ("1 2, nan 4", "NaN"),
    ("1 2, 1e300 4", "beyond"),
])
def test_inkml_bad_trace_names_sample(trace, msg):
    doc = (f'<ink><traceGroup><trace>1 2</trace></traceGroup>'
           f'<traceGroup><trace>{trace}</trace></traceGroup></ink>').encode()
    with pytest.raises(BadSampleError, match=f"f.inkml: sample 1.*{msg}"):
        parse_inkml(doc, name="f.inkml")
    got = parse_inkml(doc, name="f.inkml", strict=False)
    assert len(got) == 1 and len(got.errors) == 1


def test_inkml_recovered_odd_tag_names_do_not_crash():
    # found by fuzzing: lxml's recovering parser keeps tags that etree.QName rejects
    doc = b'<ink><traceGroup-xml:id="a"><trace>1 2</trace></traceGroup><traceGroup'
    got = parse_inkml(doc, name="odd.inkml", strict=False)
    assert len(got.errors) == 1 and "odd.inkml" in str(got.errors[0])


# ---- IAM-OnDB ---------------------------------------------------------------------------

IAM_XML = b"""<?xml version="1.0" encoding="ISO-8859-1"?>
<WhiteboardCaptureSession><WhiteboardDescription><SensorLocation corner="top_left"/>
</WhiteboardDescription><StrokeSet>
<Stroke colour="black" start_time="769.05" end_time="769.06">
<Point x="1073" y="1058" time="769.05"/><Point x="1072" y="1085" time="769.06"/></Stroke>
<Stroke colour="black" start_time="769.5" end_time="769.5">
<Point x="1200" y="1000" time="769.5"/></Stroke>
</StrokeSet></WhiteboardCaptureSession>"""


def test_iamondb_xml_hand_built(tmp_path):
    p = tmp_path / "a01-000u-01.xml"
    p.write_bytes(IAM_XML)
    ink = read_iamondb_xml(p, label="A MOVE")
    assert ink.id == "a01-000u-01" and ink.label == "A MOVE"
    np.testing.assert_allclose(ink.strokes[0], [[1073, 1058, 0], [1072, 1085, 10]], atol=1e-6)
    np.testing.assert_allclose(ink.strokes[1], [[1200, 1000, 450]], atol=1e-6)


def test_iamondb_xml_roundtrip(tmp_path):
    ink = make_ink(np.random.default_rng(5), label=None, id="b02-011-03", integer=False)
    write_iamondb_xml(tmp_path / "b02-011-03.xml", ink)
    back = read_iamondb_xml(tmp_path / "b02-011-03.xml")
    same_xyt(ink, back)
    assert back.id == "b02-011-03"


def test_iamondb_xml_defects(tmp_path):
    bad = IAM_XML.replace(b' time="769.06"', b"")
    (tmp_path / "a.xml").write_bytes(bad)
    (tmp_path / "b.xml").write_bytes(IAM_XML[:200])
    (tmp_path / "c.xml").write_bytes(IAM_XML)
    with pytest.raises(BadSampleError, match=r"a\.xml: stroke 0: .*'time'"):
        read_iamondb_xml(tmp_path / "a.xml")
    got = read_iamondb_xmls([tmp_path / n for n in ("a.xml", "b.xml", "c.xml")], strict=False)
    assert [g.id for g in got] == ["c"] and len(got.errors) == 2
    assert "b.xml: not well-formed" in str(got.errors[1])
    with pytest.raises(BadSampleError, match="stroke 1 has no points"):
        parse_iamondb_xml(IAM_XML.replace(b'<Point x="1200" y="1000" time="769.5"/>', b""))


def test_npz_roundtrip_and_layout(tmp_path):
    rng = np.random.default_rng(6)
    inks = [make_ink(rng, label=f"line {i}", id=f"a0{i}-000u-0{i}") for i in range(3)]
    p = tmp_path / "x.npz"
    write_iamondb_npz(p, inks)
    d = np.load(p)
    assert d["points"].dtype == np.int16 and d["times_ms"].dtype == np.int32
    assert list(d["forms"]) == ["a00-000u", "a01-000u", "a02-000u"]
    assert list(d["groups"]) == ["a00", "a01", "a02"]
    assert d["offsets"][-1] == sum(i.num_points for i in inks)
    back = read_iamondb_npz(p)
    assert [b.label for b in back] == [f"line {i}" for i in range(3)]
    for a, b in zip(inks, back):
        same_xyt(a, b)


def test_npz_bad_line_and_damaged_file(tmp_path):
    inks = [make_ink(np.random.default_rng(i), id=f"l{i}") for i in range(3)]
    p = tmp_path / "x.npz"
    write_iamondb_npz(p, inks)
    d = dict(np.load(p))
    d["points"][d["offsets"][2] - 1, 2] = 0  # line 1 loses its final pen_end
    with open(p, "wb") as f:
        np.savez(f, **d)
    with pytest.raises(BadSampleError, match=r"x\.npz: line 1: last point"):
        read_iamondb_npz(p)
    got = read_iamondb_npz(p, strict=False)
    assert [g.id for g in got] == ["l0", "l2"]
    p.write_bytes(p.read_bytes()[:300])
    with pytest.raises(InkpackError, match=r"x\.npz: not a readable npz"):
        IamOnDbNpz(p)


@pytest.mark.skipif(not (SHARED / "iamondb" / "val.npz").exists(), reason="shared data absent")
def test_real_iamondb_npz_reads_strictly():
    d = IamOnDbNpz(SHARED / "iamondb" / "val.npz")
    raw = np.load(SHARED / "iamondb" / "val.npz")
    for i in (0, len(d) - 1):
        ink = d[i]
        a, b = raw["offsets"][i], raw["offsets"][i + 1]
        assert ink.num_points == b - a and ink.num_strokes == raw["points"][a:b, 2].sum()
        assert ink.id == raw["ids"][i] and ink.label == raw["texts"][i]


# ---- property-based ---------------------------------------------------------------------

def ink_strategy(integer: bool, lo: float, hi: float, label=st.none()):
    coord = (st.integers(int(lo), int(hi)).map(float) if integer
             else st.floats(lo, hi, allow_nan=False, allow_infinity=False))
    stroke = st.lists(st.tuples(coord, coord), min_size=1, max_size=15)

    @st.composite
    def build(draw):
        strokes = draw(st.lists(stroke, min_size=1, max_size=5))
        steps = draw(st.lists(st.integers(0, 40), min_size=sum(map(len, strokes)),
                              max_size=sum(map(len, strokes))))
        t = np.cumsum(steps).astype(float)
        t -= t[0]
        out, k = [], 0
        for s in strokes:
            out.append(np.column_stack([np.array(s), t[k:k + len(s)]]))
            k += len(s)
        return Ink(out, label=draw(label), id="p")

    return build()


POT_LABEL = st.one_of(st.none(), st.characters(exclude_categories=("Cs",), exclude_characters="\0"))
XML_TEXT = st.text(st.characters(exclude_categories=("Cs", "Cc")), min_size=1, max_size=8).map(
    str.strip).filter(bool)


@HYP
@given(ink_strategy(True, 0, 32767, POT_LABEL))
def test_pot_property_roundtrip(ink):
    (back,) = parse_pot(sample_bytes(ink))
    assert back.label == ink.label
    same_xy(ink, back)


@HYP
@given(ink_strategy(False, -1e5, 1e5, st.one_of(st.none(), XML_TEXT)))
def test_inkml_property_roundtrip(ink):
    (back,) = parse_inkml(inkml_bytes([ink]))
    assert back.label == ink.label
    same_xyt(ink, back)


@HYP
@given(ink_strategy(False, -1e5, 1e5))
def test_iamondb_xml_property_roundtrip(ink):
    same_xyt(ink, parse_iamondb_xml(iamondb_xml_bytes(ink)))


@HYP
@given(ink_strategy(True, -32768, 32767, st.one_of(st.none(), XML_TEXT)))
def test_npz_property_roundtrip(tmp_path, ink):
    write_iamondb_npz(tmp_path / "p.npz", [ink])
    (back,) = read_iamondb_npz(tmp_path / "p.npz")
    assert back.label == (ink.label or "")
    same_xyt(ink, back)


def _damage(data: bytes, draw) -> bytes:
    b = bytearray(data[: draw(st.integers(0, len(data)))])
    for _ in range(draw(st.integers(0, 4))):
        if b:
            b[draw(st.integers(0, len(b) - 1))] = draw(st.integers(0, 255))
    return bytes(b)


def _only_inkpack_errors(fn) -> None:
    try:
        fn()
    except InkpackError:
        pass


@HYP
@given(st.data())
def test_damaged_bytes_raise_only_inkpack_errors(tmp_path, data):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    inks = [make_ink(rng, label="字", id=f"a01-00{i}-01") for i in range(2)]
    pot = _damage(b"".join(sample_bytes(i) for i in inks), data.draw)
    ixml = _damage(inkml_bytes(inks), data.draw)
    oxml = _damage(iamondb_xml_bytes(inks[0]), data.draw)
    write_iamondb_npz(tmp_path / "ok.npz", inks)
    (tmp_path / "d.npz").write_bytes(_damage((tmp_path / "ok.npz").read_bytes(), data.draw))
    for strict in (True, False):
        _only_inkpack_errors(lambda: parse_pot(pot, strict=strict))
        _only_inkpack_errors(lambda: parse_inkml(ixml, strict=strict))
        _only_inkpack_errors(lambda: IamOnDbNpz(tmp_path / "d.npz").read_all(strict=strict))
    _only_inkpack_errors(lambda: parse_iamondb_xml(oxml))
