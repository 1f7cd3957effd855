"""Page recognition streams line by line, refuses oversized pages before cropping, writes the
main TextEquiv, keeps the DOCTYPE, and fills whole folders of PAGE-XML skipping bad pages."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from lxml import etree

from page_builders import NS, box_slice, line, noise_image, page_doc, write
from inkpack.deploy.page import prepare_page, recognize_page, recognize_pagexml
from inkpack.errors import InputError, InputTooLargeError

B0, B1, B2 = (20, 20, 200, 60), (20, 100, 380, 140), (30, 200, 300, 250)
P19 = NS.format("2019-07-15")


class Spy:
    """A recognizer that names each crop by its mean gray, and records batch sizes."""

    def __init__(self):
        self.calls: list[int] = []

    def __call__(self, crops):
        self.calls.append(len(crops))
        return [f"{c.shape[1]}x{c.shape[0]}:{c.mean():.3f}" for c in crops]


def _name(a: np.ndarray) -> str:
    return f"{a.shape[1]}x{a.shape[0]}:{a.mean():.3f}"


def _unicode(xml: bytes, ns: str = P19) -> dict[str, list[tuple[str | None, str]]]:
    root = etree.fromstring(xml)
    return {tl.get("id"): [(te.get("index"), te.findtext(f"{{{ns}}}Unicode")) for te in tl.findall(f"{{{ns}}}TextEquiv")]
            for tl in root.iter(f"{{{ns}}}TextLine")}


def test_streams_in_small_batches_and_writes_the_main_textequiv(tmp_path):
    gray = noise_image(tmp_path / "p.png")
    body = ('<TextRegion id="r">'
            + line("a", B0, None, extra='<TextEquiv index="2"><Unicode>alt</Unicode></TextEquiv>'
                                       '<TextEquiv index="1"><Unicode>old</Unicode></TextEquiv>')
            + line("b", B1, None) + line("c", B2, "gt") + "</TextRegion>")
    prolog = '<!DOCTYPE PcGts SYSTEM "pagecontent.dtd"><?producer test?><!-- keep me -->'
    xml = page_doc("2019-07-15", "p.png", body, prolog=prolog).encode()
    spy = Spy()
    res = recognize_page(gray, xml, spy, batch_size=2)
    assert spy.calls == [2, 1]  # never more than batch_size crops alive in one call
    want = [_name(box_slice(gray, b)) for b in (B0, B1, B2)]
    assert res.texts == want and res.line_ids == ["a", "b", "c"] and res.errors == []
    got = _unicode(res.xml)
    assert got["a"] == [("2", "alt"), ("1", want[0])]  # lowest index is main: written there, alt kept
    assert got["b"] == [(None, want[1])] and got["c"] == [(None, want[2])]
    assert b'<!DOCTYPE PcGts SYSTEM "pagecontent.dtd">' in res.xml
    assert b"<?producer test?>" in res.xml and b"<!-- keep me -->" in res.xml


def test_line_limit_and_crop_area_limit_refuse_before_cropping(tmp_path):
    gray = noise_image(tmp_path / "p.png")
    many = '<TextRegion id="r">' + "".join(line(f"l{i}", B0, None) for i in range(31)) + "</TextRegion>"
    spy = Spy()
    with pytest.raises(InputTooLargeError, match="too large: 31 TextLines is over the limit of 30"):
        recognize_page(gray, page_doc("2019-07-15", "p.png", many).encode(), spy, max_lines=30)
    full = '<TextRegion id="r">' + "".join(line(f"f{i}", (0, 0, 399, 299), None) for i in range(26)) + "</TextRegion>"
    with pytest.raises(InputTooLargeError, match="too large: its line boxes cover 26x the page"):
        recognize_page(gray, page_doc("2019-07-15", "p.png", full).encode(), spy)
    assert spy.calls == []


def test_memory_is_one_batch_of_crops_not_the_whole_page(tmp_path):
    """20 full-page lines of a 3000x2000 page: holding all crops would be 120 MB, plus masks."""
    gray = np.random.default_rng(0).integers(0, 256, (2000, 3000), dtype=np.uint8)
    full = '<TextRegion id="r">' + "".join(line(f"f{i}", (0, 0, 2999, 1999), None) for i in range(20)) + "</TextRegion>"
    xml = page_doc("2019-07-15", "p.png", full, w=3000, h=2000).encode()
    tracemalloc.start()
    try:
        res = recognize_page(gray, xml, lambda crops: ["x"] * len(crops), batch_size=1)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(res.texts) == 20
    assert peak < 40e6, f"peak {peak / 1e6:.0f} MB"  # one crop (6 MB) and its mask, not 20 of them


def test_proportional_resize_is_scaled_and_old_interface_still_works(tmp_path):
    gray = noise_image(tmp_path / "p.png", w=800, h=600)
    body = '<TextRegion id="r">' + line("a", B0, None) + line("bad", (5, 5, 5, 5), None) + "</TextRegion>"
    xml = page_doc("2019-07-15", "p.png", body, w=400, h=300).encode()
    job = prepare_page(gray, xml)
    x0, y0, x1, y1 = (2 * v for v in B0)
    assert len(job.crops) == 1 and len(job.errors) == 1
    np.testing.assert_array_equal(job.crops[0], gray[y0 : y1 + 1, x0 : x1 + 1])
    with pytest.raises(InputError, match="400x300 image but the uploaded image is 300x300"):
        recognize_page(gray[:300, :300], xml, Spy())


def test_folder_is_filled_page_by_page_and_bad_pages_are_counted(tmp_path):
    src = tmp_path / "pages"
    gray = noise_image(src / "one.png")
    body = '<TextRegion id="r">' + line("a", B0, "old") + "</TextRegion>"
    write(src / "one.xml", page_doc("2019-07-15", "one.png", body))
    write(src / "two.xml", page_doc("2019-07-15", "nowhere.png", body))
    write(src / "mets.xml", "<mets/>")
    seen = []
    rep = recognize_pagexml(str(src), Spy(), str(tmp_path / "out"), on_page=lambda f, r: seen.append(r.texts))
    assert rep.pages == 1 and rep.lines == 1 and len(rep.skipped_pages) == 2
    assert "two.xml: page image 'nowhere.png' not found" in rep.skipped_pages[1]
    assert rep.outputs == [str(tmp_path / "out" / "one.xml")]
    assert _unicode((tmp_path / "out" / "one.xml").read_bytes())["a"] == [(None, _name(box_slice(gray, B0)))]
    assert seen == [[_name(box_slice(gray, B0))]]
    with pytest.raises(InputError, match="two.xml: page image"):  # one file given: its error, one line
        recognize_pagexml(str(src / "two.xml"), Spy(), None)
    single = recognize_pagexml(str(src / "one.xml"), Spy(), str(tmp_path / "filled.xml"))
    assert single.outputs == [str(tmp_path / "filled.xml")]


def test_old_schema_gets_no_conf_attribute(tmp_path):
    gray = noise_image(tmp_path / "p.png")
    xml = page_doc("2010-03-19", "p.png", '<TextRegion id="r">' + line("a", B0, None, True) + "</TextRegion>").encode()

    class R:
        text, confidences = "hi", [0.5, 0.7]

    out = recognize_page(gray, xml, lambda crops: [R()] * len(crops)).xml
    te = etree.fromstring(out).find(".//{%s}TextEquiv" % NS.format("2010-03-19"))
    assert te.get("conf") is None and te.findtext("{%s}Unicode" % NS.format("2010-03-19")) == "hi"
    xml19 = page_doc("2019-07-15", "p.png", '<TextRegion id="r">' + line("a", B0, None) + "</TextRegion>").encode()
    te = etree.fromstring(recognize_page(gray, xml19, lambda crops: [R()] * len(crops)).xml).find(f".//{{{P19}}}TextEquiv")
    assert te.get("conf") == "0.6000"


def test_a_refused_line_is_skipped_and_the_rest_of_the_page_filled(tmp_path):
    gray = noise_image(tmp_path / "p.png")
    body = '<TextRegion id="r">' + line("a", B0, None) + line("wide", B1, None) + line("c", B2, None) + "</TextRegion>"
    xml = page_doc("2019-07-15", "p.png", body).encode()

    def rec(crops):
        if any(c.shape[1] > 300 for c in crops):  # B1 is 361 px wide
            raise InputTooLargeError("line too large: 361 px is over the limit")
        return [_name(c) for c in crops]

    res = recognize_page(gray, xml, rec)
    assert res.line_ids == ["a", "c"] and res.texts == [_name(box_slice(gray, B0)), _name(box_slice(gray, B2))]
    assert res.errors == ["TextLine wide: line too large: 361 px is over the limit"]
    assert _unicode(res.xml)["wide"] == []  # left as it was


def test_output_paths_are_checked_before_any_work(tmp_path):
    noise_image(tmp_path / "one.png")
    write(tmp_path / "one.xml", page_doc("2019-07-15", "one.png", '<TextRegion id="r">' + line("a", B0, "x") + "</TextRegion>"))
    spy = Spy()
    with pytest.raises(InputError, match="would overwrite the input"):
        recognize_pagexml(str(tmp_path), spy, str(tmp_path))
    with pytest.raises(InputError, match="would overwrite the input"):
        recognize_pagexml(str(tmp_path / "one.xml"), spy, str(tmp_path / "one.xml"))
    (tmp_path / "afile").write_text("")
    with pytest.raises(InputError, match=r"afile/sub: cannot create the output folder \(Not a directory\)"):
        recognize_pagexml(str(tmp_path), spy, str(tmp_path / "afile" / "sub"))
    assert spy.calls == []
    rep = recognize_pagexml(str(tmp_path / "one.xml"), spy, str(tmp_path / "filled"))  # not .xml: a folder
    assert rep.outputs == [str(tmp_path / "filled" / "one.xml")] and not list((tmp_path / "filled").glob("*.part"))


def test_damaged_pages_give_one_line_errors_only():
    """Random byte damage (found an OverflowError from imageWidth="1e309" before MAX_COORD)."""
    import random

    from inkpack.errors import InkpackError

    ro = ('<ReadingOrder><OrderedGroup id="g"><RegionRefIndexed index="0" regionRef="r"/>'
          '<OrderedGroupIndexed index="1" id="h" regionRef="q"><RegionRefIndexed index="x" regionRef="r"/>'
          "</OrderedGroupIndexed></OrderedGroup></ReadingOrder>")
    body = ('<TextRegion id="r" custom="readingOrder {index:3;}">'
            + line("a", B0, "x", extra='<TextEquiv index="2"><Unicode>y</Unicode></TextEquiv>')
            + line("b", B1, None, True) + "</TextRegion>")
    base = page_doc("2010-03-19", "p.png", body, reading_order=ro).encode()
    gray = np.zeros((300, 400), np.uint8)
    rng = random.Random(0)
    for _ in range(600):
        b = bytearray(base)
        for _ in range(rng.randint(1, 6)):
            k, op = rng.randrange(len(b)), rng.random()
            if op < 0.4:
                b[k] = rng.randrange(256)
            elif op < 0.7:
                del b[k : k + rng.randint(1, 20)]
            else:
                b[k:k] = rng.choice([b'"', b"<", b"-1", b"1e309", b"1e30", b"nan", b",", b" ", b"/>", b"0"])
        try:
            recognize_page(gray, bytes(b), lambda crops: ["t"] * len(crops))
        except InkpackError as e:
            assert "\n" not in str(e)


def test_crops_recognizer_runs_one_pass_per_batch(tmp_path):
    from inkpack.deploy.page import crops_recognizer

    class Rec:
        def __init__(self):
            self.passes = []

        def prepare_input(self, crop):
            return crop.shape

        def run_prepared(self, items):
            self.passes.append(list(items))
            return [f"{w}x{h}" for h, w in items]

    gray = noise_image(tmp_path / "p.png")
    xml = page_doc("2019-07-15", "p.png", '<TextRegion id="r">' + line("a", B0, None) + line("b", B1, None)
                   + line("c", B2, None) + "</TextRegion>").encode()
    rec = Rec()
    res = recognize_page(gray, xml, crops_recognizer(rec), batch_size=2)
    assert res.texts == ["181x41", "361x41", "271x51"]  # box sizes (x1-x0+1, y1-y0+1) of B0, B1, B2
    assert [len(p) for p in rec.passes] == [2, 1]
