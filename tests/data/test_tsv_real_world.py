"""TSV manifests as editors save them: a UTF-8 BOM, CRLF line ends, Unicode line separators
inside a transcription; and a row with an extra tab column is an error, not part of the text."""

from __future__ import annotations

import pytest

from inkpack.data.formats.tsv import read_tsv
from inkpack.errors import InkpackError


def test_bom_and_crlf_are_accepted(tmp_path):
    p = tmp_path / "excel.tsv"
    p.write_bytes("\ufeffimage\ttext\r\na.png\tfirst\r\nsub/b.png\tzweite Zeile\r\n".encode("utf-8"))
    recs, errs = read_tsv(str(p))
    assert errs == []
    assert [(r.path, r.text) for r in recs] == [(str(tmp_path / "a.png"), "first"),
                                                (str(tmp_path / "sub" / "b.png"), "zweite Zeile")]


def test_extra_tab_columns_are_an_error_not_text(tmp_path):
    p = tmp_path / "m.tsv"
    p.write_text("image\ttext\na.png\tgood\nb.png\tpart one\tpart two\nc.png\tok\t\n", encoding="utf-8")
    recs, errs = read_tsv(str(p))
    assert [r.text for r in recs] == ["good"]
    assert len(errs) == 2
    assert errs[0].startswith(f"{p}:3: 3 tab-separated columns, expected 2")
    assert errs[1].startswith(f"{p}:4: 3 tab-separated columns")
    bad_header = tmp_path / "h.tsv"
    bad_header.write_text("image\ttext\tspeaker\na.png\tx\ty\n", encoding="utf-8")
    with pytest.raises(InkpackError, match=r"h.tsv:1: expected header"):
        read_tsv(str(bad_header))


def test_unicode_line_separators_stay_inside_the_text(tmp_path):
    p = tmp_path / "u.tsv"
    p.write_text("image\ttext\na.png\tone\u2028two\x85three\nb.png\tnext\n", encoding="utf-8")
    recs, errs = read_tsv(str(p))
    assert errs == [] and [r.text for r in recs] == ["one\u2028two\x85three", "next"]
