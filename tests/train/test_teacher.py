"""Knowledge distillation while training (config ``teacher``): frame-level soft targets from one
or more trained line models, added to the CTC loss."""

import math

import numpy as np
import pytest
import torch

from conftest import make_tsv
from inkpack.batching import Batch
from inkpack.data.alphabet import Alphabet
from inkpack.data.lines import LineBatcher
from inkpack.errors import ConfigError, InkpackError
from inkpack.train.config import TrainConfig
from inkpack.train.loop import Trainer
from inkpack.train.teacher import Teachers, kd_loss

TEXTS = ["the cat", "a dog", "hello", "ink pack", "dear sir", "to be", "kew", "tea"]
OPTS = {"feat_dim": 32, "lstm_hidden": 16}


def _cfg(root, out, max_steps, **kw):
    tsv = make_tsv(root, TEXTS)
    base = dict(train=str(tsv), val=str(tsv), out=str(out), arch="darknet-dblstm", height=32, batch_size=3,
                epochs=3, max_steps=max_steps, progress=False, batching="pad-min", ckpt_every=1000,
                options=dict(OPTS))
    return TrainConfig(**{**base, **kw}).validate()


def _run(cfg):
    tr = Trainer(cfg)
    tr.setup()
    tr.fit()
    return tr


@pytest.fixture(scope="module")
def teachers(tmp_path_factory):
    """Two small trained line models (different seeds) on the same data and alphabet."""
    root = tmp_path_factory.mktemp("teachers")
    a = _run(_cfg(root / "d", root / "a", 6, seed=1))
    _run(_cfg(root / "d", root / "b", 6, seed=2))
    return root, str(root / "a" / "best"), str(root / "b" / "best"), a.alphabet


def test_kd_loss_is_the_kl_divergence_over_each_lines_frames():
    g = torch.Generator().manual_seed(0)
    t_logits, s_logits = torch.randn(5, 2, 4, generator=g), torch.randn(5, 2, 4, generator=g)
    lengths = torch.tensor([5, 3])
    tau = 2.0
    t_lp = torch.log_softmax(t_logits / tau, -1)
    want = 0.0
    for b, n in enumerate(lengths.tolist()):  # by hand, frame by frame, class by class
        for t in range(n):
            p = np.exp(t_lp[t, b].numpy().astype(np.float64))
            q = np.exp(s_logits[t, b].numpy().astype(np.float64) / tau)
            q /= q.sum()
            want += sum(pk * math.log(pk / qk) for pk, qk in zip(p, q))
    want = want / 2 * tau ** 2
    got = kd_loss(s_logits, lengths, t_lp, lengths, tau)
    assert got.item() == pytest.approx(want, rel=1e-5)
    # padded frames do not count; a student equal to the teacher costs nothing
    s2 = s_logits.clone()
    s2[3:, 1] = 100.0
    assert kd_loss(s2, lengths, t_lp, lengths, tau).item() == pytest.approx(want, rel=1e-5)
    assert kd_loss(t_logits, lengths, t_lp, lengths, tau).item() == pytest.approx(0.0, abs=1e-5)
    with pytest.raises(InkpackError, match="frame"):
        kd_loss(s_logits, lengths, t_lp, torch.tensor([5, 2]), tau)


def test_an_ensemble_teaches_the_average_of_its_members(teachers):
    from inkpack.models.io import load_model

    _, a, b, alphabet = teachers
    imgs = torch.rand(2, 1, 32, 50, generator=torch.Generator().manual_seed(3))
    batch = Batch(images=imgs, heights=torch.tensor([32, 32]), widths=torch.tensor([50, 37]),
                  targets=torch.tensor([1, 2]), target_lengths=torch.tensor([1, 1]))
    lp, n = Teachers([a, b], alphabet, 32, "pad-min", temperature=1.5).log_probs(batch)
    probs = []
    for stem in (a, b):
        m, _, _ = load_model(stem)
        with torch.no_grad():
            logits, lengths = m(imgs, batch.heights, batch.widths)
        probs.append(torch.softmax(logits / 1.5, -1))
        assert torch.equal(lengths, n)
    torch.testing.assert_close(lp.exp(), (probs[0] + probs[1]) / 2, rtol=1e-5, atol=1e-6)


def test_mismatched_teachers_and_options_are_refused(teachers, tmp_path):
    _, a, _, alphabet = teachers
    with pytest.raises(ConfigError, match="height"):
        Teachers([a], alphabet, 48, "pad-min")
    other = Alphabet(list(alphabet.symbols)[:-1])
    with pytest.raises(ConfigError, match="alphabet"):
        Teachers([a], other, 32, "pad-min")
    with pytest.raises(ConfigError, match="pack"):
        Teachers([a], alphabet, 32, "pack")
    for bad in ({"teacher": []}, {"teacher_weight": -1.0}, {"teacher_temperature": 0.0},
                {"teacher_weight": float("nan")}):
        with pytest.raises(ConfigError, match=next(iter(bad))):
            TrainConfig(train="x.tsv", **bad).validate()


def test_a_config_names_its_teachers_relative_to_itself(tmp_path):
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "t.json").write_text("{}")
    (tmp_path / "cfg.yaml").write_text("train: data.tsv\nteacher: models/t\n")
    cfg = TrainConfig.from_yaml(str(tmp_path / "cfg.yaml"))
    assert cfg.teacher == [str(tmp_path / "models" / "t")]


def test_distillation_pulls_the_student_to_its_teacher_and_resumes_exactly(teachers, tmp_path):
    root, a, b, _ = teachers
    kw = dict(teacher=[a, b], teacher_weight=5.0, lr=3e-3, seed=7)
    full = _run(_cfg(root / "d", tmp_path / "full", 8, **kw))
    plain = _run(_cfg(root / "d", tmp_path / "plain", 8, lr=3e-3, seed=7))  # the same run, no teacher
    _run(_cfg(root / "d", tmp_path / "cut", 3, **kw))
    resumed = _run(_cfg(root / "d", tmp_path / "cut", 8, **kw))
    for (k, x), y in zip(full.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(x, y), k
    # on the training lines the distilled student is closer to the ensemble than the plain one
    ens = Teachers([a, b], full.alphabet, 32, "pad-min")
    batch = LineBatcher(full.train_set, full.alphabet)(list(range(len(full.train_set.texts))))  # unaugmented
    t_lp, t_n = ens.log_probs(batch)

    def divergence(model):
        model.eval()
        with torch.no_grad():
            logits, n = model(batch.images, batch.heights, batch.widths)
        return kd_loss(logits, n, t_lp, t_n).item()

    assert divergence(full.model) < 0.8 * divergence(plain.model)
