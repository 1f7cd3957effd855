"""Weight EMA: what is validated and saved, kept exactly across a resume; --device on the CPU."""

import torch

from conftest import make_tsv
from inkpack.models.io import load_model
from inkpack.train.ema import Precision, WeightEMA
from inkpack.train.loop import TrainConfig, Trainer

WORDS = ["the cat", "a dog", "hello", "ink pack", "dear sir", "to be", "kew", "tea"]


def _cfg(root, out, max_steps, epochs=3, ema=0.9):
    tsv = make_tsv(root, WORDS)
    return TrainConfig(
        train=str(tsv), val=str(tsv), out=str(out), height=32, batch_size=3, epochs=epochs,
        max_steps=max_steps, progress=False, options={"feat_dim": 32, "lstm_hidden": 16},
        ckpt_every=1000, ema=ema, device="cpu",
    )


def _run(cfg):
    tr = Trainer(cfg)
    tr.setup()
    tr.fit()
    return tr


def test_ema_update_is_the_exponential_average():
    torch.manual_seed(0)
    m = torch.nn.Linear(3, 2)
    ema = WeightEMA(m, 0.75)
    w0 = m.weight.detach().clone()
    ema.update(m)  # first update copies
    with torch.no_grad():
        m.weight.add_(1.0)
    ema.update(m)
    assert torch.allclose(ema.module.weight, 0.75 * w0 + 0.25 * (w0 + 1.0))


def test_best_model_holds_the_ema_weights_not_the_raw_ones(tmp_path):
    tr = _run(_cfg(tmp_path / "d", tmp_path / "run", max_steps=0, epochs=1))
    model, _, _ = load_model(str(tmp_path / "run" / "best"))
    saved = model.state_dict()
    ema = tr.ema.module.state_dict()
    raw = tr.model.state_dict()
    assert all(torch.equal(saved[k], ema[k]) for k in saved)
    assert any(not torch.equal(saved[k], raw[k]) for k in saved if saved[k].is_floating_point())


def test_resume_keeps_the_ema_exact(tmp_path):
    full = _run(_cfg(tmp_path / "d", tmp_path / "full", max_steps=5))
    _run(_cfg(tmp_path / "d", tmp_path / "cut", max_steps=2))
    resumed = _run(_cfg(tmp_path / "d", tmp_path / "cut", max_steps=5))
    for (k, a), b in zip(full.ema.state_dict().items(), resumed.ema.state_dict().values()):
        assert torch.equal(a, b), k


def test_precision_is_plain_fp32_on_the_cpu():
    p = Precision(torch.device("cpu"))
    assert not p.enabled and p.state_dict() == {}
    with p.autocast():
        assert torch.ones(2).dtype == torch.float32
