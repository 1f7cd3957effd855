import cv2
import numpy as np
import pytest
import torch

from inkpack.errors import ConfigError
from inkpack.segment.model import load_segmenter
from inkpack.segment.output import page_to_pagexml
from inkpack.segment.postprocess import Line
from inkpack.train.segment import train


def make_pages(folder, n=2, w=160, h=220):
    folder.mkdir()
    rng = np.random.default_rng(0)
    for k in range(n):
        img = np.full((h, w), 210, np.uint8)
        lines = []
        for i, y in enumerate(range(40 + 5 * k, h - 30, 30)):
            x1 = int(rng.integers(100, w - 15))
            for x in range(15, x1, 6):   # "letters": small dark blobs sitting on the baseline
                cv2.rectangle(img, (x, y - int(rng.integers(6, 12))), (x + 3, y), 40, -1)
            lines.append(Line(np.array([[15, y], [x1, y]], float),
                              np.array([[12, y - 14], [x1 + 3, y - 14], [x1 + 3, y + 4], [12, y + 4]], float), 0, i))
        cv2.imwrite(str(folder / f"p{k}.jpg"), img)
        (folder / f"p{k}.xml").write_bytes(page_to_pagexml(lines, (w, h), image_name=f"p{k}.jpg"))
    return folder


def cfg(tmp_path, out, **kw):
    return {"train": str(tmp_path / "pages"), "val": str(tmp_path / "pages"), "out": str(tmp_path / out),
            "epochs": 2, "long_side": 96, "widths": [4, 8, 8, 8], "warmup_steps": 2, "checkpoint_steps": 1,
            "lr": 0.01, **kw}


@pytest.mark.parametrize("stop", [1, 3])
def test_tiny_training_resumes_exactly(tmp_path, stop):
    make_pages(tmp_path / "pages")
    full = train(cfg(tmp_path, "a"), log=lambda *_: None)
    assert full["epoch"] == 2 and full["step"] == 4 and len(full["history"]) == 2
    part = train(cfg(tmp_path, "b", max_steps=stop), log=lambda *_: None)
    assert part["stopped"] and part["step"] == stop
    rest = train(cfg(tmp_path, "b"), log=lambda *_: None)     # same command again: resumes
    assert rest["step"] == 4
    a = torch.load(tmp_path / "a" / "last.pt", weights_only=False)
    b = torch.load(tmp_path / "b" / "last.pt", weights_only=False)
    for k, v in a["model"].items():
        assert torch.equal(v, b["model"][k]), k
    la = [h["train_loss"] for h in full["history"]]
    lb = [h["train_loss"] for h in rest["history"]]
    assert la == lb and full["history"][-1]["val_loss"] == rest["history"][-1]["val_loss"]
    model, mcfg = load_segmenter(tmp_path / "a" / "best")
    assert mcfg["long_side"] == 96 and (tmp_path / "a" / "history.json").exists()


def test_unknown_config_key_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="bogus"):
        train({"train": str(tmp_path), "bogus": 1})
