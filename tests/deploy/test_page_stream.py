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
