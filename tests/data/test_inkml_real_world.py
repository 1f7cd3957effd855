"""InkML as corpora and tools write it: CROHME's non-NCName xml:ids, per-trace contexts and
trace formats, several samples per file (nested or by traceView reference), difference-encoded
traces, and entities that must stay unexpanded."""

from __future__ import annotations

import numpy as np
import pytest

from inkpack.data.formats.inkml import parse_inkml, read_inkml
from inkpack.errors import BadSampleError, InkpackError

CROHME = b"""<?xml version="1.0" encoding="UTF-8"?>
<ink xmlns="http://www.w3.org/2003/InkML">
<traceFormat><channel name="X" type="decimal"/><channel name="Y" type="decimal"/></traceFormat>
<annotation type="truth">$a^2$</annotation>
<annotation type="UI">2011_IVC_DEPT_F01_E01</annotation>
<trace xml:id="0">10 20, 11 21, 12 22</trace>
<trace xml:id="1">30 40, 31 41</trace>
<trace xml:id="1">50 60</trace>
<traceGroup xml:id="3">
  <annotation type="truth">Segmentation</annotation>
  <traceGroup xml:id="4"><annotation type="truth">a</annotation><traceView traceDataRef="0"/></traceGroup>
  <traceGroup xml:id="5"><annotation type="truth">2</annotation><traceView traceDataRef="1"/></traceGroup>
</traceGroup>
</ink>"""


def test_crohme_xml_ids_that_are_not_ncnames_are_read_strictly(tmp_path):
    p = tmp_path / "expr.inkml"
    p.write_bytes(CROHME)
    (ink,) = read_inkml(p)  # strict: no error raised
    assert ink.label == "$a^2$" and ink.id == "expr"
    np.testing.assert_array_equal(ink.strokes[0][:, :2], [[10, 20], [11, 21], [12, 22]])
    np.testing.assert_array_equal(ink.strokes[1][:, :2], [[30, 40], [31, 41]])
    np.testing.assert_array_equal(ink.strokes[2][:, :2], [[50, 60]])


def test_real_syntax_errors_are_still_errors():
    with pytest.raises(InkpackError, match="not well-formed XML"):
        parse_inkml(CROHME.replace(b"</ink>", b"</inx>"), name="e.inkml")


MULTI_BY_REFERENCE = b"""<ink xmlns="http://www.w3.org/2003/InkML">
<trace xml:id="t1">0 0, 1 1</trace>
<trace xml:id="t2">2 2, 3 3</trace>
<trace xml:id="t3">4 4, 5 5, 6 6</trace>
<traceGroup><annotation type="type">Document</annotation>
  <traceGroup xml:id="w1"><annotation type="transcription">hello</annotation>
    <traceView traceDataRef="#t2"/><traceView traceDataRef="#t1"/></traceGroup>
  <traceGroup xml:id="w2"><annotation type="transcription">world</annotation>
    <traceView traceDataRef="#t3"/></traceGroup>
</traceGroup>
</ink>"""


def test_samples_by_trace_view_reference_give_one_ink_each():
    inks = parse_inkml(MULTI_BY_REFERENCE, name="doc.inkml")
    assert [(i.label, i.id) for i in inks] == [("hello", "w1"), ("world", "w2")]
    np.testing.assert_array_equal(inks[0].strokes[0][:, :2], [[2, 2], [3, 3]])
    np.testing.assert_array_equal(inks[0].strokes[1][:, :2], [[0, 0], [1, 1]])
    np.testing.assert_array_equal(inks[1].strokes[0][:, :2], [[4, 4], [5, 5], [6, 6]])


def test_dangling_trace_view_names_the_sample():
    doc = MULTI_BY_REFERENCE.replace(b'"#t3"', b'"#t9"')
    with pytest.raises(BadSampleError, match=r"doc.inkml: sample 1: traceView refers to '#t9'"):
        parse_inkml(doc, name="doc.inkml")
    assert [i.label for i in parse_inkml(doc, name="doc.inkml", strict=False)] == ["hello"]


def test_nested_labelled_groups_in_an_unlabelled_wrapper_are_samples():
    doc = b"""<ink><traceGroup>
      <traceGroup><annotation type="truth">ab</annotation><trace>1 1, 2 2</trace></traceGroup>
      <traceGroup><annotation type="truth">cd</annotation><trace>3 3</trace><trace>4 4</trace></traceGroup>
    </traceGroup><traceGroup><annotation type="truth">ef</annotation><trace>5 5</trace></traceGroup></ink>"""
    inks = parse_inkml(doc, name="m.inkml")
    assert [i.label for i in inks] == ["ab", "cd", "ef"]
    assert [i.id for i in inks] == ["m:0", "m:1", "m:2"]
    assert [i.num_strokes for i in inks] == [1, 2, 1]


CONTEXTS = b"""<ink xmlns="http://www.w3.org/2003/InkML">
<definitions>
  <traceFormat xml:id="xyt"><channel name="X"/><channel name="Y"/><channel name="T"/></traceFormat>
  <traceFormat xml:id="tyx"><channel name="T" units="s"/><channel name="Y"/><channel name="X"/>
    <intermittentChannels><channel name="F"/></intermittentChannels></traceFormat>
  <context xml:id="ctxA" traceFormatRef="#xyt"/>
  <context xml:id="ctxB" traceFormatRef="#tyx"/>
  <context xml:id="ctxC" contextRef="#ctxB"/>
  <context xml:id="ctxD"><traceFormat><channel name="Y"/><channel name="X"/><channel name="T"/></traceFormat></context>
</definitions>
<traceGroup contextRef="#ctxA">
  <annotation type="truth">x</annotation>
  <trace>1 2 0, 3 4 10</trace>
  <trace contextRef="#ctxB">0.5 20 10 7, 0.75 40 30</trace>
  <trace contextRef="#ctxC">1.0 60 50</trace>
  <trace contextRef="#ctxD">80 70 1100</trace>
</traceGroup>
</ink>"""


def test_per_trace_context_and_trace_format():
    (ink,) = parse_inkml(CONTEXTS)
    np.testing.assert_allclose(ink.strokes[0], [[1, 2, 0], [3, 4, 10]])  # group's context: X Y T (ms)
    np.testing.assert_allclose(ink.strokes[1], [[10, 20, 500], [30, 40, 750]])  # T(s) Y X
    np.testing.assert_allclose(ink.strokes[2], [[50, 60, 1000]])  # inherited through ctxC
    np.testing.assert_allclose(ink.strokes[3], [[70, 80, 1100]])  # inline traceFormat: Y X T


def test_unknown_context_reference_is_a_bad_sample():
    doc = CONTEXTS.replace(b'contextRef="#ctxC"', b'contextRef="#nope"')
    with pytest.raises(BadSampleError, match=r"sample 0: contextRef='#nope' does not name a <context>"):
        parse_inkml(doc, name="c.inkml")


def test_difference_encoded_trace_as_in_the_inkml_spec():
    doc = b"""<ink><traceGroup><trace>1125 18432,'23'43,"7"-8,3-5,+4+3,-3+6</trace>
    <trace>#10 #1F, !5 'T</trace></traceGroup></ink>"""
    (ink,) = parse_inkml(doc)
    np.testing.assert_array_equal(ink.strokes[0][:, :2], [[1125, 18432], [1148, 18475], [1178, 18510],
                                                          [1211, 18540], [1248, 18573], [1282, 18612]])
    np.testing.assert_array_equal(ink.strokes[1][:, :2], [[16, 31], [5, 32]])


def test_entities_are_never_expanded_nor_fetched(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("7 7")
    xxe = (f'<!DOCTYPE ink [<!ENTITY x SYSTEM "file://{secret}">]>'
           f"<ink><traceGroup><trace>1 1, &x;</trace></traceGroup></ink>").encode()
    got = parse_inkml(xxe, name="x.inkml", strict=False)
    assert all(not np.any(s[:, :2] == 7) for ink in got for s in ink.strokes)
    lol = (b'<!DOCTYPE ink [<!ENTITY a "1 1, 1 1, 1 1, 1 1"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">'
           b'<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;"><!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;">]>'
           b"<ink><traceGroup><trace>2 2, &d;</trace></traceGroup></ink>")
    got = parse_inkml(lol, name="lol.inkml", strict=False)
    assert sum(ink.num_points for ink in got) <= 1
