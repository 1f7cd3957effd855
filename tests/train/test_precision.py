"""Training arithmetic (``precision``): bfloat16 autocast on the CPU, exact resume, clear errors."""

from dataclasses import replace

import pytest
import torch

from ink_helpers import hanzi  # noqa: F401  (a fixture)
from inkpack.errors import ConfigError
from inkpack.train.ema import Precision, resolve_precision
from inkpack.train.loop import TrainConfig, Trainer
from test_ema import _cfg as _ema_cfg
from test_ema import _run


def _cfg(root, out, max_steps, precision):
    """The EMA tests' tiny run, without the average, in ``precision``."""
    return replace(_ema_cfg(root, out, max_steps, ema=0.0), precision=precision, seed=7)


def test_modes_on_the_cpu():
    cpu = torch.device("cpu")
    assert resolve_precision("auto", cpu) == "fp32"
    assert resolve_precision("BF16", cpu, warn=False) == "bf16"
    with pytest.raises(ConfigError, match="fp16 needs CUDA"):
        resolve_precision("fp16", cpu)
    with pytest.raises(ConfigError, match="precision must be one of"):
        resolve_precision("int8", cpu)


def test_bf16_autocast_computes_in_bfloat16_and_keeps_fp32_weights():
    p = Precision(torch.device("cpu"), "bf16")
    assert p.enabled and p.state_dict() == {}  # no gradient scaling for bfloat16
    lin = torch.nn.Linear(4, 3)
    with p.autocast():
        y = lin(torch.ones(2, 4))
    assert y.dtype == torch.bfloat16 and lin.weight.dtype == torch.float32


def test_config_names_a_bad_precision(tmp_path):
    with pytest.raises(ConfigError, match="precision"):
        TrainConfig(train="x.tsv", precision="half").validate()


def test_bf16_training_resumes_exactly_and_stays_near_fp32(tmp_path):
    full = _run(_cfg(tmp_path / "d", tmp_path / "full", 5, "bf16"))
    _run(_cfg(tmp_path / "d", tmp_path / "cut", 2, "bf16"))
    resumed = _run(_cfg(tmp_path / "d", tmp_path / "cut", 5, "bf16"))
    fp32 = _run(_cfg(tmp_path / "d", tmp_path / "fp32", 5, "fp32"))
    a, b, c = (t.model.state_dict() for t in (full, resumed, fp32))
    assert all(torch.equal(a[k], b[k]) for k in a)  # exact resume
    floats = [k for k in a if a[k].is_floating_point()]
    assert all(a[k].dtype == torch.float32 for k in floats)
    # bfloat16 really was used (the weights differ from fp32's) by much less than the 5 steps moved them
    diff = max(float((a[k] - c[k]).abs().max()) for k in floats)
    init = Trainer(_cfg(tmp_path / "d", tmp_path / "init", 5, "fp32"))
    init.setup()  # the same seed's weights before any step
    start = init.model.state_dict()
    moved = max(float((c[k] - start[k]).abs().max()) for k in floats)
    assert 0 < diff < 0.5 * moved, (diff, moved)


def test_ink_training_in_bf16_resumes_exactly_and_refuses_fp16(hanzi, tmp_path):
    from test_ink_train import TINY_CHAR, char_cfg

    from inkpack.train.ink_train import InkTrainer

    def run(out, steps, precision="bf16"):
        tr = InkTrainer(char_cfg(hanzi, out, max_steps=steps, epochs=2, precision=precision,
                                 options=dict(TINY_CHAR)))
        tr.setup()
        tr.fit()
        return tr

    full = run(tmp_path / "full", 4)
    assert full.precision.mode == "bf16"
    run(tmp_path / "cut", 2)
    resumed = run(tmp_path / "cut", 4)
    fp32 = run(tmp_path / "fp32", 4, "fp32")
    a, b, c = (t.model.state_dict() for t in (full, resumed, fp32))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)  # bfloat16 changed the arithmetic
    with pytest.raises(ConfigError, match="precision"):
        InkTrainer(char_cfg(hanzi, tmp_path / "x", precision="fp16"))
