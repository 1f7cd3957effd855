"""Helpers behind ``inkpack lm train`` / ``inkpack lm eval``: read texts, train, save ARPA."""

from __future__ import annotations

import time
from pathlib import Path

from inkpack.data.alphabet import nfc
from inkpack.decode.lm import CharNgramLM
from inkpack.errors import InkpackError


def read_texts(path: str) -> list[str]:
    """One sentence per line, NFC. A TSV whose header has a ``text`` column (e.g. ``image<TAB>text``
    manifests) contributes that column; an IAM-OnDB ``.npz`` its line transcriptions; any other
    file is plain text, one line per sentence."""
    p = Path(path)
    if not p.is_file():
        raise InkpackError(f"{path}: text file not found")
    if p.suffix.lower() == ".npz":
        from inkpack.data.formats.iamondb import IamOnDbNpz

        return [nfc(str(t)) for t in IamOnDbNpz(p).texts if str(t).strip()]
    try:
        lines = p.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise InkpackError(f"{path}: cannot read text ({e})") from None
    if not lines:
        return []
    header = [h.strip().lower() for h in lines[0].split("\t")]
    if len(header) < 2 or "text" not in header:
        return [nfc(line) for line in lines if line.strip()]
    col = header.index("text")
    out = []
    for i, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) <= col:
            raise InkpackError(f"{path}:{i}: no '{header[col]}' column (expected {len(header)} "
                               "tab-separated fields)")
        if fields[col].strip():
            out.append(nfc(fields[col]))
    return out


def lm_train(texts_files: list[str], order: int, out: str,
             smoothing: str = "kneser-ney") -> dict:
    """Train a character n-gram LM on the files' lines and write it as ARPA to ``out``."""
    if not texts_files:
        raise InkpackError("lm train: give at least one text file")
    texts = [t for f in texts_files for t in read_texts(f)]
    t0 = time.perf_counter()
    lm = CharNgramLM.train(texts, order=order, smoothing=smoothing)
    try:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        lm.save(out)
    except OSError as e:
        raise InkpackError(f"{out}: cannot write language model ({e})") from None
    return {"lines": len(texts), "chars": sum(map(len, texts)), "order": order,
            "smoothing": smoothing, "vocab": len(lm.vocab) - 1, "ngrams": lm.num_ngrams(),
            "seconds": time.perf_counter() - t0, "out": str(out)}


def lm_eval(lm_path: str, texts_files: list[str]) -> dict:
    """Per-character perplexity of an ARPA LM on the files' lines."""
    lm = CharNgramLM.load(lm_path)
    texts = [t for f in texts_files for t in read_texts(f)]
    return lm.perplexity(texts)
