"""Word lexicon as a character trie that the beam search walks label by label.

Matching rules (so that ``Dyer,`` and ``THE`` count as the lexicon words ``dyer``, ``the``):

* a word is the text between spaces (the space label is the only word boundary);
* only letters (Unicode categories L* and M*) are matched, compared lower-cased unless
  ``case_sensitive``; digits, punctuation and symbols are transparent, so a "word" made only of
  them (``21``, ``&``) is always accepted;
* a word that leaves the trie, or ends on a trie node that is not a word, is out of vocabulary:
  the beam search adds ``oov_penalty`` once for it (``-inf`` forbids OOV words).

Lexicon files hold one word per line (UTF-8); anything after a tab (e.g. a count) is ignored.
Words with letters the model cannot emit are dropped with one warning; if none is left, or the
lexicon is empty, :class:`InkpackError` is raised.
"""

from __future__ import annotations

import unicodedata
import warnings
from collections.abc import Iterable
from pathlib import Path

from inkpack.data.alphabet import Alphabet, nfc
from inkpack.errors import InkpackError

OOV = -1  # trie state of a word that already left the trie
ROOT = 0
_TRANSPARENT, _BOUNDARY = -1, -2


def _is_letter(ch: str) -> bool:
    return unicodedata.category(ch)[0] in "LM"


class Lexicon:
    """A set of words, reduced to their letter keys."""

    def __init__(self, words: Iterable[str], case_sensitive: bool = False,
                 source: str = "lexicon") -> None:
        self.case_sensitive = case_sensitive
        self.source = source
        self.keys: set[str] = set()
        for w in words:
            k = self.key(w)
            if k:
                self.keys.add(k)
        if not self.keys:
            raise InkpackError(f"{source}: the lexicon has no words with letters")

    def _fold(self, ch: str) -> str:
        if self.case_sensitive:
            return ch
        low = ch.lower()
        return low if len(low) == 1 else ch

    def key(self, word: str) -> str:
        return "".join(self._fold(c) for c in nfc(word) if _is_letter(c))

    def __contains__(self, word: str) -> bool:
        k = self.key(word)
        return not k or k in self.keys

    def __len__(self) -> int:
        return len(self.keys)

    @classmethod
    def load(cls, path: str | Path, case_sensitive: bool = False) -> Lexicon:
        path = Path(path)
        if not path.is_file():
            raise InkpackError(f"{path}: lexicon file not found")
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise InkpackError(f"{path}: cannot read lexicon ({e})") from None
        words = (line.split("\t", 1)[0].strip() for line in text.splitlines())
        return cls(words, case_sensitive, source=str(path))

    @classmethod
    def from_texts(cls, texts: Iterable[str], case_sensitive: bool = False) -> Lexicon:
        """Every whitespace-separated token of the texts (e.g. training transcriptions)."""
        return cls((w for t in texts for w in t.split()), case_sensitive, source="texts")

    def bind(self, alphabet: Alphabet) -> LexiconTrie:
        return LexiconTrie(self, alphabet)


class LexiconTrie:
    """The lexicon's trie over one alphabet's labels; states are ints (``OOV``, ``ROOT``, nodes)."""

    def __init__(self, lexicon: Lexicon, alphabet: Alphabet) -> None:
        letters: dict[str, int] = {}
        self.code: list[int] = [_TRANSPARENT] * alphabet.num_classes  # label -> letter code
        for label, ch in enumerate(alphabet.symbols, start=1):
            if ch == " ":
                self.code[label] = _BOUNDARY
            elif _is_letter(ch):
                self.code[label] = letters.setdefault(lexicon._fold(ch), len(letters))
        missing: dict[str, None] = {}
        usable = []
        for k in sorted(lexicon.keys):
            bad = [c for c in k if c not in letters]
            if bad:
                missing.update(dict.fromkeys(bad))
            else:
                usable.append(k)
        if not usable:
            raise InkpackError(f"{lexicon.source}: no lexicon word can be written with the model's "
                               f"alphabet (missing {''.join(missing)!r})")
        if missing:
            warnings.warn(f"{lexicon.source}: {len(lexicon.keys) - len(usable)} words use letters "
                          f"the model cannot emit ({''.join(missing)!r}); they are ignored",
                          stacklevel=3)
        self.num_words = len(usable)
        self._m = len(letters)
        self._edges: dict[int, int] = {}
        terminal = [False]
        for k in usable:
            node = ROOT
            for c in k:
                e = node * self._m + letters[c]
                nxt = self._edges.get(e)
                if nxt is None:
                    nxt = self._edges[e] = len(terminal)
                    terminal.append(False)
                node = nxt
            terminal[node] = True
        self.terminal = terminal

    def advance(self, node: int, label: int) -> tuple[int, bool]:
        """Next state after ``label`` and whether this step made the current word OOV."""
        k = self.code[label]
        if k == _BOUNDARY:
            return ROOT, node > ROOT and not self.terminal[node]
        if k == _TRANSPARENT or node == OOV:
            return node, False
        nxt = self._edges.get(node * self._m + k)
        if nxt is None:
            return OOV, True
        return nxt, False

    def finish(self, node: int) -> bool:
        """Whether the unfinished last word is OOV (prefix of a word but not a word)."""
        return node > ROOT and not self.terminal[node]
