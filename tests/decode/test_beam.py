import itertools
import math

import numpy as np
import pytest

from inkpack.data.alphabet import Alphabet
from inkpack.decode.beam import Decoder, LMScorer, beam_search
from inkpack.decode.greedy import collapse, greedy_decode, log_softmax
from inkpack.decode.lexicon import Lexicon
from inkpack.decode.lm import CharNgramLM
from inkpack.errors import InkpackError

EXACT = {"cutoff_logp": None, "top_k": None, "blank_skip": None, "beam_prune_logp": None}


def all_labellings(lp):
    """ln P(labelling) for every labelling, by summing over all K^T frame paths."""
    n_t, k = lp.shape
    tot = {}
    for path in itertools.product(range(k), repeat=n_t):
        lab = tuple(collapse(np.array(path)))
        tot[lab] = np.logaddexp(tot.get(lab, -np.inf), lp[np.arange(n_t), path].sum())
    return tot


def spell(alphabet, frames, k=None):
    """Log-probs from per-frame dicts {char or '-' (blank): prob}; the rest share what is left."""
    k = k or alphabet.num_classes
    out = np.zeros((len(frames), k))
    for t, f in enumerate(frames):
        idx = {(0 if c == "-" else alphabet.encode(c)[0]): p for c, p in f.items()}
        rest = (1 - sum(idx.values())) / (k - len(idx))
        out[t] = rest
        for i, p in idx.items():
            out[t, i] = p
    return np.log(out)


@pytest.mark.parametrize("seed", range(6))
def test_beam_equals_exhaustive_path_sum(seed):
    rng = np.random.default_rng(seed)
    lp = log_softmax(rng.normal(size=(5, 3)) * 2.0)
    exact = all_labellings(lp)
    hyps = beam_search(lp, beam=1000, n_best=1000, **EXACT)
    assert {tuple(h.labels) for h in hyps} == set(exact)
    for h in hyps:
        assert h.ctc_logp == pytest.approx(exact[tuple(h.labels)], abs=1e-9)
    assert tuple(hyps[0].labels) == max(exact, key=exact.get)


@pytest.mark.parametrize("seed", range(4))
def test_beam_with_lm_equals_exhaustive_rescoring(seed):
    alphabet = Alphabet(["a", "b"])
    lm = CharNgramLM.train(["ab", "aab", "ba", "abab", "b"], order=2)
    scorer = LMScorer(lm, alphabet)
    alpha, beta = 0.8, 0.3
    rng = np.random.default_rng(100 + seed)
    lp = log_softmax(rng.normal(size=(5, 3)) * 1.5)
    total = {lab: v + alpha * lm.sentence_logprob(alphabet.decode(lab), natural=True)
             + beta * len(lab) for lab, v in all_labellings(lp).items()}
    hyps = beam_search(lp, beam=1000, lm=scorer, alpha=alpha, beta=beta, n_best=3, **EXACT)
    best = sorted(total, key=total.get, reverse=True)[:3]
    assert [tuple(h.labels) for h in hyps] == best
    assert [h.score for h in hyps] == pytest.approx([total[b] for b in best], abs=1e-9)


def reference_beam(lp, beam, scorer, alpha, beta):
    """A plain prefix beam search: every prefix rescored from scratch, no pruning but the width."""
    def lm_logp(pre, eos=False):  # ln P_lm of the prefix's characters (and </s>)
        s, total = scorer.initial(), 0.0
        for c in pre:
            total += scorer.lookup(s)[0][c]
            s = scorer.advance(s, c)
        return total + (scorer.lookup(s)[1] if eos else 0.0)

    def score(pre, v, eos=False):
        return np.logaddexp(*v) + alpha * lm_logp(pre, eos) + beta * len(pre)

    beams = {(): (0.0, -math.inf)}  # prefix -> (ln P(ends in blank), ln P(ends in a label))
    for row in lp:
        nxt = {}
        for pre, (pb, pnb) in beams.items():
            tot = np.logaddexp(pb, pnb)
            e = nxt.get(pre, (-math.inf, -math.inf))
            nxt[pre] = (np.logaddexp(e[0], tot + row[0]),
                        np.logaddexp(e[1], pnb + row[pre[-1]]) if pre else e[1])
            for c in range(1, lp.shape[1]):
                new = pre + (c,)
                e = nxt.get(new, (-math.inf, -math.inf))
                nxt[new] = (e[0], np.logaddexp(e[1], (pb if pre and pre[-1] == c else tot) + row[c]))
        beams = dict(sorted(nxt.items(), key=lambda kv: score(*kv), reverse=True)[:beam])
    return max(beams, key=lambda pre: score(pre, beams[pre], eos=True))


@pytest.mark.parametrize("seed", range(5))
def test_narrow_beam_with_lm_equals_a_plain_prefix_beam_search(seed):
    """Narrow beams, where the search skips the extensions that cannot enter the beam, find what
    a plain prefix beam search of the same width finds."""
    alphabet = Alphabet(["a", "b", "c"])
    lm = CharNgramLM.train(["abc", "aab", "cab", "abca", "bc", "ccab"], order=3)
    scorer = LMScorer(lm, alphabet)
    rng = np.random.default_rng(200 + seed)
    lp = log_softmax(rng.normal(size=(12, 4)) * 2.0)
    for beam in (2, 3, 5):
        got = beam_search(lp, beam=beam, lm=scorer, alpha=0.7, beta=0.4, **{**EXACT, "top_k": 3})[0]
        assert tuple(got.labels) == reference_beam(lp, beam, scorer, 0.7, 0.4), beam


def test_beam_one_equals_greedy_on_peaked_outputs():
    rng = np.random.default_rng(7)
    for _ in range(20):
        t, k = int(rng.integers(5, 60)), 12
        x = rng.normal(size=(t, k))
        x[np.arange(t), rng.integers(0, k, size=t)] += 9.0
        lp = log_softmax(x)
        assert beam_search(lp, beam=1)[0].labels == greedy_decode(lp)[0]
        # the default prunings do not change the answer of a wide beam on such inputs
        assert beam_search(lp, beam=8)[0].labels == beam_search(lp, beam=8, **EXACT)[0].labels


def test_lm_fixes_an_ambiguous_character():
    alphabet = Alphabet(list(" behnt"))
    lm = CharNgramLM.train(["the hen", "then the", "the ten", "the the", "ben then"], order=3)
    # "t", then a frame that looks slightly more like "b" than "h", then "e"
    lp = spell(alphabet, [{"t": 0.9}, {"-": 0.9}, {"b": 0.5, "h": 0.45}, {"-": 0.9}, {"e": 0.9}])
    assert Decoder("greedy").decode(lp, alphabet) == "tbe"
    assert Decoder("beam", beam=8).decode(lp, alphabet) == "tbe"
    assert Decoder("beam+lm", beam=8, lm=lm, alpha=0.5).decode(lp, alphabet) == "the"


def test_lexicon_constrains_output(tmp_path):
    alphabet = Alphabet(list(" acot,"))
    frames = [{"a": 0.9}, {" ": 0.9}, {"c": 0.9}, {"o": 0.55, "a": 0.4}, {"t": 0.9}, {",": 0.9}]
    lp = spell(alphabet, frames)
    assert Decoder("beam", beam=8).decode(lp, alphabet) == "a cot,"
    words = tmp_path / "words.txt"
    words.write_text("a\ncat\t12\n", encoding="utf-8")
    # the comma is transparent: "cat," is the lexicon word "cat"
    assert Decoder("beam", beam=8, lexicon=str(words)).decode(lp, alphabet) == "a cat,"
    strict = Decoder("beam", beam=8, lexicon=Lexicon(["a", "cat"]), oov_penalty=-math.inf)
    assert strict.decode(lp, alphabet) == "a cat,"
    # OOV words are allowed: with no penalty the acoustically better "cot" wins again
    no_penalty = Decoder("beam", beam=8, lexicon=str(words), oov_penalty=0.0)
    assert no_penalty.decode(lp, alphabet) == "a cot,"
    # and a big enough acoustic margin beats a finite penalty
    lp2 = spell(alphabet, frames[:3] + [{"o": 0.999}] + frames[4:])
    mild = Decoder("beam", beam=8, lexicon=str(words), oov_penalty=-2.0)
    assert mild.decode(lp2, alphabet) == "a cot,"


def test_lexicon_matching_rules_and_errors(tmp_path):
    lex = Lexicon(["Dyer", "THE", "don't"])
    assert "dyer," in lex and "The" in lex and "dont" in lex and "21" in lex and "&" in lex
    assert "dye" not in lex
    assert "the" not in Lexicon(["THE"], case_sensitive=True)
    with pytest.raises(InkpackError, match="no words"):
        Lexicon([])
    with pytest.raises(InkpackError, match="no words"):
        Lexicon(["123", "--"])
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n", encoding="utf-8")
    with pytest.raises(InkpackError, match="empty.txt"):
        Lexicon.load(empty)
    with pytest.raises(InkpackError, match="nofile.txt: lexicon file not found"):
        Decoder("beam", lexicon=str(tmp_path / "nofile.txt"))
    alphabet = Alphabet(list(" act"))
    with pytest.warns(UserWarning, match="1 words use letters the model cannot emit"):
        trie = Lexicon(["cat", "dog"]).bind(alphabet)
    assert trie.num_words == 1
    with pytest.raises(InkpackError, match="no lexicon word can be written"):
        Lexicon(["dog", "xyz"]).bind(alphabet)


def test_lm_missing_characters_warn():
    lm = CharNgramLM.train(["ab ba"], order=2)
    with pytest.warns(UserWarning, match="never seen 'z'"):
        LMScorer(lm, Alphabet(list(" abz")))


def test_decoder_options_and_batches():
    alphabet = Alphabet(list("ab"))
    rng = np.random.default_rng(3)
    x = rng.normal(size=(12, 2, 3))
    x[np.arange(12), 0, rng.integers(0, 3, 12)] += 8
    x[np.arange(12), 1, rng.integers(0, 3, 12)] += 8
    greedy, beam = Decoder("greedy"), Decoder.from_options({"kind": "beam", "beam": 4})
    want = [alphabet.decode(greedy_decode(x[:, 0])[0]), alphabet.decode(greedy_decode(x[:7, 1])[0])]
    assert greedy.decode_batch(x, alphabet, lengths=[12, 7]) == want
    assert beam.decode_batch(x, alphabet, lengths=[12, 7]) == want  # raw logits are normalised
    assert beam.decode_batch([x[:, 0], x[:7, 1]], alphabet) == want
    with pytest.raises(InkpackError, match="expected log-probs"):
        beam.decode(x[:, 0, :2], alphabet)
    with pytest.raises(InkpackError, match="needs a language model"):
        Decoder("beam+lm")
    with pytest.raises(InkpackError, match="unknown kind"):
        Decoder("viterbi")
    with pytest.raises(InkpackError, match="needs kind 'beam' or 'beam\\+lm'"):
        Decoder("greedy", lexicon=Lexicon(["a"]))
    with pytest.raises(InkpackError, match="unknown option"):
        Decoder.from_options({"kind": "beam", "width": 3})
