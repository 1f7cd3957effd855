"""A resumed run takes exactly the step the uninterrupted run takes."""

import json

import torch

from conftest import make_tsv
from inkpack.train.loop import TrainConfig, Trainer, needed_frames


def _cfg(root, out, max_steps):
    tsv = make_tsv(root, ["the cat", "a dog", "hello", "ink pack", "dear sir", "to be", "kew", "tea"])
    return TrainConfig(
        train=str(tsv), val=str(tsv), out=str(out), height=32, batch_size=3, epochs=3,
        max_steps=max_steps, progress=False, options={"feat_dim": 32, "lstm_hidden": 16}, ckpt_every=1000,
    )


def _run(cfg):
    tr = Trainer(cfg)
    tr.setup()
    tr.fit()
    return tr


def test_resume_after_interruption_equals_uninterrupted(tmp_path):
    full = _run(_cfg(tmp_path / "d", tmp_path / "full", max_steps=5))
    # interrupted after 2 steps (checkpoint written at the stop), then restarted
    _run(_cfg(tmp_path / "d", tmp_path / "cut", max_steps=2))
    resumed = _run(_cfg(tmp_path / "d", tmp_path / "cut", max_steps=5))
    assert resumed.global_step == full.global_step == 5
    for (k, a), b in zip(full.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), k
    assert resumed.opt.param_groups[0]["lr"] == full.opt.param_groups[0]["lr"]


def test_epoch_logs_plot_and_best_model(tmp_path):
    cfg = _cfg(tmp_path / "d", tmp_path / "run", max_steps=0)
    cfg.epochs = 2
    _run(cfg)
    hist = json.loads((tmp_path / "run" / "history.json").read_text())
    assert [h["epoch"] for h in hist] == [1, 2]
    assert {"train_loss", "val_cer", "val_wer", "lines_per_s", "elapsed_s"} <= set(hist[0])
    assert (tmp_path / "run" / "history.csv").read_text().startswith("epoch,")
    assert (tmp_path / "run" / "curves.png").read_bytes()[:4] == b"\x89PNG"
    best = json.loads((tmp_path / "run" / "best.json").read_text())
    assert best["arch"] == "darknet-dblstm" and best["preprocessing"]["height"] == 32


def test_long_labels_are_skipped_and_counted(tmp_path):
    from PIL import Image

    root = tmp_path / "d"
    tsv = make_tsv(root, ["fine", "ok"])
    Image.new("L", (8, 32), 230).save(root / "img" / "tiny.png")
    with open(tsv, "a", encoding="utf-8") as f:
        f.write("img/tiny.png\tthis label is far too long for eight pixels\n")
        f.write("img/gone.png\tmissing file\n")
    cfg = TrainConfig(train=str(tsv), out=str(tmp_path / "o"), height=32, batch_size=2, epochs=1,
                      progress=False, options={"feat_dim": 16, "lstm_hidden": 8})
    tr = Trainer(cfg)
    tr.setup()
    assert len(tr.train_set) == 2
    skipped = (tmp_path / "o" / "skipped.txt").read_text()
    assert "tiny: label needs" in skipped and "gone.png: file not found" in skipped
    tr.fit()


def test_needed_frames_counts_repeats():
    assert needed_frames([1, 2, 3]) == 3
    assert needed_frames([1, 1, 2, 2, 2]) == 5 + 3


def test_batches_built_in_workers_train_exactly_as_in_the_trainer(tmp_path):
    """--workers: augmentation and packing in DataLoader processes, same batches, same weights;
    a run interrupted and resumed with workers still equals the uninterrupted one."""
    def cfg(out, steps, workers):
        c = _cfg(tmp_path / "d", tmp_path / out, max_steps=steps)
        c.batching, c.workers = "pack", workers
        return c

    inline = _run(cfg("inline", 5, 0))
    _run(cfg("cut", 2, 2))
    ahead = _run(cfg("cut", 5, 2))
    assert ahead.global_step == inline.global_step == 5
    for (k, a), b in zip(inline.model.state_dict().items(), ahead.model.state_dict().values()):
        assert torch.equal(a, b), k
    assert any(not torch.equal(a, b) for a, b in zip(inline.model.state_dict().values(),
                                                     _run(cfg("other", 4, 0)).model.state_dict().values()))
