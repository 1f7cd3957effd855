"""The Python API takes a beam/LM decoder; with an LM the text follows the LM's preference."""

from pathlib import Path

import inkpack

SAMPLE = str(Path(__file__).resolve().parents[1] / "samples" / "hooker" / "JDH_2_16_39_002_r2l11.jpg")


def test_load_with_beam_decoder_matches_greedy_without_lm():
    sample = SAMPLE
    greedy = inkpack.load(decoder="greedy").recognize(sample)
    beam = inkpack.load(decoder={"kind": "beam", "beam": 8}).recognize(sample)
    assert beam.text  # a real transcription
    # without an LM, a beam over a peaked CTC output finds the greedy text in practice here;
    # when it does, the greedy alignment (confidences, positions) is kept
    if beam.text == greedy.text:
        assert beam.confidences == greedy.confidences and beam.positions == greedy.positions
    else:
        assert len(beam.confidences) == len(beam.text) == len(beam.positions)


def test_lm_decoder_through_the_api(tmp_path):
    from inkpack.decode.lm import CharNgramLM

    lm = CharNgramLM.train(["& Co is furious. If danger"] * 20, order=4)
    path = tmp_path / "lm.arpa"
    lm.save(str(path))
    res = inkpack.load(decoder={"kind": "beam+lm", "lm": str(path), "alpha": 2.0}).recognize(
        SAMPLE
    )
    # a strong LM trained on exactly this line's text pulls the reading towards it
    greedy = inkpack.load().recognize(SAMPLE)
    from rapidfuzz.distance import Levenshtein

    ref = "& Co is furious. If danger"
    assert Levenshtein.distance(res.text, ref) <= Levenshtein.distance(greedy.text, ref)
