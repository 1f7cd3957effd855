"""Compression stages retrained to convergence (issue 22, item 4): early stopping on a score, the
best weights kept, the rate decayed on plateaus, and checkpoints that resume a killed stage exactly."""

import copy
import json

import pytest
import torch
from torch import nn

from inkpack.compress.commands import compress
from inkpack.compress.converge import Convergence, StageRun, retrain_until
from inkpack.compress.kmeans_train import LatentSharing
from inkpack.compress.retrain import drop_weights
from inkpack.errors import InkpackError, ModelFileError
from inkpack.models.io import load_model

from compress_helpers import base, parse  # noqa: F401 (base: a fixture)


class Regression:
    """A seeded regression task: batch ``step`` is always the same 8 samples (like Task.batch)."""

    def __init__(self, dim=6):
        g = torch.Generator().manual_seed(3)
        self.w = torch.randn(dim, 1, generator=g)
        self.dim = dim

    def batch(self, step):
        g = torch.Generator().manual_seed(1000 + step)
        x = torch.randn(8, self.dim, generator=g)
        return x, x @ self.w

    def loss(self, model, batch):
        x, y = batch
        return nn.functional.mse_loss(model(x), y)


def net(seed=0, dropout=0.3):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 16), nn.Dropout(dropout), nn.Linear(16, 1))


def heldout_score(task):
    g = torch.Generator().manual_seed(99)
    x = torch.randn(64, task.dim, generator=g)

    def score(model):
        with torch.no_grad():
            return -float(nn.functional.mse_loss(model(x), x @ task.w))
    return score


class Killed(Exception):
    pass


def test_convergence_parsing_and_bad_values():
    assert Convergence.parse("500:6") == Convergence(every=500, patience=6)
    assert Convergence.parse("50:3:2000").max_steps == 2000
    for bad in ("500", "a:b", "1:2:3:4", "0:3"):
        with pytest.raises(InkpackError, match="--converge"):
            Convergence.parse(bad)
    with pytest.raises(InkpackError, match="decay"):
        Convergence(decay=0.0)


def test_stops_after_patience_with_the_best_weights_and_decayed_rate():
    task, model = Regression(), net(dropout=0.0)
    scripted = iter([0.1, 0.5, 0.4, 0.3, 0.45, 0.2, 0.9])
    weights = []

    def score(m):
        weights.append([p.detach().clone() for p in m.parameters()])
        return next(scripted)

    out = retrain_until(model, task, score, Convergence(every=3, patience=3, plateau=2), lr=0.01)
    # best at round 2; rounds 3, 4, 5 without gain end the stage (0.9 is never reached)
    assert out["stopped"] == "patience" and out["steps"] == 15 and out["best"] == 0.5
    assert [h[0] for h in out["history"]] == [3, 6, 9, 12, 15]
    # the rate halves after the second round without gain (recorded from round 5 on)
    assert [h[2] for h in out["history"]] == [0.01, 0.01, 0.01, 0.01, 0.005]
    for p, w in zip(model.parameters(), weights[1], strict=True):
        assert torch.equal(p, w)
    assert not torch.equal(next(model.parameters()), weights[-1][0])


def test_max_steps_ends_a_stage_that_keeps_improving():
    task, model = Regression(), net(dropout=0.0)
    scores = iter(range(100))
    out = retrain_until(model, task, lambda m: float(next(scores)), Convergence(every=4, patience=2, max_steps=10),
                        lr=0.01)
    assert out["stopped"] == "max_steps" and out["steps"] == 10 and [h[0] for h in out["history"]] == [4, 8, 10]


def test_a_killed_stage_resumes_exactly_and_a_finished_one_returns_at_once(tmp_path):
    task = Regression()
    conv = Convergence(every=5, patience=2, plateau=1, max_steps=40)
    ref_model = net()
    ref = retrain_until(ref_model, task, heldout_score(task), conv, lr=0.02)
    assert ref["steps"] > 10  # the cut below falls mid-stage

    model, ck, calls = net(), tmp_path / "stage.pt", [0]
    good = heldout_score(task)

    def dying(m):
        calls[0] += 1
        if calls[0] == 3:
            raise Killed  # between the second round's checkpoint and the third's
        return good(m)

    with pytest.raises(Killed):
        retrain_until(model, task, dying, conv, lr=0.02, checkpoint=ck)
    fresh = net(seed=5)  # another start: the checkpoint holds everything the stage needs
    torch.manual_seed(123)  # and the RNG (dropout) is the checkpoint's, not this one
    out = retrain_until(fresh, task, good, conv, lr=0.02, checkpoint=ck)
    assert out == ref
    for a, b in zip(fresh.parameters(), ref_model.parameters(), strict=True):
        assert torch.equal(a, b)

    again, n = net(seed=7), [0]
    out2 = retrain_until(again, task, lambda m: n.__setitem__(0, n[0] + 1) or 0.0, conv, lr=0.02, checkpoint=ck)
    assert n[0] == 0 and out2 == ref  # finished: no step, no score, the best weights back
    for a, b in zip(again.parameters(), ref_model.parameters(), strict=True):
        assert torch.equal(a, b)


def test_checkpoint_of_another_stage_or_a_foreign_file_is_refused(tmp_path):
    task, ck = Regression(), tmp_path / "s.pt"
    retrain_until(net(), task, heldout_score(task), Convergence(every=2, patience=1, max_steps=4), lr=0.01,
                  checkpoint=ck, stage="svd")
    with pytest.raises(InkpackError, match="another stage"):
        retrain_until(net(), task, heldout_score(task), Convergence(every=2, patience=1), lr=0.01,
                      checkpoint=ck, stage="kmeans")
    torch.save({"model": {}}, tmp_path / "other.pt")
    with pytest.raises(ModelFileError, match="not an inkpack checkpoint"):
        retrain_until(net(), task, heldout_score(task), Convergence(every=2, patience=1), lr=0.01,
                      checkpoint=tmp_path / "other.pt")


def test_adw_keeps_no_best_during_the_rise_and_resumes_its_masks(tmp_path):
    task = Regression()
    conv = Convergence(every=3, patience=2, plateau=1, max_steps=30)
    score = heldout_score(task)

    def scripted(kill_at=None):
        calls = [0]

        def s(m):
            calls[0] += 1
            if calls[0] == kill_at:
                raise Killed
            return 1e9 if calls[0] <= 2 else score(m)  # huge during the rise (rounds 1-2): never kept
        return s

    def run_adw(model, folder, sc):
        run = StageRun(conv, sc, folder)
        return drop_weights(model, 0.5, task, 9, lr=0.02, run=run), run.results["adw"]  # rise: 6 steps

    ref_model = net(dropout=0.0)
    pruner, res = run_adw(ref_model, None, scripted())
    assert res["best"] < 1e9 and [h[0] for h in res["history"]][:2] == [3, 6] and res["steps"] > 9
    assert abs(pruner.sparsity()["total"] - 0.5) < 0.02
    with pytest.raises(Killed):
        run_adw(net(dropout=0.0), tmp_path, scripted(kill_at=4))
    model = net(seed=4, dropout=0.0)
    pruner2, res2 = run_adw(model, tmp_path, score)  # resumed after round 3, past the rise
    assert res2 == res
    for n, m in pruner.masks.items():
        assert torch.equal(pruner2.masks[n], m)
    for a, b in zip(model.parameters(), ref_model.parameters(), strict=True):
        assert torch.equal(a, b)


def test_latent_sharing_state_round_trip():
    model = net(dropout=0.0)
    ls = LatentSharing(model, bits=2)
    state = ls.state_dict()
    with torch.no_grad():
        for lat in ls.parameters():
            lat.add_(0.3)
    ls.after_step()
    moved = [p.detach().clone() for p in model.parameters()]
    other = LatentSharing(net(dropout=0.0), bits=2)
    for a, b in zip(other.parameters(), ls.parameters(), strict=True):
        a.data.copy_(b.data)
    other.load_state_dict(ls.state_dict())
    for a, b in zip(other.model.parameters(), moved, strict=True):
        assert torch.equal(a, b)  # the same latents and centroids give the same shared weights
    assert state["updates"] == 0 and ls.state_dict()["updates"] == 1


@pytest.mark.parametrize("mode", ["latent", "centroids"])
def test_compress_command_converges_and_resumes(base, tmp_path, tiny_tsv, mode):
    out = tmp_path / "conv"
    argv = ("compress", str(base), "--recipe", "svd+adw+kmeans", "--out", str(out), "--data", str(tiny_tsv),
            "--val", str(tiny_tsv), "--steps", "3", "--converge", "2:1:6", "--bits", "4", "--sparsity", "0.5",
            "--batch-size", "4", "--kmeans-train", mode)
    model, comp = compress(parse(*argv), log=lambda m: None)
    assert set(comp["converged"]) == {"svd", "adw", "kmeans"}
    assert all((tmp_path / "conv.stages" / f"{s}.pt").exists() for s in comp["converged"])
    assert all(r["stopped"] in ("patience", "max_steps") and r["steps"] <= 6 for r in comp["converged"].values())
    loaded, cfg, _ = load_model(str(out))
    x = torch.rand(2, 1, 16, 40, generator=torch.Generator().manual_seed(1)), torch.tensor([16, 16]), torch.tensor([40, 25])
    with torch.no_grad():
        assert torch.equal(loaded(*x)[0], model(*x)[0])
    first = out.with_suffix(".npz").read_bytes()
    logs = []
    compress(parse(*argv), log=logs.append)  # every stage finished: resumed, nothing retrained
    assert out.with_suffix(".npz").read_bytes() == first
    assert sum("finished" in m for m in logs) == 3 and not any("loss" in m for m in logs)
    assert json.loads(out.with_suffix(".json").read_text())["compression"]["converged"] == comp["converged"]


def test_compress_converge_needs_its_settings(base, tmp_path, tiny_tsv):
    common = ("compress", str(base), "--recipe", "svd", "--out", str(tmp_path / "x"), "--data", str(tiny_tsv))
    with pytest.raises(InkpackError, match="--val"):
        compress(parse(*common, "--steps", "2", "--converge", "2:1"), log=lambda m: None)
    with pytest.raises(InkpackError, match="--steps"):
        compress(parse(*common, "--val", str(tiny_tsv), "--converge", "2:1"), log=lambda m: None)
    with pytest.raises(InkpackError, match="EVERY:PATIENCE"):
        compress(parse(*common, "--steps", "2", "--val", str(tiny_tsv), "--converge", "two"), log=lambda m: None)


def _distill_pair(narrow: bool):
    from inkpack.compress.distill import DistillStage, distill, distill_narrow_lstm, init_student
    from inkpack.models.cnn_dblstm import CNNDBLSTM

    from test_distill import OPTS, S_CFG, T_CFG, batch

    torch.manual_seed(0)
    teacher = CNNDBLSTM(7, T_CFG, **OPTS).eval()
    s_opts = dict(OPTS, lstm_hidden=3) if narrow else OPTS
    student = CNNDBLSTM(7, T_CFG if narrow else S_CFG, **s_opts).eval()
    bs = [batch(1), batch(2)]
    plain, staged = copy.deepcopy(student), copy.deepcopy(student)
    torch.manual_seed(5)  # the narrow adapter's initialisation
    if narrow:
        distill_narrow_lstm(teacher, plain, lambda i: bs[i % 2], steps=4, lr=3e-3)
    else:
        distill(teacher, plain, lambda i: bs[i % 2], "cnn-mah", steps=4, lr=3e-3)
        init_student(staged, teacher)
    torch.manual_seed(5)
    stage = DistillStage(teacher, staged, lambda i: bs[i % 2], "lstm-l2-narrow" if narrow else "cnn-mah")
    out = retrain_until(staged, stage, lambda m: 0.0, Convergence(every=4, patience=1, max_steps=4), lr=3e-3,
                        params=stage.params)
    stage.finish(staged)
    return plain, staged, out


@pytest.mark.parametrize("narrow", [False, True])
def test_distillation_stage_takes_the_steps_of_the_fixed_budget_distillation(narrow):
    plain, staged, out = _distill_pair(narrow)
    assert out["steps"] == 4
    for (k, a), b in zip(plain.state_dict().items(), staged.state_dict().values(), strict=True):
        assert torch.allclose(a, b, atol=1e-6), k
    assert all(p.requires_grad for p in staged.parameters())


def test_compress_distill_converges(base, tmp_path, tiny_tsv):
    out = tmp_path / "dc"
    argv = ("compress", str(base), "--recipe", "distill", "--out", str(out), "--data", str(tiny_tsv), "--val",
            str(tiny_tsv), "--steps", "2", "--converge", "2:1:4", "--batch-size", "4", "--criterion", "cnn-l2",
            "--student-width", "0.5")
    student, comp = compress(parse(*argv), log=lambda m: None)
    assert set(comp["converged"]) == {"distill", "finetune"}
    loaded, cfg, _ = load_model(str(out))
    assert cfg["options"]["width"] == 0.5
    for a, b in zip(loaded.state_dict().values(), student.state_dict().values(), strict=True):
        assert torch.equal(a, b)
