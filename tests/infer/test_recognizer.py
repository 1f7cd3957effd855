"""inkpack.infer: one recognizer for every image path (API, service, CLI, report), its backends,
decoding against hand-computed values, and the one ``input_kind`` decision."""

from __future__ import annotations

import io
import json
import threading
import time

import numpy as np
import pytest
import torch
from PIL import Image

from inkpack.api import load
from inkpack.data.alphabet import Alphabet
from inkpack.errors import InkpackError, ModelFileError
from inkpack.infer.decode import recognitions
from inkpack.infer.preprocess import PreparedImage, prepare_image, preprocessor
from inkpack.infer.recognizer import Recognizer, open_recognizer, width_batches
from inkpack.models.io import input_kind, save_model
from inkpack.testing import line_png, make_line_model

ABC = Alphabet(list("abc "))  # classes: 0 blank, 1 a, 2 b, 3 c, 4 space
# frame: (class, probability); the rest of each frame's mass is spread over the other classes
PATH = [(1, 0.9), (1, 0.6), (0, 0.8), (2, 0.7), (0, 0.9), (4, 0.8), (0, 0.9), (3, 0.5), (3, 0.55), (0, 0.9)]


def _path_log_probs() -> np.ndarray:
    p = np.zeros((len(PATH), 5))
    for t, (c, q) in enumerate(PATH):
        p[t] = (1 - q) / 4
        p[t, c] = q
    return np.log(p)


class FixedBackend:
    """A backend answering ``PATH`` for every line, recording the batch sizes it was given."""

    name, width_factor = "fixed", 4

    def __init__(self, per_example: bool = False, thread_safe: bool = False, delay: float = 0.0) -> None:
        self.per_example, self.thread_safe, self.delay = per_example, thread_safe, delay
        self.calls: list[int] = []
        self.active = self.overlap = 0

    def logits(self, images):
        self.active += 1
        self.overlap += self.active > 1
        time.sleep(self.delay)
        self.calls.append(len(images))
        lp = torch.tensor(_path_log_probs(), dtype=torch.float32)[:, None].repeat(1, len(images), 1)
        self.active -= 1
        return lp, torch.full((len(images),), len(PATH))


def _fixed(**kw) -> Recognizer:
    return Recognizer(FixedBackend(**kw), {"preprocessing": {"height": 32}}, ABC, name="fixed")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_line_model(tmp_path_factory.mktemp("m"))


def test_decode_gives_hand_computed_text_confidences_and_positions():
    lp = _path_log_probs()[:, None]
    item = PreparedImage(torch.zeros(1, 32, 40), source_width=80)  # resized 40 px wide from 80
    (r,) = recognitions(lp, [len(PATH)], [item], ABC, width_factor=4)
    assert r.text == "ab c"
    np.testing.assert_allclose(r.confidences, [0.9, 0.7, 0.8, 0.55], atol=1e-9)  # max over each char's frames
    # frames a 0-1, b 3, space 5, c 7-8 → resized x [0,8) [12,16) [20,24) [28,36), doubled to the source
    assert r.positions == [(0, 16), (24, 32), (40, 48), (56, 72)]


def test_a_beam_text_that_differs_gets_the_alignment_of_its_own_path():
    # greedy reads "ab"; the decoder reads "ac": its c is best read at frames 2-3 (0.4 and 0.3
    # against blank's 0.1/3), so it gets confidence 0.4 and pixels [8, 16)
    rows = [{1: 0.7, 3: 0.2}, {0: 0.8}, {2: 0.5, 3: 0.4}, {2: 0.6, 3: 0.3}, {0: 0.9}, {0: 0.9}]
    p = np.zeros((len(rows), 5))
    for t, row in enumerate(rows):
        p[t] = (1 - sum(row.values())) / (5 - len(row))
        for c, q in row.items():
            p[t, c] = q

    class Second:
        def decode_labels(self, log_probs, alphabet):
            assert log_probs.shape == (len(rows), 5)
            return [1, 3]

    item = PreparedImage(torch.zeros(1, 32, 40), 40)
    (g,) = recognitions(np.log(p)[:, None], [len(rows)], [item], ABC, None, width_factor=4)
    assert (g.text, g.positions) == ("ab", [(0, 4), (8, 16)])
    (r,) = recognitions(np.log(p)[:, None], [len(rows)], [item], ABC, Second(), width_factor=4)
    assert (r.text, r.positions) == ("ac", [(0, 4), (8, 16)])
    assert r.confidences == pytest.approx([0.7, 0.4])


def test_width_batches_sort_stably_and_cut():
    assert width_batches([30, 10, 20, 10, 50], 2) == [[1, 3], [2, 0], [4]]
    assert width_batches([], 4) == []


def test_batch_dependent_backends_run_each_line_alone_and_others_batch():
    grays = [np.full((32, w), 200, np.uint8) for w in (40, 90, 17)]
    alone = _fixed(per_example=True)
    batched = _fixed()
    a, b = alone.recognize(grays), batched.recognize(grays)
    assert alone.engine.calls == [1, 1, 1] and batched.engine.calls == [3]
    assert [r.text for r in a] == [r.text for r in b] == ["ab c"] * 3


def test_backends_that_are_not_thread_safe_are_locked():
    grays = [np.full((32, 40), 200, np.uint8)]
    for safe, want_overlap in ((False, False), (True, True)):
        rec = _fixed(thread_safe=safe, delay=0.05)
        threads = [threading.Thread(target=rec.recognize, args=(grays,)) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert (rec.engine.overlap > 0) is want_overlap


def test_every_entry_point_reads_the_same(tiny):
    pngs = [line_png(t) for t in ("hello", "kew gardens in june", "tea")]
    grays = [np.asarray(Image.open(io.BytesIO(p)).convert("L")) for p in pngs]
    api = [r.text for r in load(str(tiny)).recognize(pngs)]
    rec = open_recognizer(str(tiny))
    assert rec.backend == "torch" and rec.name == "tiny" and rec.height == 32
    assert rec.recognize_prepared([rec.prepare(g) for g in grays], 1) == api  # evaluate / demo / report
    assert [r.text for r in Recognizer(rec.model, rec.config, rec.alphabet).recognize(grays)] == api
    again = Recognizer(rec.engine, rec.config, rec.alphabet, name="again", batch_size=1)
    assert again.name == "again" and [r.text for r in again.recognize(pngs)] == api
    with pytest.raises(InkpackError, match="image model"):
        rec.recognize({"strokes": [[[0, 0, 0]]]})


def test_recognizer_takes_any_backend_and_preprocessing():
    rec = Recognizer(FixedBackend(), {"arch": "stub"}, ABC, preprocess=lambda g, _cfg: torch.zeros(1, 32, g.shape[1]),
                     height=32)
    assert rec.input_kind == "image" and rec.height == 32
    r = rec.recognize(np.full((32, 40), 9, np.uint8))
    assert r.text == "ab c" and r.positions == [(0, 8), (12, 16), (20, 24), (28, 36)]


def test_preprocessing_is_the_architectures_capability():
    assert preprocessor({"arch": "darknet-dblstm"}) is prepare_image
    assert preprocessor({"arch": "mdlstm"}) is prepare_image
    assert preprocessor({}) is prepare_image  # no architecture (an ONNX sidecar of old): the image one


def test_input_kind_is_decided_in_one_place(tiny, tmp_path):
    from inkpack.deploy.export import export_onnx, sidecar_path
    from inkpack.models import build_model

    assert input_kind({"input_kind": "char", "arch": "darknet-dblstm"}) == "char"  # the file's field wins
    assert input_kind({"arch": "online-blstm"}) == "ink"  # else the architecture's
    assert input_kind({"arch": "nope"}) == "image"
    assert input_kind(str(tiny)) == "image"  # a model path
    ink = save_model(build_model("online-blstm", 5, hidden=4, layers=1),
                     {"arch": "online-blstm", "options": {"hidden": 4, "layers": 1},
                      "alphabet": Alphabet(list("abcd")).to_dict()}, tmp_path / "ink")
    assert input_kind(str(ink)) == "ink"
    onnx = export_onnx(tiny, tmp_path / "t.onnx")
    assert input_kind(onnx) == "image"
    side = json.loads(sidecar_path(onnx).read_text())
    side["onnx"]["input_kind"] = "ink"
    sidecar_path(onnx).write_text(json.dumps(side))
    assert input_kind(str(onnx)) == "ink"  # the sidecar's
    assert open_recognizer(onnx).input_kind == "ink"  # the sidecar's kind picks the backend
    assert load(str(ink)).input_kind == "ink" and load(str(tiny)).input_kind == "image"
    with pytest.raises(ModelFileError, match="missing.onnx: ONNX model not found"):
        input_kind(tmp_path / "missing.onnx")
