import math
import random
from collections import Counter

import numpy as np
import pytest

from inkpack.decode.lm import BOS_ID, CharNgramLM
from inkpack.decode.lm_cli import lm_eval, lm_train, read_texts
from inkpack.errors import InkpackError


def markov_corpus(n_lines=200, seed=9):
    """Lines from a random Markov chain over 'a'..'j' and space whose states differ in fan-out,
    so that the count-of-counts n1..n4 of orders 2 and 3 all differ from zero."""
    rng = random.Random(seed)
    letters = "abcdefghij "
    nxt = {ch: "".join(rng.choice(letters) for _ in range(1 + i % 6))
           for i, ch in enumerate(letters)}
    out = []
    for _ in range(n_lines):
        ch, s = rng.choice(letters[:-1]), []
        for _ in range(rng.randint(1, 12)):
            s.append(ch)
            ch = rng.choice(nxt[ch])
        out.append("".join(s))
    return out


def reference_kn(texts, order):
    """Interpolated modified Kneser-Ney written directly from Chen & Goodman's formulas."""
    vocab = sorted(set("".join(texts))) + ["</s>", "<unk>"]
    c = Counter()
    for t in texts:
        s = ["<s>"] + list(t) + ["</s>"]
        for i in range(1, len(s)):
            for n in range(1, min(order, i + 1) + 1):
                c[tuple(s[i - n + 1: i + 1])] += 1

    def adj(g):
        if len(g) == order or g[0] == "<s>":
            return c[g]
        return len({x[0] for x in c if len(x) == len(g) + 1 and x[1:] == g})

    def discounts(n):
        cc = Counter(adj(g) for g in c if len(g) == n)
        if all(cc[i] for i in (1, 2, 3, 4)):
            y = cc[1] / (cc[1] + 2 * cc[2])
            d = [0, 1 - 2 * y * cc[2] / cc[1], 2 - 3 * y * cc[3] / cc[2], 3 - 4 * y * cc[4] / cc[3]]
            if all(0 < d[i] < i for i in (1, 2, 3)):
                return d
        return [0, 0.5, 1.0, 1.5]

    def prob(w, h):
        grams = [g for g in c if len(g) == len(h) + 1 and g[:-1] == h]
        if not grams:
            return prob(w, h[1:])
        d = discounts(len(h) + 1)
        tot = sum(adj(g) for g in grams)
        gamma = sum(d[min(adj(g), 3)] for g in grams) / tot
        a = adj(h + (w,)) if h + (w,) in c else 0
        lower = prob(w, h[1:]) if h else 1 / len(vocab)
        return (a - d[min(a, 3)]) / tot + gamma * lower

    return prob, vocab, discounts


def test_kneser_ney_matches_reference_formulas():
    texts = markov_corpus()
    order = 3
    lm = CharNgramLM.train(texts, order=order)
    prob, vocab, discounts = reference_kn(texts, order)
    # the corpus exercises the estimated discounts, not only the fixed fallback
    assert discounts(2) != [0, 0.5, 1.0, 1.5] and discounts(3) != [0, 0.5, 1.0, 1.5]
    seen = [t[:i] for t in texts[:6] for i in range(1, len(t))]  # contexts with stored n-grams
    contexts = ["", "a", "ab", "b c", "ca", "cc", "  ", "bb", "jf", "e "] + seen
    for ctx in contexts:
        hist = tuple((["<s>"] + list(ctx))[-(order - 1):])
        for w in vocab:
            got = lm.score(ctx, "</s>" if w == "</s>" else ("\x00" if w == "<unk>" else w))
            assert got == pytest.approx(math.log10(prob(w, hist)), abs=1e-9), (ctx, w)


def test_unigram_values_by_hand():
    # KN, order 1, texts "ab", "a": counts a:2 b:1 </s>:2, too few for modified discounts, so
    # D = (0.5, 1, 1.5); gamma = (1*0.5 + 2*1)/5 = 0.5; vocab a, b, </s>, <unk> -> 0.5/4 each
    lm = CharNgramLM.train(["ab", "a"], order=1)
    assert 10 ** lm.score("", "a") == pytest.approx(1 / 5 + 0.125)
    assert 10 ** lm.score("", "b") == pytest.approx(0.5 / 5 + 0.125)
    assert 10 ** lm.score("", "</s>") == pytest.approx(1 / 5 + 0.125)
    assert 10 ** lm.score("", "z") == pytest.approx(0.125)  # unseen -> <unk>
    # Witten-Bell, texts "ab": N=3 tokens, T=3 types: p(w) = (c(w) + T/4) / (N + T)
    wb = CharNgramLM.train(["ab"], order=1, smoothing="witten-bell")
    assert 10 ** wb.score("", "a") == pytest.approx((1 + 0.75) / 6)
    assert 10 ** wb.score("", "?") == pytest.approx(0.75 / 6)


@pytest.mark.parametrize("smoothing", ["kneser-ney", "witten-bell"])
@pytest.mark.parametrize("order", [1, 2, 4])
def test_distribution_sums_to_one(smoothing, order):
    lm = CharNgramLM.train(markov_corpus(60, seed=1), order=order, smoothing=smoothing)
    for ctx in ["", "a", "abca", "c c", "zzz"]:
        d = lm.distribution(lm.state_for(ctx))
        p = np.exp(np.delete(d, [0, BOS_ID]))  # every token that can follow (not <s>)
        assert p.sum() == pytest.approx(1.0, abs=1e-9)


def test_arpa_round_trip(tmp_path):
    texts = markov_corpus(80, seed=2) + ["é ∞ £"]
    lm = CharNgramLM.train(texts, order=4)
    path = tmp_path / "lm.arpa"
    lm.save(path)
    text = path.read_text(encoding="utf-8")
    assert "<space>" in text and "\t \t" not in text
    back = CharNgramLM.load(path)
    assert back.order == 4 and back.num_ngrams() == lm.num_ngrams()
    for ctx in ["", "ab", "c a", "é ∞", "qq"]:
        np.testing.assert_allclose(back.distribution(back.state_for(ctx))[1:],
                                   lm.distribution(lm.state_for(ctx))[1:], atol=1e-5)
    back.save(tmp_path / "again.arpa")
    assert (tmp_path / "again.arpa").read_text(encoding="utf-8") == text


KENLM_STYLE = """
\\data\\
ngram 1=5
ngram 2=3

\\1-grams:
-99\t<s>\t-0.30103
-0.5\t</s>
-1\t<unk>
-0.4\ta\t-0.2
-0.6\t\u2581

\\2-grams:
-0.1\t<s> a
-0.2\ta \u2581
-0.3\ta a

\\end\\
"""


def test_reads_kenlm_style_file_with_backoff(tmp_path):
    p = tmp_path / "k.arpa"
    p.write_text(KENLM_STYLE, encoding="utf-8")
    lm = CharNgramLM.load(p)
    assert lm.score("", "a") == pytest.approx(-0.1)  # explicit bigram <s> a
    assert lm.score("a", " ") == pytest.approx(-0.2)  # '▁' is the space
    assert lm.score("a", "</s>") == pytest.approx(-0.2 - 0.5)  # backoff(a) + p(</s>)
    assert lm.score("", " ") == pytest.approx(-0.30103 - 0.6)  # backoff(<s>) + p(space)
    assert lm.score("a ", "a") == pytest.approx(-0.4)  # no context for the space: unigram
    assert lm.score("", "z") == pytest.approx(-0.30103 - 1)  # unknown -> <unk>


@pytest.mark.parametrize("content, needle", [
    ("", ":1: not an ARPA file"),
    ("\\data\\\nngram 1=1\n\n\\1-grams:\n-x\t<s>\n\\end\\\n", ":5: bad number"),
    ("\\data\\\nngram 1=2\n\n\\1-grams:\n-1\t<s>\n-1\tab\n\\end\\\n", ":6: token 'ab'"),
    ("\\data\\\nngram 1=3\n\n\\1-grams:\n-1\t<s>\n-1\t</s>\n\\end\\\n", "header says 3 1-grams"),
    ("\\data\\\nngram 1=2\n\n\\1-grams:\n-1\t<s>\n-1\t</s>\n", "truncated"),
    ("\\data\\\nngram 1=2\nngram 2=1\n\n\\1-grams:\n-1\t<s>\n-1\t</s>\n\n\\2-grams:\n-1\t<s> q\n"
     "\\end\\\n", ":10: token 'q' is not among the unigrams"),
    ("\\data\\\nngram 1=2\n\n\\1-grams:\n-1\t<s>\t-1\t0\n-1\t</s>\n\\end\\\n", ":5: expected"),
    ("\\data\\\nngram 1=1\n\n\\1-grams:\n-1\ta\n\\end\\\n", "must include <s> and </s>"),
])
def test_bad_arpa_files_name_file_and_line(tmp_path, content, needle):
    p = tmp_path / "bad.arpa"
    p.write_text(content, encoding="utf-8")
    with pytest.raises(InkpackError, match="bad.arpa") as e:
        CharNgramLM.load(p)
    assert needle in str(e.value)


def test_missing_lm_file(tmp_path):
    with pytest.raises(InkpackError, match="nope.arpa: language model file not found"):
        CharNgramLM.load(tmp_path / "nope.arpa")


def test_train_errors():
    with pytest.raises(InkpackError):
        CharNgramLM.train(["", ""], order=3)
    with pytest.raises(InkpackError):
        CharNgramLM.train(["ab"], order=0)
    with pytest.raises(InkpackError):
        CharNgramLM.train(["ab"], smoothing="add-one")


def test_perplexity_is_per_token_including_end(tmp_path):
    lm = CharNgramLM.train(["ab", "ba"], order=2)
    texts = ["ab", "b"]
    ln = sum(lm.sentence_logprob(t, natural=True) for t in texts)
    by_hand = sum(lm.score(t[:i], t[i], natural=True) for t in texts for i in range(len(t)))
    by_hand += sum(lm.score(t, "</s>", natural=True) for t in texts)
    assert ln == pytest.approx(by_hand)
    r = lm.perplexity(texts)
    assert r["tokens"] == 5 and r["perplexity"] == pytest.approx(math.exp(-ln / 5))


def test_lm_cli_reads_manifests_and_plain_text(tmp_path):
    tsv = tmp_path / "m.tsv"
    tsv.write_text("image\ttext\nl/1.jpg\tthe cat\nl/2.jpg\tcaf\u0065\u0301\n\n", encoding="utf-8")
    plain = tmp_path / "p.txt"
    plain.write_text("a dog\n\nthe end\n", encoding="utf-8")
    assert read_texts(str(tsv)) == ["the cat", "caf\u00e9"]  # NFC
    assert read_texts(str(plain)) == ["a dog", "the end"]
    out = tmp_path / "sub" / "lm.arpa"
    stats = lm_train([str(tsv), str(plain)], order=3, out=str(out))
    assert stats["lines"] == 4 and out.is_file()
    lm = CharNgramLM.load(out)
    assert lm.order == 3 and lm.score("the ", "c") > lm.score("the ", "x")
    assert lm_eval(str(out), [str(plain)])["lines"] == 2
    bad = tmp_path / "bad.tsv"
    bad.write_text("id\timage\ttext\n1\tx.jpg\n", encoding="utf-8")
    with pytest.raises(InkpackError, match="bad.tsv:2"):
        read_texts(str(bad))
    with pytest.raises(InkpackError, match="missing.txt"):
        lm_train([str(tmp_path / "missing.txt")], order=3, out=str(out))


def test_read_texts_takes_iamondb_npz_transcriptions(tmp_path):
    import numpy as np

    from inkpack.data.formats.iamondb import write_iamondb_npz
    from inkpack.data.ink import Ink

    strokes = [np.array([[0.0, 0.0], [1.0, 2.0]])]
    inks = [Ink.from_xy(strokes, label=t, id=f"a01-000u-0{i}") for i, t in enumerate(["to be", "cafe\u0301"])]
    write_iamondb_npz(tmp_path / "lines.npz", inks)
    assert read_texts(str(tmp_path / "lines.npz")) == ["to be", "caf\u00e9"]


def test_a_file_read_twice_is_parsed_once_until_it_changes(tmp_path):
    import os

    path = tmp_path / "m.arpa"
    CharNgramLM.train(["abc", "abd"], order=2).save(path)
    first = CharNgramLM.load(path)
    assert CharNgramLM.load(path) is first  # unchanged: the same model
    CharNgramLM.train(["xyz", "xy"], order=2).save(path)
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # a later modification time
    second = CharNgramLM.load(path)
    assert second is not first and "x" in second.index and "x" not in first.index
