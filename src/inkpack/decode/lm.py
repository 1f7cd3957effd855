"""Character n-gram language model (interpolated Kneser-Ney or Witten-Bell) with ARPA I/O.

Tokens are single characters plus ``<s>``, ``</s>`` and ``<unk>``. ARPA files cannot hold a
bare space token, so the space character is written as ``<space>``; when reading, ``<space>``
and ``▁`` (U+2581, SentencePiece style) both mean a space unless ``space_token`` names another
spelling. Any other whitespace in training text is turned into a space. Probabilities in ARPA
files (and :meth:`CharNgramLM.score`) are log10, as KenLM writes them; the beam search works in
natural logs (:meth:`CharNgramLM.distribution`).

For speed the state of a history is one Python int: the ids of the last ``order - 1`` tokens
packed ``bits`` apart (most recent in the low bits), trimmed to the longest suffix that the model
knows as a context, so equal states share the cached next-character distribution.
"""

from __future__ import annotations

import gzip
import math
import re
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from inkpack.errors import InkpackError

BOS, EOS, UNK = "<s>", "</s>", "<unk>"
SPACE_TOKEN = "<space>"
SPACE_ALIASES = (SPACE_TOKEN, "\u2581")
BOS_ID, EOS_ID, UNK_ID = 1, 2, 3
NO_PROB = -99.0  # log10 of "never": <s> is never predicted
MISSING_UNK_LOG10 = -100.0  # KenLM's choice when an ARPA file has no <unk>
LN10 = math.log(10.0)
_SPLIT = re.compile(r"[ \t]+")
_LOADED: dict[tuple, "CharNgramLM"] = {}  # ARPA files read by this process, see CharNgramLM.load


def normalize_text(text: str) -> str:
    """Any whitespace becomes a plain space: ARPA tokens cannot contain whitespace."""
    return "".join(" " if c.isspace() else c for c in text)


class CharNgramLM:
    """A backoff character n-gram model; build with :meth:`train` or :meth:`load`."""

    def __init__(self, order: int, chars: list[str], probs: list[dict[int, float]],
                 backoffs: list[dict[int, float]]) -> None:
        # ids: 0 unused (so a packed key's length is its number of non-zero groups), 1..3 specials
        self.order = order
        self.vocab: list[str] = ["", BOS, EOS, UNK] + list(chars)
        self.index = {t: i for i, t in enumerate(self.vocab) if i}
        self.bits = max(1, (len(self.vocab) - 1).bit_length())
        self._mask = [(1 << (self.bits * k)) - 1 for k in range(order + 1)]
        self._p = probs  # _p[n][packed n-gram] = log10 prob, n = 1..order (index 0 unused)
        self._bo = backoffs  # _bo[n][packed n-gram] = log10 backoff, n = 1..order-1
        self._finalize()

    # ---------------------------------------------------------------- training
    @classmethod
    def train(cls, texts: Iterable[str], order: int = 6,
              smoothing: str = "kneser-ney") -> CharNgramLM:
        """Count every line as one sentence ``<s> c1 .. cn </s>`` and smooth by interpolation."""
        if not 1 <= order <= 16:
            raise InkpackError(f"lm: order must be between 1 and 16, got {order}")
        if smoothing not in ("kneser-ney", "witten-bell"):
            raise InkpackError(
                f"lm: unknown smoothing {smoothing!r}: use kneser-ney or witten-bell")
        lines = [s for s in (normalize_text(t) for t in texts) if s]
        if not lines:
            raise InkpackError("lm: no training text (all lines empty)")
        chars = sorted(set().union(*map(set, lines)))
        ids = {c: i + 4 for i, c in enumerate(chars)}
        bits = max(1, (len(chars) + 3).bit_length())
        counts: list[dict[int, int]] = [{}] + [defaultdict(int) for _ in range(order)]
        ends = [0] * (order + 1)
        for line in lines:
            seq = [BOS_ID] + [ids[c] for c in line] + [EOS_ID]
            for i, w in enumerate(seq):
                for n in range(min(order, i + 1), 0, -1):
                    ends[n] = (ends[n - 1] << bits) | w
                    if i:
                        counts[n][ends[n]] += 1
        if smoothing == "kneser-ney":
            probs, backoffs = _kneser_ney(counts, order, bits, len(chars) + 2)
        else:
            probs, backoffs = _witten_bell(counts, order, bits, len(chars) + 2)
        return cls(order, chars, probs, backoffs)

    # ---------------------------------------------------------------- queries
    def _finalize(self) -> None:
        uni = np.full(len(self.vocab), -np.inf)
        for key, lp in self._p[1].items():
            uni[key] = lp * LN10
        if not np.isfinite(uni[UNK_ID]):
            uni[UNK_ID] = MISSING_UNK_LOG10 * LN10
        self._uni = uni
        # contexts of length k -> row j of (start, end, backoff) over the order-(k+1) n-grams
        self._ctx: list[dict[int, int]] = [{} for _ in range(self.order)]
        self._rows: list[list[tuple[int, int, float]]] = [[] for _ in range(self.order)]
        self._words: list[np.ndarray] = [np.zeros(0, np.int64)] * (self.order + 1)
        self._lp: list[np.ndarray] = [np.zeros(0)] * (self.order + 1)
        wmask = self._mask[1]
        for n in range(2, self.order + 1):
            k = n - 1
            items = sorted(self._p[n].items())
            self._words[n] = np.fromiter((key & wmask for key, _ in items), np.int64, len(items))
            self._lp[n] = np.fromiter((lp for _, lp in items), np.float64, len(items)) * LN10
            start = 0
            for i in range(1, len(items) + 1):
                if i == len(items) or items[i][0] >> self.bits != items[start][0] >> self.bits:
                    ctx = items[start][0] >> self.bits
                    self._ctx[k][ctx] = len(self._rows[k])
                    self._rows[k].append((start, i, self._bo[k].get(ctx, 0.0) * LN10))
                    start = i
            for ctx, bo in self._bo[k].items():  # contexts with a backoff but no children
                if ctx not in self._ctx[k] and bo != 0.0:
                    self._ctx[k][ctx] = len(self._rows[k])
                    self._rows[k].append((0, 0, bo * LN10))
        self._cache: dict[int, np.ndarray] = {}

    def token_id(self, ch: str) -> int:
        """Id of a character or special token; characters never seen map to ``<unk>``."""
        return self.index.get(ch, UNK_ID)

    def _ntok(self, state: int) -> int:
        return -(-state.bit_length() // self.bits)

    def initial_state(self) -> int:
        return self.advance(0, BOS_ID)

    def advance(self, state: int, token: int) -> int:
        """State after ``token``, trimmed to the longest suffix the model has as a context."""
        s = ((state << self.bits) | token) & self._mask[self.order - 1]
        while s:
            k = self._ntok(s)
            if s in self._ctx[k]:
                return s
            s &= self._mask[k - 1]
        return 0

    def distribution(self, state: int) -> np.ndarray:
        """Natural-log probabilities of every token id after ``state`` (cached; do not modify)."""
        vec = self._cache.get(state)
        if vec is not None:
            return vec
        vec = self._uni.copy()
        for k in range(1, self._ntok(state) + 1):
            j = self._ctx[k].get(state & self._mask[k])
            if j is None:
                continue
            a, e, bo = self._rows[k][j]
            vec += bo
            vec[self._words[k + 1][a:e]] = self._lp[k + 1][a:e]
        if len(self._cache) > 50_000:
            self._cache.clear()
        self._cache[state] = vec
        return vec

    def state_for(self, context: str, bos: bool = True) -> int:
        s = self.initial_state() if bos else 0
        for ch in normalize_text(context):
            s = self.advance(s, self.token_id(ch))
        return s

    def score(self, context: str, char: str, bos: bool = True, natural: bool = False) -> float:
        """log10 (or ln) P(char | context); ``char`` may be ``"</s>"``; ``bos``: line start."""
        tok = EOS_ID if char == EOS else self.token_id(normalize_text(char))
        lp = float(self.distribution(self.state_for(context, bos))[tok])
        return lp if natural else lp / LN10

    def sentence_logprob(self, text: str, natural: bool = False) -> float:
        """log10 (or ln) P(text </s> | <s>)."""
        s, total = self.initial_state(), 0.0
        for ch in normalize_text(text):
            tok = self.token_id(ch)
            total += self.distribution(s)[tok]
            s = self.advance(s, tok)
        total += self.distribution(s)[EOS_ID]
        return float(total if natural else total / LN10)

    def perplexity(self, texts: Iterable[str]) -> dict[str, float]:
        """Per-token perplexity over chars plus one ``</s>`` per line (the SRILM ``ppl`` count)."""
        ln_sum, n_tok, n_unk, n_lines = 0.0, 0, 0, 0
        for t in texts:
            t = normalize_text(t)
            if not t:
                continue
            ln_sum += self.sentence_logprob(t, natural=True)
            n_tok += len(t) + 1
            n_unk += sum(ch not in self.index for ch in t)
            n_lines += 1
        if not n_tok:
            raise InkpackError("lm: no text to evaluate")
        return {"perplexity": math.exp(-ln_sum / n_tok), "tokens": n_tok, "lines": n_lines,
                "oov_chars": n_unk, "bits_per_char": -ln_sum / n_tok / math.log(2)}

    def num_ngrams(self) -> list[int]:
        return [len(self._p[n]) for n in range(1, self.order + 1)]

    # ---------------------------------------------------------------- ARPA I/O
    def _token(self, i: int) -> str:
        t = self.vocab[i]
        return SPACE_TOKEN if t == " " else t

    def save(self, path: str | Path) -> None:
        """Write an ARPA file (KenLM-compatible layout, log10 values)."""
        b = self.bits
        with open(path, "w", encoding="utf-8", newline="\n") as f:
            f.write("\\data\\\n")
            for n in range(1, self.order + 1):
                f.write(f"ngram {n}={len(self._p[n])}\n")
            for n in range(1, self.order + 1):
                f.write(f"\n\\{n}-grams:\n")
                bo = self._bo[n] if n < self.order else {}
                for key in sorted(self._p[n]):
                    toks = " ".join(self._token((key >> (b * (n - 1 - i))) & self._mask[1])
                                    for i in range(n))
                    line = f"{self._p[n][key]:.7g}\t{toks}"
                    if key in bo:
                        line += f"\t{bo[key]:.7g}"
                    f.write(line + "\n")
            f.write("\n\\end\\\n")

    @classmethod
    def load(cls, path: str | Path, space_token: str | None = None) -> CharNgramLM:
        """Read an ARPA file (optionally .gz) whose tokens are single characters or specials.

        A file already read by this process, unchanged since (same size and modification time),
        is not parsed again: the model is shared (it is read-only but for its cache of
        distributions), which saves about a second per recognizer for the bundled 6-gram."""
        path = Path(path)
        if not path.is_file():
            raise InkpackError(f"{path}: language model file not found")
        st = path.stat()
        key = (str(path.resolve()), st.st_size, st.st_mtime_ns, space_token)
        lm = _LOADED.get(key)
        if lm is None:
            lm = cls._read(path, space_token)
            if len(_LOADED) >= 4:
                _LOADED.pop(next(iter(_LOADED)))
            _LOADED[key] = lm
        return lm

    @classmethod
    def _read(cls, path: Path, space_token: str | None) -> CharNgramLM:
        opener = gzip.open if path.suffix == ".gz" else open
        try:
            with opener(path, "rt", encoding="utf-8") as f:
                lines = f.read().splitlines()
        except (OSError, UnicodeDecodeError, EOFError) as e:
            raise InkpackError(f"{path}: cannot read language model ({e})") from None
        return _parse_arpa(lines, str(path), space_token)


def _discounts(values: Iterable[int]) -> tuple[float, float, float]:
    """Modified Kneser-Ney discounts D1, D2, D3+ (Chen & Goodman); fixed ones on too little data."""
    n = [0] * 5
    for v in values:
        if v <= 4:
            n[v] += 1
    if all(n[1:]):
        y = n[1] / (n[1] + 2 * n[2])
        d = (1 - 2 * y * n[2] / n[1], 2 - 3 * y * n[3] / n[2], 3 - 4 * y * n[4] / n[3])
        if all(0 < d[i] < i + 1 for i in range(3)):
            return d
    return (0.5, 1.0, 1.5)


def _interpolate(order: int, bits: int, vocab_size: int, num: list[dict[int, float]],
                 gammas: list[dict[int, float]]):
    """p_n(w|h) = num_n(hw) + gamma(h) p_{n-1}(w|h'), p_0 uniform over the predictable vocab."""
    probs: list[dict[int, float]] = [{}]
    backoffs: list[dict[int, float]] = [{}]
    uni = {BOS_ID: NO_PROB}
    g0 = gammas[1].get(0, 1.0)
    for w in [EOS_ID, UNK_ID] + list(range(4, vocab_size + 2)):
        uni[w] = math.log10(num[1].get(w, 0.0) + g0 / vocab_size)
    probs.append(uni)
    for n in range(2, order + 1):
        lower, mask, g = probs[n - 1], (1 << (bits * (n - 1))) - 1, gammas[n]
        probs.append({k: math.log10(u + g[k >> bits] * 10 ** lower[k & mask])
                      for k, u in num[n].items()})
        backoffs.append({h: math.log10(v) for h, v in g.items()})
    return probs, backoffs  # backoffs[n] for n = 1..order-1


def _kneser_ney(counts, order, bits, vocab_size):
    adj: list[dict[int, int]] = [{}] * (order + 1)
    adj[order] = counts[order]
    for n in range(order - 1, 0, -1):  # continuation counts, raw counts for n-grams starting <s>
        a: dict[int, int] = defaultdict(int)
        mask, shift = (1 << (bits * n)) - 1, bits * (n - 1)
        for key in counts[n + 1]:
            a[key & mask] += 1
        for key, c in counts[n].items():
            if key >> shift == BOS_ID:
                a[key] = c
        adj[n] = a
    num: list[dict[int, float]] = [{}]
    gammas: list[dict[int, float]] = [{}]
    for n in range(1, order + 1):
        d = (0.0,) + _discounts(adj[n].values())
        tot: dict[int, float] = defaultdict(float)
        disc: dict[int, float] = defaultdict(float)
        for key, c in adj[n].items():
            tot[key >> bits] += c
            disc[key >> bits] += d[min(c, 3)]
        num.append({k: (c - d[min(c, 3)]) / tot[k >> bits] for k, c in adj[n].items()})
        gammas.append({h: disc[h] / tot[h] for h in tot})
    return _interpolate(order, bits, vocab_size, num, gammas)


def _witten_bell(counts, order, bits, vocab_size):
    num: list[dict[int, float]] = [{}]
    gammas: list[dict[int, float]] = [{}]
    for n in range(1, order + 1):
        tot: dict[int, float] = defaultdict(float)
        types: dict[int, int] = defaultdict(int)
        for key, c in counts[n].items():
            tot[key >> bits] += c
            types[key >> bits] += 1
        num.append({k: c / (tot[k >> bits] + types[k >> bits]) for k, c in counts[n].items()})
        gammas.append({h: types[h] / (tot[h] + types[h]) for h in tot})
    return _interpolate(order, bits, vocab_size, num, gammas)


def _parse_arpa(lines: list[str], name: str, space_token: str | None) -> CharNgramLM:
    spaces = (space_token,) if space_token else SPACE_ALIASES

    def fail(i: int, msg: str) -> InkpackError:
        return InkpackError(f"{name}:{i + 1}: {msg}")

    i = 0
    while i < len(lines) and not lines[i].strip():
        i += 1
    if i == len(lines) or lines[i].strip() != "\\data\\":
        raise fail(min(i, max(len(lines) - 1, 0)), "not an ARPA file (expected \\data\\)")
    i += 1
    expected: dict[int, int] = {}
    while i < len(lines) and lines[i].strip().startswith("ngram "):
        m = re.fullmatch(r"ngram\s+(\d+)\s*=\s*(\d+)", lines[i].strip())
        if not m:
            raise fail(i, f"bad header line {lines[i]!r}")
        expected[int(m[1])] = int(m[2])
        i += 1
    order = max(expected, default=0)
    if not order or sorted(expected) != list(range(1, order + 1)):
        raise fail(i, "missing or incomplete 'ngram N=count' header")
    raw: list[list[tuple[int, list[str], float, float]]] = [[] for _ in range(order + 1)]
    n, body = 0, i
    for i in range(body, len(lines)):
        line = lines[i].strip(" \t\r\n")
        if not line:
            continue
        if line == "\\end\\":
            break
        m = re.fullmatch(r"\\(\d+)-grams:", line) if line[0] == "\\" else None
        if m:
            n = int(m[1])
            if n not in expected:
                raise fail(i, f"section {line} not announced in the header")
            continue
        if not n:
            raise fail(i, f"unexpected line {line!r} before the first n-gram section")
        f = _SPLIT.split(line)
        if len(f) not in (n + 1, n + 2):
            raise fail(i, f"expected log-prob, {n} tokens and an optional backoff")
        try:
            lp, bo = float(f[0]), float(f[n + 1]) if len(f) == n + 2 else 0.0
        except ValueError:
            raise fail(i, f"bad number in {line!r}") from None
        raw[n].append((i, f[1: n + 1], max(lp, NO_PROB), bo))
    else:
        raise InkpackError(f"{name}: truncated ARPA file (no \\end\\)")
    for n in range(1, order + 1):
        if len(raw[n]) != expected[n]:
            raise InkpackError(
                f"{name}: header says {expected[n]} {n}-grams, file has {len(raw[n])}")
    chars = []
    for ln, (tok,), _, _ in raw[1]:
        if tok in spaces:
            tok = " "
        if tok not in (BOS, EOS, UNK):
            if len(tok) != 1:
                raise fail(ln, f"token {tok!r} is not a single character "
                               f"(space must be {spaces[0]})")
            chars.append(tok)
    if len(set(chars)) != len(chars):
        raise InkpackError(f"{name}: duplicate unigrams")
    index = {BOS: BOS_ID, EOS: EOS_ID, UNK: UNK_ID, **{c: i + 4 for i, c in enumerate(chars)}}
    index.update({s: index[" "] for s in spaces if " " in index})
    have = {tok for _, (tok,), _, _ in raw[1]}
    if BOS not in have or EOS not in have:
        raise InkpackError(f"{name}: the unigrams must include <s> and </s>")
    bits = max(1, (len(chars) + 3).bit_length())
    probs: list[dict[int, float]] = [{} for _ in range(order + 1)]
    backoffs: list[dict[int, float]] = [{} for _ in range(order)]
    for n in range(1, order + 1):
        for ln, toks, lp, bo in raw[n]:
            key = 0
            for t in toks:
                if t not in index:
                    raise fail(ln, f"token {t!r} is not among the unigrams")
                key = (key << bits) | index[t]
            probs[n][key] = lp
            if bo and n < order:
                backoffs[n][key] = bo
    return CharNgramLM(order, chars, probs, backoffs)
