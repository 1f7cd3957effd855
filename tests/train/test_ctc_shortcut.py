"""CTC shortcut (model option ``ctc_shortcut``): an auxiliary CTC head on the CNN features that
only training uses (Retsinas et al. 2022)."""

import pytest
import torch
import torch.nn.functional as F

from conftest import make_tsv
from inkpack.batching import Batch
from inkpack.errors import ConfigError, InkpackError
from inkpack.models import build_model
from inkpack.train.ctc import train_forward, training_loss
from inkpack.train.loop import TrainConfig, Trainer

OPTS = {"height": 32, "feat_dim": 24, "lstm_hidden": 8}


def _batch(widths=(40, 28), seed=0):
    g = torch.Generator().manual_seed(seed)
    imgs = torch.zeros(len(widths), 1, 32, max(widths))
    for i, w in enumerate(widths):
        imgs[i, :, :, :w] = torch.rand(1, 32, w, generator=g)
    targets = [[1, 2, 3], [4, 4]]
    return Batch(images=imgs, heights=torch.full((len(widths),), 32), widths=torch.tensor(widths),
                 targets=torch.tensor([t for ts in targets for t in ts]),
                 target_lengths=torch.tensor([len(t) for t in targets]))


def test_inference_ignores_the_shortcut_head():
    torch.manual_seed(0)
    with_head = build_model("darknet-dblstm", 6, ctc_shortcut=0.1, **OPTS).eval()
    plain = build_model("darknet-dblstm", 6, **OPTS).eval()
    missing = plain.load_state_dict(with_head.state_dict(), strict=False)
    assert set(missing.unexpected_keys) == {"shortcut.weight", "shortcut.bias"}
    b = _batch()
    with torch.no_grad():
        a, la = with_head(b.images, b.heights, b.widths)
        p, lp = plain(b.images, b.heights, b.widths)
    assert torch.equal(a, p) and torch.equal(la, lp)


def test_training_loss_adds_the_weighted_shortcut_loss():
    torch.manual_seed(1)
    m = build_model("darknet-dblstm", 6, ctc_shortcut=0.25, **OPTS).eval()
    b = _batch()
    logits, lengths, aux = train_forward(m, b)
    assert aux.shape == logits.shape  # one shortcut frame per main frame

    def ctc(x):
        return F.ctc_loss(x.log_softmax(-1), b.targets, lengths, b.target_lengths, reduction="sum",
                          zero_infinity=True) / 2

    # the shortcut is a kernel-3 conv over the CNN features: recompute it by hand
    feats = m.features(b.images, b.widths)  # T, B, F
    padded = F.pad(feats, (0, 0, 0, 0, 1, 1))
    w, bias = m.shortcut.weight, m.shortcut.bias  # K, F, 3
    by_hand = sum(torch.einsum("tbf,kf->tbk", padded[j : j + feats.shape[0]], w[:, :, j]) for j in range(3)) + bias
    torch.testing.assert_close(aux, by_hand, rtol=1e-4, atol=1e-5)
    want = ctc(logits) + 0.25 * ctc(by_hand)
    torch.testing.assert_close(training_loss(m, (logits, lengths, aux), b), want, rtol=1e-5, atol=1e-4)
    # without the option: no shortcut, the plain CTC loss
    plain = build_model("darknet-dblstm", 6, **OPTS).eval()
    out = train_forward(plain, b)
    assert out[2] is None
    torch.testing.assert_close(training_loss(plain, out, b), ctc(out[0]))


def test_bad_weight_and_packed_batches_are_refused():
    with pytest.raises(InkpackError, match="ctc_shortcut"):
        build_model("darknet-dblstm", 6, ctc_shortcut=-1, **OPTS)
    m = build_model("darknet-dblstm", 6, ctc_shortcut=0.1, **OPTS)
    b = _batch()
    b.packing = object()  # any packed layout
    with pytest.raises(ConfigError, match="ctc_shortcut.*padded"):
        train_forward(m, b)


def _cfg(root, out, max_steps, arch="darknet-dblstm"):
    tsv = make_tsv(root, ["the cat", "a dog", "hello", "ink pack", "dear sir", "to be", "kew", "tea"])
    return TrainConfig(
        train=str(tsv), val=str(tsv), out=str(out), arch=arch, height=32, batch_size=3, epochs=3,
        max_steps=max_steps, progress=False, batching="pad-min", ckpt_every=1000,
        options={"feat_dim": 32, "lstm_hidden": 16, "ctc_shortcut": 0.1},
    )


def _run(cfg):
    tr = Trainer(cfg)
    tr.setup()
    tr.fit()
    return tr


@pytest.mark.parametrize("arch", ["darknet-dblstm", "gated-dblstm"])
def test_trains_its_head_resumes_exactly_and_ships_loadable(tmp_path, arch):
    from inkpack.models.io import load_model

    full = Trainer(_cfg(tmp_path / "d", tmp_path / "full", 5, arch))
    full.setup()
    start = full.model.shortcut.weight.detach().clone()
    full.fit()
    _run(_cfg(tmp_path / "d", tmp_path / "cut", 2, arch))
    resumed = _run(_cfg(tmp_path / "d", tmp_path / "cut", 5, arch))
    for (k, a), b in zip(full.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), k
    assert not torch.equal(full.model.shortcut.weight, start)  # the head is trained
    model, config, _ = load_model(str(tmp_path / "full" / "best"))
    assert config["options"]["ctc_shortcut"] == 0.1 and model.shortcut is not None
    # its ONNX export is the inference path alone and reads as the PyTorch model does
    from inkpack.deploy.export import export_onnx
    from inkpack.infer.backend import make_session

    onnx_path = export_onnx(str(tmp_path / "full" / "best"), tmp_path / "m.onnx")
    images, w = torch.rand(2, 1, 32, 60, generator=torch.Generator().manual_seed(5)), torch.tensor([60, 41])
    with torch.no_grad():
        logits, lengths = model.eval()(images, None, w)
    lp, ln = make_session(onnx_path).run(None, {"images": images.numpy(), "widths": w.numpy()})
    assert (abs(lp - logits.log_softmax(-1).numpy())).max() <= 1e-4 and ln.tolist() == lengths.tolist()
