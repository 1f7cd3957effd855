import pytest

from inkpack.data.alphabet import BLANK, UNK_SYMBOL, Alphabet
from inkpack.errors import InkpackError, UnknownCharacterError


def test_labels_start_after_blank_and_round_trip():
    a = Alphabet.from_texts(["bca", "ab "])
    assert a.symbols == [" ", "a", "b", "c"]
    assert a.num_classes == 5  # blank + 4
    assert a.encode("cab") == [4, 2, 3]
    assert a.decode([4, 2, 3]) == "cab"
    assert a.decode([BLANK, 4, BLANK]) == "c"


def test_nfc_composed_and_decomposed_forms_are_one_symbol():
    composed, decomposed = "caf\u00e9", "cafe\u0301"
    a = Alphabet.from_texts([decomposed])
    assert "\u00e9" in a.symbols and "\u0301" not in a.symbols
    assert a.encode(composed) == a.encode(decomposed)


def test_unknown_policies():
    a = Alphabet.from_texts(["abc"], with_unk=True)
    with pytest.raises(UnknownCharacterError, match="'x'"):
        a.encode("axb")
    assert a.encode("axb", policy="skip") == [1, 2]
    assert a.encode("axb", policy="unk") == [1, 4, 2]
    assert a.decode(a.encode("axb", policy="unk")) == "a" + UNK_SYMBOL + "b"
    assert a.unknown("xyax") == ["x", "y"]
    with pytest.raises(UnknownCharacterError):
        Alphabet.from_texts(["abc"]).encode("x", policy="unk")


def test_serialisation_and_bad_input():
    a = Alphabet.from_texts(["héllo wörld"], with_unk=True)
    b = Alphabet.from_dict(a.to_dict())
    assert b.symbols == a.symbols and b.with_unk and len(b) == len(a)
    with pytest.raises(InkpackError):
        Alphabet(["a", "a"])
    with pytest.raises(InkpackError):
        Alphabet(["ab"])
    with pytest.raises(UnknownCharacterError):
        a.decode([99])
