"""Checkpoints cannot run code when loaded, damaged ones are refused in one line, RNG resumes exactly."""

from __future__ import annotations

import io
import pickle
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from inkpack.errors import ModelFileError
from inkpack.train.checkpoint import TRUST_ENV, atomic_save, load_checkpoint, rng_state, set_rng_state

MARKER_NAME = "payload-ran.txt"


def write_marker(path: str) -> int:
    """The 'payload': harmless, but proves code ran if the file appears."""
    Path(path).write_text("ran", encoding="utf-8")
    return 0


class Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (write_marker, (self.marker,))


def _ckpt(**extra) -> dict:
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.ones(1, 3)).sum().backward()
    opt.step()
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    return {"model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
            "rng": rng_state(), "alphabet": {"symbols": list("ab")}, "epoch": 1, "step_in_epoch": 2,
            "global_step": 7, "history": [{"epoch": 1, "cer": np.float64(0.25)}], "elapsed": 1.5,
            "best_cer": float("inf"), "epoch_loss": (0.5, 3), **extra}


def _draws() -> tuple:
    return (random.random(), random.getrandbits(64), np.random.rand(3).tolist(), np.random.randn(2).tolist(),
            torch.rand(4).tolist())


def test_round_trip_restores_rng_exactly(tmp_path):
    random.seed(11)
    np.random.seed(12)
    torch.manual_seed(13)
    np.random.randn()  # leaves a cached Gaussian (has_gauss=1) in numpy's legacy state
    path = tmp_path / "last.pt"
    atomic_save(_ckpt(), path)
    expected = _draws()
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    ckpt = load_checkpoint(path)
    set_rng_state(ckpt["rng"])
    assert _draws() == expected
    assert ckpt["global_step"] == 7 and ckpt["epoch_loss"] == (0.5, 3)
    assert ckpt["history"][0]["cer"] == 0.25 and type(ckpt["history"][0]["cer"]) is float
    model = torch.nn.Linear(3, 2)
    model.load_state_dict(ckpt["model"])
    # the file holds no type beyond tensors and plain data: loadable with torch's defaults alone
    torch.load(path, weights_only=True)


def test_pickled_code_is_refused_and_never_runs(tmp_path, monkeypatch):
    monkeypatch.delenv(TRUST_ENV, raising=False)
    marker = tmp_path / MARKER_NAME
    path = tmp_path / "last.pt"
    torch.save(_ckpt(extra=Payload(marker)), path)
    # control: the payload is real (an unsafe load runs it)
    torch.load(path, weights_only=False)
    assert marker.exists()
    marker.unlink()
    with pytest.raises(ModelFileError) as e:
        load_checkpoint(path)
    msg = str(e.value)
    assert "\n" not in msg and "refused" in msg and "write_marker" in msg and "start fresh" in msg
    assert not marker.exists()


def test_explicit_opt_in_loads_a_trusted_old_style_file(tmp_path, monkeypatch):
    marker = tmp_path / MARKER_NAME
    path = tmp_path / "last.pt"
    torch.save(_ckpt(extra=Payload(marker)), path)
    monkeypatch.setenv(TRUST_ENV, "1")
    assert load_checkpoint(path)["global_step"] == 7
    assert marker.exists()  # the user asked for it


def test_checkpoint_of_the_previous_format_still_resumes(tmp_path, monkeypatch):
    """Before: the rng entry held random.getstate() and the np.random.get_state() tuple (a pickled
    numpy array); loading it needs only numpy's array reconstruction, allowed without opt-in."""
    monkeypatch.delenv(TRUST_ENV, raising=False)
    random.seed(5)
    np.random.seed(6)
    torch.manual_seed(7)
    old = _ckpt()
    old["rng"] = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    path = tmp_path / "last.pt"
    torch.save(old, path)
    expected = _draws()
    np.random.seed(0)
    ckpt = load_checkpoint(path)
    set_rng_state(ckpt["rng"])
    assert _draws() == expected


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty", "not-a-dict", "foreign-dict"])
def test_damaged_checkpoint_is_one_line(tmp_path, damage):
    path = tmp_path / "last.pt"
    atomic_save(_ckpt(), path)
    data = path.read_bytes()
    if damage == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        path.write_bytes(b"\x80\x02}q\x00(X\x05\x00\x00\x00modelq" + bytes(range(256)) * 4)
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "not-a-dict":
        torch.save([1, 2, 3], path)
    else:
        torch.save({"model": {}}, path)
    with pytest.raises(ModelFileError) as e:
        load_checkpoint(path)
    msg = str(e.value)
    assert "\n" not in msg and str(path) in msg and "start fresh" in msg


def test_a_folder_in_place_of_the_checkpoint(tmp_path):
    (tmp_path / "last.pt").mkdir()
    with pytest.raises(ModelFileError, match="start fresh"):
        load_checkpoint(tmp_path / "last.pt")
    assert load_checkpoint(tmp_path / "none.pt") is None


def test_bad_rng_entry_is_one_line():
    with pytest.raises(ModelFileError, match="bad RNG state"):
        set_rng_state({"python": [3, [1, 2], None], "numpy": {}, "torch": torch.get_rng_state()})


def test_pickle_payload_class_is_really_a_payload(tmp_path):
    """Sanity of the fixture itself: plain pickle runs it too."""
    marker = tmp_path / MARKER_NAME
    pickle.load(io.BytesIO(pickle.dumps(Payload(marker))))
    assert marker.exists()
