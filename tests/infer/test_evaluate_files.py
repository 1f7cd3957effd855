"""The library homes of ``inkpack evaluate`` and ``recognize``: :func:`inkpack.infer.evaluate.evaluate_lines`
(CER/WER against hand-counted edits, skipped lines, the per-line TSV) and
:class:`inkpack.infer.files.FileRecognizer` (dispatch by content, input order, one error per bad input)."""

from __future__ import annotations

import json

import pytest

import inkpack.infer.evaluate as ev
from inkpack.decode.recognition import Recognition
from inkpack.errors import InputError
from inkpack.infer.files import FileRecognizer, file_kind

# reference -> what the fake model reads
READS = {"ab": "ab", "abc d": "abd d", "xy z": "xy"}


class FakeRec:
    """A recognizer whose "image" is the reference text itself: it answers ``READS``."""

    height, backend, decoder = 40, "fake", None

    def __init__(self) -> None:
        self.batches: list[int] = []

    def prepare(self, gray):
        return gray

    def recognize_prepared(self, ims, batch_size):
        self.batches.append(len(ims))
        return [READS[t] for t in ims]


class Rec:
    def __init__(self, path, text, crop=None, id=""):
        self.path, self.text, self.crop, self.id = path, text, crop, id


def _fake(monkeypatch, records, errors=()):
    import inkpack.data.images
    import inkpack.data.lines
    import inkpack.infer.recognizer

    rec = FakeRec()
    monkeypatch.setattr(inkpack.infer.recognizer, "open_recognizer", lambda *a, **k: rec)
    monkeypatch.setattr(inkpack.data.lines, "read_records", lambda data, images_dir=None: (records, list(errors)))

    def load_gray(path, height=None):
        if path == "bad.png":
            raise InputError("bad.png: not an image")
        return path.split("/")[-1]

    monkeypatch.setattr(inkpack.data.images, "load_gray", load_gray)
    return rec


def test_evaluate_lines_counts_edits_by_hand_and_skips_unreadable_lines(monkeypatch, tmp_path, capsys):
    recs = [Rec("i/ab", "ab"), Rec("bad.png", "zz"), Rec("i/abc d", "abc d"), Rec("i/xy z", "xy z")]
    _fake(monkeypatch, recs, errors=["data.tsv:9: missing text"])
    out = tmp_path / "rows.tsv"
    res = ev.evaluate_lines("data.tsv", batch_size=2, threads=3, progress="off", output=str(out))
    # chars: 0 + 1 (c->d) + 2 (" z" deleted) edits over 2 + 5 + 4 reference chars
    assert res["cer"] == pytest.approx(3 / 11)
    # words: 0 + 1 (abc->abd) + 1 (z deleted) over 1 + 2 + 2 reference words
    assert res["wer"] == pytest.approx(2 / 5)
    assert (res["lines"], res["skipped"], res["threads"], res["batch_size"], res["decoder"], res["backend"]) == (
        3, 2, 3, 2, "greedy", "fake")
    err = capsys.readouterr().err
    assert "skipped: data.tsv:9: missing text" in err and "skipped: bad.png: not an image" in err
    rows = out.read_text().splitlines()
    assert rows[0] == "image\treference\thypothesis\tcer" and rows[2] == "i/abc d\tabc d\tabd d\t0.2000"
    json.dumps(res)  # what --json writes


def test_evaluate_lines_with_no_readable_line_is_one_input_error(monkeypatch):
    _fake(monkeypatch, [Rec("bad.png", "zz")])
    with pytest.raises(InputError, match=r"^d\.tsv: no readable lines \(1 skipped\)$"):
        ev.evaluate_lines("d.tsv", progress="off")


class Sink:
    def __init__(self) -> None:
        self.got: list[tuple] = []

    def result(self, name, r, text, sample=False):
        self.got.append(("ok", name, text))

    def error(self, name, e):
        self.got.append(("error", name, str(e)))

    def note(self, msg):
        self.got.append(("note", msg))


class FakeLines:
    def prepare_input(self, p):
        if "missing" in str(p):
            raise InputError(f"{p}: file not found")
        return str(p)

    def run_batched(self, items, batch_size=None):
        return [Recognition(f"read {i.rsplit('/', 1)[-1]}") for i in items]


def test_file_recognizer_keeps_input_order_and_names_each_bad_input(tmp_path, monkeypatch):
    png = tmp_path / "a.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n")
    xml = tmp_path / "x.xml"
    xml.write_text("<root/>")
    files = FileRecognizer(None)
    monkeypatch.setattr(files, "line_recognizer", FakeLines)
    sink = Sink()
    files.run([str(png), str(xml), str(tmp_path / "missing.png"), str(png)], sink)
    assert [file_kind(str(p)) for p in (png, xml, tmp_path)] == ["image", "xml", "pagexml"]
    assert sink.got == [
        ("ok", str(png), "read a.png"),
        ("error", str(xml), f"{xml}: an XML file that is neither PAGE-XML, InkML nor IAM-OnDB strokes"),
        ("error", str(tmp_path / "missing.png"), f"{tmp_path / 'missing.png'}: file not found"),
        ("ok", str(png), "read a.png"),
    ]


def test_file_recognizer_refuses_out_without_pagexml_and_images_for_an_ink_model(tmp_path, monkeypatch):
    png = tmp_path / "a.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n")
    with pytest.raises(Exception, match="^--out: the filled PAGE-XML is written for PAGE-XML inputs; none given$"):
        FileRecognizer(None).run([str(png)], Sink(), out=str(tmp_path / "o.xml"))
    import inkpack.infer.files as fmod

    monkeypatch.setattr(fmod, "model_kind", lambda m: "ink")
    sink = Sink()
    FileRecognizer("pen").run([str(png)], sink)
    assert sink.got == [("error", str(png), f"--model pen is an 'ink' model; {png} is an image")]
