"""Character and word error rates from a maintained edit-distance library (rapidfuzz)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rapidfuzz.distance import Levenshtein


@dataclass
class ErrorCounts:
    char_errors: int = 0
    chars: int = 0
    word_errors: int = 0
    words: int = 0

    def add(self, hyp: str, ref: str) -> None:
        self.char_errors += Levenshtein.distance(hyp, ref)
        self.chars += len(ref)
        rw, hw = ref.split(), hyp.split()
        self.word_errors += Levenshtein.distance(hw, rw)
        self.words += len(rw)

    @property
    def cer(self) -> float:
        return self.char_errors / max(1, self.chars)

    @property
    def wer(self) -> float:
        return self.word_errors / max(1, self.words)


def cer(hyps: Sequence[str], refs: Sequence[str]) -> float:
    """Corpus CER: total edit distance over total reference characters."""
    c = ErrorCounts()
    for h, r in zip(hyps, refs, strict=True):
        c.add(h, r)
    return c.cer


def wer(hyps: Sequence[str], refs: Sequence[str]) -> float:
    """Corpus WER over whitespace-separated words."""
    c = ErrorCounts()
    for h, r in zip(hyps, refs, strict=True):
        c.add(h, r)
    return c.wer
