"""CTC prefix beam search with an optional character n-gram LM and word lexicon, and ``Decoder``.

Hypotheses are ranked by ``ln P_ctc(prefix) + alpha * ln P_lm(prefix) + beta * len(prefix)
+ oov_penalty * (#OOV words)``; at the end ``alpha * ln P_lm(</s> | prefix)`` and the last
word's lexicon check are added. Speed comes from three standard prunings, all switchable off
(``None``) for exact search: per frame only characters with ``ln p > cutoff_logp`` (at most
``top_k``) are tried; frames whose blank probability exceeds ``blank_skip`` only extend every
beam with the blank; hypotheses below ``best + beam_prune_logp`` are dropped. Exact, not a
pruning: within a frame the beams' own continuations are scored first, and an extension scoring
below the beam-th best of them (scores only grow within a frame) is never built. Prefixes live in a
tree of int nodes, so a prefix's LM/lexicon state is computed once, when it is first created.
"""

from __future__ import annotations

import heapq
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from inkpack.data.alphabet import Alphabet
from inkpack.decode.greedy import as_numpy, greedy_decode, log_softmax
from inkpack.decode.lexicon import ROOT, Lexicon, LexiconTrie
from inkpack.decode.lm import EOS_ID, UNK_ID, CharNgramLM
from inkpack.errors import InkpackError

NEG = -math.inf
KINDS = ("greedy", "beam", "beam+lm")


def _lae(a: float, b: float) -> float:
    """ln(e^a + e^b) for scalars (much faster than numpy on Python floats)."""
    if a < b:
        a, b = b, a
    if b == NEG:
        return a
    return a + math.log1p(math.exp(b - a))


class LMScorer:
    """A :class:`CharNgramLM` seen through one alphabet's labels, with a per-state cache."""

    def __init__(self, lm: CharNgramLM, alphabet: Alphabet) -> None:
        self.lm = lm
        self._tok = [0] + [lm.token_id(s) for s in alphabet.symbols]
        self._tok += [UNK_ID] * (alphabet.num_classes - len(self._tok))
        self._tok_arr = np.asarray(self._tok)
        self.missing = [s for s in alphabet.symbols if s not in lm.index]
        if self.missing:
            warnings.warn(f"language model has never seen {''.join(self.missing)!r}: "
                          "these characters are scored as <unk>", stacklevel=3)
        self._cache: dict[int, tuple[list[float], float]] = {}

    def initial(self) -> int:
        return self.lm.initial_state()

    def lookup(self, state: int) -> tuple[list[float], float]:
        """(ln P(label | state) for every label, ln P(</s> | state))."""
        r = self._cache.get(state)
        if r is None:
            d = self.lm.distribution(state)
            r = (d[self._tok_arr].tolist(), float(d[EOS_ID]))
            if len(self._cache) > 50_000:
                self._cache.clear()
            self._cache[state] = r
        return r

    def advance(self, state: int, label: int) -> int:
        return self.lm.advance(state, self._tok[label])


@dataclass
class Hypothesis:
    labels: list[int]
    score: float  # the ranking score (see module docstring)
    ctc_logp: float  # ln of the summed probability of the paths kept by the beam
    lm_logp: float  # ln P_lm(labels </s>), 0 without LM
    oov_words: int


def candidates(log_probs: np.ndarray, cutoff_logp: float | None,
               top_k: int | None) -> list[list[int]]:
    """Per frame, the non-blank labels worth trying (vectorised pruning)."""
    n_t, k = log_probs.shape
    lp = log_probs[:, 1:]
    mask = np.ones(lp.shape, bool) if cutoff_logp is None else lp > cutoff_logp
    if top_k is not None and top_k < k - 1:
        kth = np.partition(lp, k - 1 - top_k, axis=1)[:, k - 1 - top_k]
        mask &= lp >= kth[:, None]
    rows, cols = np.nonzero(mask)
    split = np.searchsorted(rows, np.arange(1, n_t))
    return [c.tolist() for c in np.split(cols + 1, split)]


def beam_search(log_probs: np.ndarray, beam: int = 16, lm: LMScorer | None = None,
                alpha: float = 0.5, beta: float = 0.0, lexicon: LexiconTrie | None = None,
                oov_penalty: float = -5.0, cutoff_logp: float | None = -8.0,
                top_k: int | None = None, blank_skip: float | None = 0.999,
                beam_prune_logp: float | None = -10.0, n_best: int = 1) -> list[Hypothesis]:
    """Prefix beam search over one ``[T, K]`` array of log-probabilities (label 0 = blank).

    ``top_k`` defaults to the beam width. ``n_best`` hypotheses are returned, best first.
    """
    log_probs = np.asarray(log_probs, dtype=np.float64)
    if log_probs.ndim != 2:
        raise InkpackError(f"beam search: expected log-probs [T, K], got shape {log_probs.shape}")
    if beam < 1:
        raise InkpackError(f"beam search: beam width must be >= 1, got {beam}")
    n_t, n_k = log_probs.shape
    cand = candidates(log_probs, cutoff_logp, top_k if top_k is not None else beam)
    skip = (log_probs[:, 0] > math.log(blank_skip)).tolist() if blank_skip else [False] * n_t
    rows = log_probs.tolist()
    use_lm = lm is not None and alpha != 0.0
    # prefix tree of nodes (0 = empty prefix); a node is made only when its prefix enters the
    # beam, and its LM state only when it is extended
    parent, last, extra, lmsum, oovs, lexst = [-1], [0], [0.0], [0.0], [0], [ROOT]
    lmst: list[int | None] = [lm.initial() if use_lm else 0]
    edges: dict[int, int] = {}  # parent * K + label -> child node

    def lm_state(n: int) -> int:
        st = lmst[n]
        if st is None:
            st = lmst[n] = lm.advance(lm_state(parent[n]), last[n])
        return st

    beams: dict[int, list[float]] = {0: [0.0, NEG]}  # node -> [ln P(ends in blank), ln P(not)]
    for t in range(n_t):
        lp = rows[t]
        b0 = lp[0]
        if skip[t]:
            beams = {n: [_lae(pb, pnb) + b0, NEG] for n, (pb, pnb) in beams.items()}
            continue
        cs = cand[t]
        # every beam's own continuation first (blank, or its last label repeated) ...
        nxt: dict[int, list[float]] = {}
        for n, (pb, pnb) in beams.items():
            ln = last[n]
            nxt[n] = [_lae(pb, pnb) + b0, (pnb + lp[ln] if ln else NEG)]
        if not cs:
            scored = [(_lae(v[0], v[1]) + extra[n], n) for n, v in nxt.items()]
        else:
            # ... whose scores bound what can still enter: scores only grow within a frame, so
            # an extension below the beam-th best of these, or below the best + beam_prune_logp,
            # is never kept and is not built (the result is the same as without this bound)
            floor = NEG
            if len(nxt) >= beam or beam_prune_logp is not None:
                stay = sorted((_lae(v[0], v[1]) + extra[n] for n, v in nxt.items()), reverse=True)
                if len(stay) >= beam:
                    floor = stay[beam - 1]
                if beam_prune_logp is not None:
                    floor = max(floor, stay[0] + beam_prune_logp)
            pend: dict[int, tuple] = {}  # new prefixes, keyed -(parent * K + label) - 1
            for n, (pb, pnb) in beams.items():
                tot = _lae(pb, pnb)
                ln = last[n]
                base, ex_n = n * n_k, extra[n] + beta
                lm_row = lm.lookup(lm_state(n))[0] if use_lm else None
                for c in cs:
                    p = (pb if c == ln else tot) + lp[c]
                    if p == NEG:
                        continue
                    ch = edges.get(base + c)
                    if ch is None:
                        ex, lp_c, lx, oov = ex_n, 0.0, ROOT, False
                        if use_lm:
                            lp_c = lm_row[c]
                            ex += alpha * lp_c
                        if lexicon is not None:
                            lx, oov = lexicon.advance(lexst[n], c)
                            if oov:
                                ex += oov_penalty
                        if ex == NEG or p + ex < floor:
                            continue
                        ch = -(base + c) - 1
                        pend[ch] = (ex, n, c, lp_c, lx, oov)
                        nxt[ch] = [NEG, p]
                        continue
                    e = nxt.get(ch)
                    if e is not None:
                        e[1] = _lae(e[1], p)
                    elif p + extra[ch] >= floor:
                        nxt[ch] = [NEG, p]
            scored = [(_lae(v[0], v[1]) + (extra[n] if n >= 0 else pend[n][0]), n)
                      for n, v in nxt.items()]
        if len(scored) > beam:
            scored = heapq.nlargest(beam, scored)
        if beam_prune_logp is not None:
            floor = max(scored)[0] + beam_prune_logp
            scored = [sn for sn in scored if sn[0] >= floor]
        beams = {}
        for _, n in scored:
            v = nxt[n]
            if n < 0:
                ex, pa, c, lp_c, lx, oov = pend[n]
                edges[-n - 1] = n = len(last)
                parent.append(pa), last.append(c), extra.append(ex), lmst.append(None)
                lmsum.append(lmsum[pa] + lp_c), oovs.append(oovs[pa] + oov), lexst.append(lx)
            beams[n] = v

    final = []
    for n, (pb, pnb) in beams.items():
        ctc = _lae(pb, pnb)
        s, lsum, oov = ctc + extra[n], lmsum[n], oovs[n]
        if use_lm:
            eos = lm.lookup(lm_state(n))[1]
            s += alpha * eos
            lsum += eos
        if lexicon is not None and lexicon.finish(lexst[n]):
            s += oov_penalty
            oov += 1
        final.append((s, ctc, lsum, oov, n))
    final.sort(reverse=True)
    if final[0][0] == NEG:  # strict lexicon and no beam ends on a word: rank by the rest
        final.sort(key=lambda f: (f[1] + extra[f[4]]), reverse=True)
    out = []
    for s, ctc, lsum, oov, n in final[:n_best]:
        labels = []
        while n > 0:
            labels.append(last[n])
            n = parent[n]
        out.append(Hypothesis(labels[::-1], s, ctc, lsum, oov))
    return out


class Decoder:
    """Turns model log-probs into text; built once from options, reused for every line.

    ``kind``: ``"greedy"`` (best path), ``"beam"`` (prefix beam search, optional ``lexicon``),
    ``"beam+lm"`` (beam search with the character LM ``lm``: an ARPA path or a
    :class:`CharNgramLM`). Inputs may be raw logits: they are log-softmax-normalised here.
    """

    def __init__(self, kind: str = "greedy", beam: int = 16,
                 lm: str | Path | CharNgramLM | None = None,
                 lexicon: str | Path | Lexicon | None = None, alpha: float = 0.5, beta: float = 0.0,
                 oov_penalty: float = -5.0, cutoff_logp: float | None = -8.0,
                 top_k: int | None = None, blank_skip: float | None = 0.999,
                 beam_prune_logp: float | None = -10.0) -> None:
        if kind not in KINDS:
            raise InkpackError(f"decoder: unknown kind {kind!r}: use one of {', '.join(KINDS)}")
        if kind == "beam+lm" and lm is None:
            raise InkpackError("decoder: kind 'beam+lm' needs a language model file (lm=...)")
        if kind != "beam+lm" and lm is not None:
            raise InkpackError(f"decoder: a language model needs kind 'beam+lm', not {kind!r}")
        if kind == "greedy" and lexicon is not None:
            raise InkpackError("decoder: a lexicon needs kind 'beam' or 'beam+lm'")
        if beam < 1:
            raise InkpackError(f"decoder: beam width must be >= 1, got {beam}")
        self.kind, self.beam, self.alpha, self.beta = kind, int(beam), float(alpha), float(beta)
        self.oov_penalty = float(oov_penalty)
        self.search = {"cutoff_logp": cutoff_logp, "top_k": top_k, "blank_skip": blank_skip,
                       "beam_prune_logp": beam_prune_logp}
        self.lm = CharNgramLM.load(lm) if isinstance(lm, (str, Path)) else lm
        self.lexicon = Lexicon.load(lexicon) if isinstance(lexicon, (str, Path)) else lexicon
        self._bound: dict[tuple, tuple[LMScorer | None, LexiconTrie | None]] = {}

    @classmethod
    def from_options(cls, options: Mapping) -> Decoder:
        """From a config mapping with keys among the constructor's arguments."""
        allowed = {"kind", "beam", "lm", "lexicon", "alpha", "beta", "oov_penalty", "cutoff_logp",
                   "top_k", "blank_skip", "beam_prune_logp"}
        bad = sorted(set(options) - allowed)
        if bad:
            raise InkpackError(f"decoder: unknown option(s) {', '.join(bad)}")
        return cls(**options)

    def _bind(self, alphabet: Alphabet) -> tuple[LMScorer | None, LexiconTrie | None]:
        key = (tuple(alphabet.symbols), alphabet.with_unk)
        if key not in self._bound:
            self._bound[key] = (LMScorer(self.lm, alphabet) if self.lm is not None else None,
                                self.lexicon.bind(alphabet) if self.lexicon is not None else None)
        return self._bound[key]

    def decode_labels(self, log_probs, alphabet: Alphabet) -> list[int]:
        a = as_numpy(log_probs)
        if a.ndim != 2 or a.shape[1] != alphabet.num_classes:
            raise InkpackError(f"decoder: expected log-probs [T, {alphabet.num_classes}] for this "
                               f"alphabet, got shape {a.shape}")
        if self.kind == "greedy":
            return greedy_decode(a)[0]
        lm, lex = self._bind(alphabet)
        return beam_search(log_softmax(a.astype(np.float64)), self.beam, lm, self.alpha, self.beta,
                           lex, self.oov_penalty, **self.search)[0].labels

    def decode(self, log_probs, alphabet: Alphabet) -> str:
        """Text of one line from its ``[T, K]`` log-probs (numpy or torch)."""
        return alphabet.decode(self.decode_labels(log_probs, alphabet))

    def decode_batch(self, log_probs, alphabet: Alphabet, lengths=None) -> list[str]:
        """``[T, B, K]`` (with optional ``lengths[B]``) or a sequence of ``[T_i, K]`` arrays."""
        if isinstance(log_probs, Sequence) and not isinstance(log_probs, np.ndarray):
            items = list(log_probs)
        else:
            a = as_numpy(log_probs)
            if a.ndim != 3:
                raise InkpackError(f"decoder: expected log-probs [T, B, K], got shape {a.shape}")
            if self.kind == "greedy":
                return [alphabet.decode(x) for x in greedy_decode(a, lengths)]
            lens = [a.shape[0]] * a.shape[1] if lengths is None else \
                [int(v) for v in as_numpy(lengths).reshape(-1)]
            items = [a[: lens[b], b] for b in range(a.shape[1])]
        return [self.decode(x, alphabet) for x in items]


def as_decoder(spec: Decoder | Mapping | str | None) -> Decoder | None:
    """A :class:`Decoder` given as itself, as its options mapping or as a kind without options
    (``"greedy"``, ``"beam"``); None stays None."""
    if isinstance(spec, str):
        return Decoder(spec)
    return Decoder.from_options(spec) if isinstance(spec, Mapping) else spec
