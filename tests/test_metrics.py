import pytest

from inkpack.metrics import cer, wer


def test_cer_hand_computed():
    # "kitten" -> "sitting": 3 edits over 7 reference chars
    assert cer(["kitten"], ["sitting"]) == pytest.approx(3 / 7)
    # corpus level: (1 + 0) / (3 + 2)
    assert cer(["abd", "xy"], ["abc", "xy"]) == pytest.approx(1 / 5)
    assert cer([""], ["abc"]) == 1.0


def test_wer_hand_computed():
    # one substitution and one deletion over 4 words
    assert wer(["the cat sat"], ["the dog sat down"]) == pytest.approx(2 / 4)
    assert wer(["a b", "c"], ["a b", "c"]) == 0.0
    # extra whitespace does not count as words
    assert wer(["a  b "], ["a b"]) == 0.0
