"""A line model on Bézier-curve features: it trains, stores the choice in its model file, and
the public API recognizes with it exactly as the model in memory; bad options are one error."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import inkpack
from inkpack.data.formats.iamondb import write_iamondb_npz
from inkpack.data.ink import Ink
from inkpack.data.ink_preprocess import preprocess
from inkpack.decode.greedy import greedy_decode
from inkpack.errors import ConfigError
from inkpack.infer.ink_preprocess import preprocess_config
from inkpack.models.io import load_model
from inkpack.train.ink_train import InkTrainConfig, InkTrainer
from test_ink_train import line_ink


def write_lines(path, n: int, seed: int) -> list[Ink]:
    rng = np.random.default_rng(seed)
    texts = ["".join(rng.choice(list("olx"), rng.integers(2, 5))) for _ in range(n)]
    inks = [line_ink(t, rng, f"z{seed:02d}-{i:03d}x-{i:02d}") for i, t in enumerate(texts)]
    write_iamondb_npz(path, inks)
    return inks


def line_cfg(d, name: str, **kw) -> InkTrainConfig:
    base = dict(task="line", out=str(d / name), train=str(d / "train.npz"), val=None, batch_size=8,
                lr=1e-2, warmup_steps=2, epochs=3, options={"hidden": 16, "layers": 1, "subsample": 1},
                progress=False, threads=1,
                preprocessing={"features": "bezier", "bezier_error": 0.1, "drop_rate": 0.1, "rotate_deg": 2.0})
    return InkTrainConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def bezier_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("bezier_lines")
    write_lines(d / "train.npz", 32, 1)
    inks = write_lines(d / "val.npz", 6, 2)
    trainer = InkTrainer(line_cfg(d, "run"))
    trainer.setup()
    result = trainer.fit()
    return d, trainer, result, inks


def test_a_bezier_line_model_trains_and_stores_its_features(bezier_run):
    d, trainer, result, _ = bezier_run
    hist = json.loads((d / "run" / "history.json").read_text())
    assert result["steps"] == 3 * 4 and np.isfinite([h["train_loss"] for h in hist]).all()
    model, cfg, _ = load_model(str(d / "run" / "best"))
    assert cfg["preprocessing"]["features"] == "bezier" and cfg["preprocessing"]["bezier_error"] == 0.1
    assert cfg["options"]["in_features"] == 10 and model.in_features == 10
    assert model.lstm.input_size == 10
    pcfg = preprocess_config(cfg)
    assert pcfg.features == "bezier" and pcfg.num_features == 10


def test_the_public_api_recognizes_as_the_model_in_memory(bezier_run):
    d, trainer, _, inks = bezier_run
    rec = inkpack.load(str(d / "run" / "best"), threads=1)
    mem = trainer.model.eval()
    for ink in inks:
        want = preprocess(ink, trainer.pcfg, None)
        prepared = rec.prepare_input(ink)
        assert np.array_equal(prepared.features.numpy(), want)  # the same curves, not points
        assert len(prepared.point_x) == len(want)
        x = torch.from_numpy(want)[None]
        with torch.no_grad():
            logits, n = mem(x, torch.tensor([len(want)]))
        got, got_n = rec.logits([prepared.features])
        assert int(got_n[0]) == int(n[0])
        assert torch.allclose(got[:, 0].float(), logits[:, 0], atol=1e-5)
        text = trainer.alphabet.decode(greedy_decode(logits.log_softmax(-1), n)[0])
        assert rec.recognize(ink).text == text


def test_points_stay_the_default(tmp_path):
    write_lines(tmp_path / "train.npz", 8, 3)
    t = InkTrainer(line_cfg(tmp_path, "pts", preprocessing={}, max_steps=1))
    t.setup()
    assert t.pcfg.features == "points" and t.options["in_features"] == 6
    assert t.model_config()["preprocessing"]["features"] == "points"
    # a model file from before the option (no "features" key) reads as points
    assert preprocess_config({"preprocessing": {"scale": "y_std", "min_dist": 0.05}}).features == "points"


def test_a_bad_features_value_is_one_error_naming_the_field(tmp_path):
    write_lines(tmp_path / "train.npz", 8, 4)
    with pytest.raises(ConfigError) as e:
        InkTrainer(line_cfg(tmp_path, "bad", preprocessing={"features": "spline"}))
    assert "preprocessing.features" in str(e.value) and "\n" not in str(e.value)
    (tmp_path / "bad.yaml").write_text("task: line\ntrain: train.npz\nval: null\n"
                                       "preprocessing: {features: curves}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="preprocessing.features"):
        InkTrainer(InkTrainConfig.from_yaml(str(tmp_path / "bad.yaml"), progress=False))


def test_in_features_must_agree_with_the_features(tmp_path):
    write_lines(tmp_path / "train.npz", 8, 5)
    t = InkTrainer(line_cfg(tmp_path, "clash", options={"hidden": 8, "layers": 1, "in_features": 6}))
    with pytest.raises(ConfigError, match="options.in_features"):
        t.setup()


def test_the_web_bundle_refuses_a_bezier_model_in_one_line(bezier_run, tmp_path):
    # the page's JavaScript computes point features only; a curve model must not ship there silently
    from inkpack.deploy.webbundle import export_web_models

    d, _, _, _ = bezier_run
    with pytest.raises(ConfigError) as e:
        export_web_models(tmp_path / "site", char_model=str(d / "run" / "best"), with_line=False)
    assert "preprocessing.features" in str(e.value) and "'bezier'" in str(e.value) and "\n" not in str(e.value)
    assert not list((tmp_path / "site").glob("*.onnx"))  # refused from its config, before any export
