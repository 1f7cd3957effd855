"""PAGE-XML as Transkribus, eScriptorium, OCR-D and Aletheia write it, every schema year:
coordinates, texts, reading order, image paths, declared sizes, bad pages in a folder.

Each page image is noise, so ``crop == img[y0:y1+1, x0:x1+1]`` proves a line was cut from
exactly the box written in the XML.
"""

from __future__ import annotations

import numpy as np
import pytest

from page_builders import YEARS, box_slice, coords, line, noise_image, page_doc, write
from inkpack.data.formats.pagexml import parse_page, read_pagexml_source, text_lines
from inkpack.data.lines import read_records
from inkpack.errors import InkpackError, InputError

B0, B1, B2 = (20, 20, 200, 60), (20, 100, 380, 140), (30, 200, 300, 250)


@pytest.mark.parametrize("year", YEARS)
def test_every_schema_year_gives_the_written_boxes_and_texts(tmp_path, year):
    old = year.startswith(("2009", "2010"))  # these years write <Point x= y=/> children
    img = noise_image(tmp_path / "p.png")
    body = ('<TextRegion id="r1">' + coords((0, 0, 399, 299), old)
            + line("l1", B0, "first", old) + line("l2", B1, "second line", old) + "</TextRegion>")
    write(tmp_path / "p.xml", page_doc(year, "p.png", body))
    recs, errs = read_pagexml_source(str(tmp_path / "p.xml"))
    assert errs == []
    assert [r.text for r in recs] == ["first", "second line"]
    assert [r.id for r in recs] == ["p_l1", "p_l2"]
    np.testing.assert_array_equal(recs[0].crop, box_slice(img, B0))
    np.testing.assert_array_equal(recs[1].crop, box_slice(img, B1))


def test_transkribus_reading_order_custom_indices_and_image_in_parent(tmp_path):
    img = noise_image(tmp_path / "doc" / "0001.png", seed=1)
    ro = ('<ReadingOrder><OrderedGroup id="ro_1" caption="Regions reading order">'
          '<RegionRefIndexed index="1" regionRef="r_top"/><RegionRefIndexed index="0" regionRef="r_bottom"/>'
          "</OrderedGroup></ReadingOrder>")
    body = ('<TextRegion id="r_top" custom="readingOrder {index:1;}">' + coords((0, 0, 399, 150))
            + line("t1", B1, "top second", attrs='custom="readingOrder {index:1;} structure {type:para;}"')
            + line("t0", B0, "top first", attrs='custom="readingOrder {index:0;}"')
            + "<TextEquiv><Unicode>region text, not a line</Unicode></TextEquiv></TextRegion>"
            + '<TextRegion id="r_bottom" custom="readingOrder {index:0;}">' + coords((0, 151, 399, 299))
            + line("b0", B2, "bottom", attrs='custom="readingOrder {index:0;}"') + "</TextRegion>")
    write(tmp_path / "doc" / "page" / "0001.xml", page_doc("2013-07-15", "0001.png", body, reading_order=ro))
    recs, errs = read_pagexml_source(str(tmp_path / "doc" / "page"))
    assert errs == []
    assert [r.text for r in recs] == ["bottom", "top first", "top second"]
    assert recs[0].path == str(tmp_path / "doc" / "0001.png")
    for r, box in zip(recs, (B2, B0, B1)):
        np.testing.assert_array_equal(r.crop, box_slice(img, box))


def test_transkribus_custom_order_without_reading_order_element(tmp_path):
    noise_image(tmp_path / "p.png")
    body = ('<TextRegion id="a" custom="readingOrder {index:1;}">' + line("x", B0, "later") + "</TextRegion>"
            '<TextRegion id="b" custom="readingOrder {index:0;}">' + line("y", B1, "earlier") + "</TextRegion>")
    write(tmp_path / "p.xml", page_doc("2013-07-15", "p.png", body))
    recs, _ = read_pagexml_source(str(tmp_path / "p.xml"))
    assert [r.text for r in recs] == ["earlier", "later"]


def test_escriptorium_main_textequiv_by_index_and_baselines(tmp_path):
    img = noise_image(tmp_path / "IMG_0001.png", seed=2)
    alt = ('<TextEquiv index="2" conf="0.4"><Unicode>alternative</Unicode></TextEquiv>'
           '<TextEquiv index="1" conf="0.9"><PlainText>main</PlainText><Unicode>main reading</Unicode></TextEquiv>')
    body = ('<TextRegion id="eSc_textblock_1">' + coords((0, 0, 399, 299))
            + f'<TextLine id="eSc_line_1">{coords(B0)}<Baseline points="20,55 200,55"/>'
            + '<Word id="w"><TextEquiv><Unicode>word</Unicode></TextEquiv></Word>' + alt + "</TextLine>"
            + f'<TextLine id="eSc_line_2"><Baseline points="20,135 380,135"/>{coords(B1)}'
            + "<TextEquiv><Unicode>plain</Unicode></TextEquiv></TextLine></TextRegion>")
    write(tmp_path / "IMG_0001.xml", page_doc("2019-07-15", "IMG_0001.png", body))
    recs, errs = read_pagexml_source(str(tmp_path))
    assert errs == [] and [r.text for r in recs] == ["main reading", "plain"]
    np.testing.assert_array_equal(recs[1].crop, box_slice(img, B1))


def test_ocrd_workspace_images_at_the_workspace_root_and_nested_groups(tmp_path):
    ws = tmp_path / "ws"
    write(ws / "mets.xml", '<mets:mets xmlns:mets="http://www.loc.gov/METS/"/>')
    img = noise_image(ws / "OCR-D-IMG" / "FILE_0001.png", seed=3)
    ro = ('<ReadingOrder><OrderedGroup id="g0">'
          '<UnorderedGroupIndexed index="1" id="g1"><RegionRef regionRef="r3"/><RegionRef regionRef="tab"/>'
          '</UnorderedGroupIndexed><RegionRefIndexed index="0" regionRef="r1"/></OrderedGroup></ReadingOrder>')
    cell = (20, 160, 100, 190)
    body = (f'<TableRegion id="tab">{coords((0, 150, 399, 199))}<TextRegion id="cell">'
            + line("c1", cell, "cell") + "</TextRegion></TableRegion>"
            + '<TextRegion id="r1">' + line("l1", B0, "one") + "</TextRegion>"
            + '<TextRegion id="r3">' + line("l3", B2, "three") + "</TextRegion>")
    write(ws / "OCR-D-GT-SEG-PAGE" / "FILE_0001.xml",
          page_doc("2019-07-15", "OCR-D-IMG/FILE_0001.png", body, reading_order=ro))
    recs, errs = read_records(str(ws / "OCR-D-GT-SEG-PAGE"))
    assert errs == []
    assert [r.text for r in recs] == ["one", "three", "cell"]
    assert recs[0].path == str(ws / "OCR-D-IMG" / "FILE_0001.png")
    np.testing.assert_array_equal(recs[2].crop, box_slice(img, cell))
    with pytest.raises(InputError, match="only a mets.xml.*PAGE folders"):
        read_pagexml_source(str(ws))


def test_aletheia_2010_points_and_windows_image_path(tmp_path):
    img = noise_image(tmp_path / "scan.png", seed=4)
    ro = ('<ReadingOrder><OrderedGroup id="ro1"><RegionRefIndexed index="0" regionRef="r2"/>'
          '<RegionRefIndexed index="1" regionRef="r1"/></OrderedGroup></ReadingOrder>')
    body = (f'<TextRegion id="r1">{coords((0, 0, 399, 90), True)}' + line("a", B0, "upper", True) + "</TextRegion>"
            f'<TextRegion id="r2">{coords((0, 91, 399, 299), True)}' + line("b", B1, "lower", True) + "</TextRegion>")
    write(tmp_path / "scan.xml", page_doc("2010-03-19", r"C:\Users\me\scans\scan.png", body, reading_order=ro))
    recs, errs = read_pagexml_source(str(tmp_path / "scan.xml"))
    assert errs == [] and [r.text for r in recs] == ["lower", "upper"]
    np.testing.assert_array_equal(recs[0].crop, box_slice(img, B1))
    np.testing.assert_array_equal(recs[1].crop, box_slice(img, B0))


def test_images_dir_option_for_urls_and_elsewhere(tmp_path):
    img = noise_image(tmp_path / "imgs" / "f7.png", seed=5)
    write(tmp_path / "xml" / "f7.xml",
          page_doc("2019-07-15", "https://example.org/iiif/f7.png", '<TextRegion id="r">' + line("l", B0, "x") + "</TextRegion>"))
    with pytest.raises(InputError, match=r"f7.xml: page image .*f7.png.* not found.*--images"):
        read_pagexml_source(str(tmp_path / "xml" / "f7.xml"))
    recs, _ = read_pagexml_source(str(tmp_path / "xml" / "f7.xml"), images_dir=str(tmp_path / "imgs"))
    np.testing.assert_array_equal(recs[0].crop, box_slice(img, B0))


def test_declared_size_scaled_when_proportional_refused_otherwise(tmp_path):
    img = noise_image(tmp_path / "big.png", w=800, h=600, seed=6)  # the declared 400x300, resized 2x
    body = '<TextRegion id="r">' + line("l", B0, "x") + "</TextRegion>"
    write(tmp_path / "big.xml", page_doc("2019-07-15", "big.png", body, w=400, h=300))
    (rec,), _ = read_pagexml_source(str(tmp_path / "big.xml"))
    x0, y0, x1, y1 = (2 * v for v in B0)
    np.testing.assert_array_equal(rec.crop, img[y0 : y1 + 1, x0 : x1 + 1])
    write(tmp_path / "odd.xml", page_doc("2019-07-15", "big.png", body, w=400, h=400))
    with pytest.raises(InputError, match=r"odd.xml: the XML is for a 400x400 image but image .*big.png is 800x600"):
        read_pagexml_source(str(tmp_path / "odd.xml"))
    write(tmp_path / "rot.xml", page_doc("2019-07-15", "big.png", body, w=600, h=800))
    with pytest.raises(InputError, match="rotated"):
        read_pagexml_source(str(tmp_path / "rot.xml"))


def test_a_bad_page_is_skipped_and_counted_never_aborting_the_folder(tmp_path):
    noise_image(tmp_path / "good.png")
    body = '<TextRegion id="r">' + line("l", B0, "fine") + "</TextRegion>"
    write(tmp_path / "a_good.xml", page_doc("2019-07-15", "good.png", body))
    write(tmp_path / "b_noimage.xml", page_doc("2019-07-15", "missing.png", body))
    write(tmp_path / "c_broken.xml", "<PcGts><Page")
    write(tmp_path / "d_wrongsize.xml", page_doc("2019-07-15", "good.png", body, w=100, h=100))
    write(tmp_path / "mets.xml", '<mets:mets xmlns:mets="http://www.loc.gov/METS/"/>')
    (tmp_path / "e_badimage.png").write_bytes(b"not a png")
    write(tmp_path / "e_badimage.xml", page_doc("2019-07-15", "e_badimage.png", body))
    recs, errs = read_pagexml_source(str(tmp_path))
    assert [r.text for r in recs] == ["fine"]
    assert len(errs) == 5 and all(e.startswith("skipped page: ") for e in errs)
    for frag, e in zip(["b_noimage.xml: page image 'missing.png' not found", "c_broken.xml: malformed XML",
                        "d_wrongsize.xml: the XML is for a 100x100", "e_badimage.png: not an image",
                        "mets.xml: a METS file"], errs):
        assert frag in e
    with pytest.raises(InkpackError, match="c_broken.xml: malformed XML"):  # one file given: its error
        read_pagexml_source(str(tmp_path / "c_broken.xml"))


def test_entities_are_not_expanded(tmp_path):
    noise_image(tmp_path / "p.png")
    secret = tmp_path / "secret.txt"
    secret.write_text("TOPSECRET")
    prolog = f'<!DOCTYPE PcGts [<!ENTITY x SYSTEM "file://{secret}"><!ENTITY y "yy">]>'
    body = '<TextRegion id="r">' + line("l", B0, "a&x;&y;b") + "</TextRegion>"
    write(tmp_path / "p.xml", page_doc("2019-07-15", "p.png", body, prolog=prolog))
    (rec,), _ = read_pagexml_source(str(tmp_path / "p.xml"))
    assert "TOPSECRET" not in rec.text and "yy" not in rec.text


def test_lines_without_reading_order_keep_document_order(tmp_path):
    noise_image(tmp_path / "p.png")
    body = ('<TextRegion id="r2">' + line("z", B1, "1") + "</TextRegion>"
            '<TextRegion id="r1">' + line("y", B0, "2") + line("x", B2, "3") + "</TextRegion>")
    write(tmp_path / "p.xml", page_doc("2017-07-15", "p.png", body))
    _, page = parse_page(str(tmp_path / "p.xml"))
    assert [el.get("id") for el in text_lines(page)] == ["z", "y", "x"]
