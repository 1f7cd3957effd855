"""The codec between text and CTC label indices.

Index 0 is always the CTC blank. Text is NFC-normalised before encoding so that
composed and decomposed forms of the same character map to one label. Unknown
characters follow an explicit policy instead of crashing:

* ``"error"`` raises :class:`UnknownCharacterError` naming the characters (training
  catches it, skips the line and counts it);
* ``"skip"`` drops the unknown characters;
* ``"unk"`` maps them to the unknown symbol (index ``len(symbols) + 1``) when the
  alphabet was built with ``with_unk=True``.
"""

from __future__ import annotations

import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence

from inkpack.errors import ConfigError, InkpackError, UnknownCharacterError

BLANK = 0
UNK_SYMBOL = "\ufffd"


def nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text)


class Alphabet:
    """Maps characters to labels 1..N (0 is the CTC blank)."""

    def __init__(self, symbols: Sequence[str], with_unk: bool = False) -> None:
        symbols = [nfc(s) for s in symbols]
        if len(set(symbols)) != len(symbols):
            dup = [s for s, n in Counter(symbols).items() if n > 1]
            raise InkpackError(f"alphabet: duplicate symbols {dup!r}")
        if any(len(s) != 1 for s in symbols):
            bad = [s for s in symbols if len(s) != 1]
            raise InkpackError(f"alphabet: symbols must be single characters, got {bad!r}")
        self.symbols: list[str] = list(symbols)
        self.with_unk = with_unk
        self._index = {s: i + 1 for i, s in enumerate(self.symbols)}
        self.unk_index = len(self.symbols) + 1 if with_unk else None

    @classmethod
    def from_texts(cls, texts: Iterable[str], with_unk: bool = False) -> "Alphabet":
        """Build from training transcriptions, sorted by code point for a stable order."""
        chars: set[str] = set()
        for t in texts:
            chars.update(nfc(t))
        return cls(sorted(chars), with_unk=with_unk)

    def __len__(self) -> int:
        """Number of output classes including the blank (and unk if present)."""
        return len(self.symbols) + 1 + (1 if self.with_unk else 0)

    @property
    def num_classes(self) -> int:
        return len(self)

    def __contains__(self, ch: str) -> bool:
        return ch in self._index

    def unknown(self, text: str) -> list[str]:
        """Characters of ``text`` this alphabet cannot encode, in order of first use."""
        seen: dict[str, None] = {}
        for ch in nfc(text):
            if ch not in self._index:
                seen[ch] = None
        return list(seen)

    def encode(self, text: str, policy: str = "error") -> list[int]:
        text = nfc(text)
        out: list[int] = []
        for ch in text:
            idx = self._index.get(ch)
            if idx is not None:
                out.append(idx)
            elif policy == "skip":
                continue
            elif policy == "unk":
                if self.unk_index is None:
                    raise UnknownCharacterError(
                        f"character {ch!r} is not in the alphabet and it has no unknown symbol"
                    )
                out.append(self.unk_index)
            elif policy == "error":
                raise UnknownCharacterError(
                    f"characters not in the alphabet: {''.join(self.unknown(text))!r}"
                )
            else:
                raise ValueError(f"unknown policy {policy!r}: use error, skip or unk")
        return out

    def decode(self, labels: Iterable[int]) -> str:
        """Labels (already CTC-collapsed, blanks removed) to text."""
        out = []
        n = len(self.symbols)
        for i in labels:
            i = int(i)
            if 1 <= i <= n:
                out.append(self.symbols[i - 1])
            elif self.with_unk and i == n + 1:
                out.append(UNK_SYMBOL)
            elif i != BLANK:
                raise UnknownCharacterError(f"label {i} is outside the alphabet (size {len(self)})")
        return "".join(out)

    def to_dict(self) -> dict:
        return {"symbols": "".join(self.symbols), "with_unk": self.with_unk}

    @classmethod
    def from_dict(cls, d: dict) -> "Alphabet":
        try:
            return cls(list(d["symbols"]), with_unk=bool(d.get("with_unk", False)))
        except KeyError as e:
            raise InkpackError(f"alphabet: missing field {e}") from None


RESIZE_MODES = ("union", "new", "fail")


def resize_alphabet(old: Alphabet, texts: Iterable[str], mode: str = "union") -> Alphabet:
    """The alphabet of a run fine-tuned from a model with alphabet ``old`` on ``texts``
    (Kraken's ``--resize``): ``union`` keeps every old symbol in its place and appends the new
    characters (sorted by code point); ``new`` keeps only the characters of ``texts`` (sorted,
    as :meth:`Alphabet.from_texts`); ``fail`` keeps ``old`` and refuses texts it cannot encode.
    The unknown symbol is kept when ``old`` has one."""
    if mode not in RESIZE_MODES:
        raise ConfigError(f"resize: must be one of {', '.join(RESIZE_MODES)}, not {mode!r}")
    chars: set[str] = set()
    for t in texts:
        chars.update(nfc(t))
    missing = sorted(c for c in chars if c not in old)
    if mode == "union":
        return Alphabet(old.symbols + missing, with_unk=old.with_unk)
    if mode == "new":
        return Alphabet(sorted(chars), with_unk=old.with_unk)
    if missing:
        raise ConfigError(f"resize: the training texts have characters the model lacks: {''.join(missing)!r} "
                          "(use resize union to add them, or new to keep only the data's characters)")
    return old


def label_map(old: Alphabet, new: Alphabet) -> list[tuple[int, int]]:
    """``(new_label, old_label)`` for every output the two alphabets share: the blank, each
    symbol in both, and the unknown symbol when both have one (what a resized output layer
    copies from the old one)."""
    pairs = [(BLANK, BLANK)] + [(new._index[s], old._index[s]) for s in new.symbols if s in old]
    if new.unk_index is not None and old.unk_index is not None:
        pairs.append((new.unk_index, old.unk_index))
    return pairs
