"""RQRecorder: r_Q in any training loop, for a plain nn.Module, an ensemble, tensor and model
quantizers; runs accumulated in a run store."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

import mis
from mis.exceptions import MisValueError
from mis.quant import weight_quantizer
from mis.store import RunStore
from mis.train import Ensemble, ModelQuantizer, RQRecorder, load_rq_runs
from mis.train.losses import per_sample_loss
from mis.train.trajectory import weights_hash
from tests import naive

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _data(seed=0, n=120, d=5):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    return x, (x[:, 0] + 0.3 * x[:, 1] > 0).long()


def _train(model, x, y, epochs, rec=None, lr=1e-2):
    opt = torch.optim.Adam(model.parameters(), lr)
    for _ in range(epochs):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        if rec is not None:
            rec.record(model)
    return model


def _net(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 2))


def _rq_literal(losses, hashes):
    """Algorithm 1 as written, after removing repeated quantized points (tests/naive.py)."""
    return naive.rq_algorithm1(naive.dedup_checkpoints(losses, hashes))


def test_plain_module_in_a_plain_loop_matches_algorithm_1():
    x, y = _data(0)
    xv, yv = _data(1, n=60)
    model = _net()
    rec = RQRecorder(["sign", "4bit"], xv, yv)
    snapshots = []
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    for _ in range(15):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        rec.record(model)
        snapshots.append({k: v.clone() for k, v in model.state_dict().items()})
    assert rec.n_checkpoints == 15
    got = rec.rq()
    for name in ("sign", "4bit"):
        q = weight_quantizer(name)
        losses, hashes = [], []
        for state in snapshots:
            qs = {k: q(v) for k, v in state.items()}
            m = _net()
            m.load_state_dict(qs)
            with torch.no_grad():
                losses.append(per_sample_loss(m(xv)[None], yv, "cross_entropy")[0].numpy())
            hashes.append(weights_hash([qs[k] for k in sorted(qs)]))
        want = _rq_literal(np.array(losses), np.array(hashes))
        assert got[name] == pytest.approx(want, rel=1e-5), name


def test_repeated_identical_weights_change_nothing():
    x, y = _data(0)
    xv, yv = _data(1, n=60)
    model = _train(_net(), x, y, 3)
    a = RQRecorder(["ternary-50", "2bit"], xv, yv)
    b = RQRecorder(["ternary-50", "2bit"], xv, yv)
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    for _ in range(8):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        a.record(model)
        b.record(model)
        b.record(model)  # the same point twice: deduplicated by its hash
    assert a.rq() == pytest.approx(b.rq())
    assert b.n_checkpoints == 16


@pytest.mark.filterwarnings("ignore::mis.exceptions.DegenerateStatisticWarning")
def test_ensemble_and_model_quantizers():
    x, y = _data(0)
    xv, yv = _data(1, n=60)
    models = [_train(_net(s), x, y, 5) for s in range(3)]

    def round_to_quarter(m: nn.Module) -> nn.Module:  # recognised by its annotation
        for p in m.parameters():
            p.data = torch.round(p.data * 4) / 4
        return m

    halves = ModelQuantizer(lambda m: round_to_quarter(m), name="quarter")
    rec = RQRecorder({"sign": "sign", "annotated": round_to_quarter, "wrapped": halves}, xv, yv)
    rec.record(Ensemble.from_modules(models))
    for m in models:
        _train(m, x, y, 1)
    rec.record(Ensemble.from_modules(models))
    arr = rec.arrays()
    assert arr["val_losses"].shape == (3, 3, 2, 60) and arr["qhash"].shape == (3, 3, 2)
    # the two model quantizers are the same function: the same losses and hashes
    np.testing.assert_array_equal(arr["val_losses"][:, 1], arr["val_losses"][:, 2])
    np.testing.assert_array_equal(arr["qhash"][:, 1], arr["qhash"][:, 2])
    r = rec.rq()
    assert r["sign"].shape == (3,)
    # model quantizer on one run equals the tensor path on the same weights
    one = RQRecorder({"m": halves}, xv, yv)
    one.record(models[0])
    with torch.no_grad():
        q = round_to_quarter(_net())
        q.load_state_dict(models[0].state_dict())
        q = round_to_quarter(q)
        want = per_sample_loss(q(xv)[None], yv, "cross_entropy")[0].numpy()
    np.testing.assert_allclose(one.arrays()["val_losses"][0, 0, 0], want, rtol=1e-6)


def test_runs_accumulate_in_one_store(tmp_path):
    x, y = _data(0)
    xv, yv = _data(1, n=60)
    store = RunStore(tmp_path / "rq")
    expected = []
    for run in range(3):
        rec = RQRecorder(["sign", "4bit"], xv, yv)
        _train(_net(run), x, y, 6 + run, rec)  # runs of different lengths
        rec.save(store, run=run)
        expected.append([rec.rq()["sign"], rec.rq()["4bit"]])
    rq, names = load_rq_runs(tmp_path / "rq")
    assert names == ["sign", "4bit"]
    np.testing.assert_allclose(rq, np.array(expected))
    with pytest.raises(MisValueError, match="already in"):
        rec.save(store, run=2)
    other = RQRecorder(["sign"], xv, yv)
    _train(_net(9), x, y, 3, other)
    other.save(store, run=7)
    with pytest.raises(MisValueError, match="recorded quantizers"):
        load_rq_runs(store)


@pytest.mark.filterwarnings("ignore::mis.exceptions.DegenerateStatisticWarning")
def test_one_distinct_point_is_infinite_and_top_level_export():
    xv, yv = _data(1, n=60)
    rec = mis.RQRecorder(["sign"], xv, yv)
    model = _net()
    rec.record(model)
    rec.record(model)
    assert math.isinf(rec.rq()["sign"])


@pytest.mark.parametrize(
    "quantizers, match",
    [
        (["nosuch"], "not a registered weight quantizer"),
        ([3], "must be a name or a callable"),
        ({"a": "sign", "b": 1.5}, "must be a name or a callable"),
        ([], "at least one"),
    ],
)
def test_bad_quantizers_are_refused(quantizers, match):
    xv, yv = _data(1, n=60)
    with pytest.raises(MisValueError, match=match):
        RQRecorder(quantizers, xv, yv)


def test_bad_use_is_refused():
    xv, yv = _data(1, n=60)
    rec = RQRecorder(["sign"], xv, yv)
    with pytest.raises(MisValueError, match="nothing recorded"):
        rec.rq()
    with pytest.raises(MisValueError, match=r"nn\.Module or a mis\.train\.Ensemble"):
        rec.record({"weight": torch.zeros(2)})
    with pytest.raises(MisValueError, match="x_val"):
        RQRecorder(["sign"], xv[:2], yv[:2])
    with pytest.raises(MisValueError, match="y_val"):
        RQRecorder(["sign"], xv, yv[:10])
    rec.record(_net())
    with pytest.raises(MisValueError, match="runs"):
        rec.record(Ensemble.from_modules([_net(1), _net(2)]))
    bad = RQRecorder({"m": ModelQuantizer(lambda m: "not a model")}, xv, yv)
    with pytest.raises(MisValueError, match=r"must return an nn\.Module"):
        bad.record(_net())
