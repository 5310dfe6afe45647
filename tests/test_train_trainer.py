"""Plain trainer: config validation, schedule, checkpoint and resume, CUDA path."""

from __future__ import annotations

import functools
import math

import pytest
import torch

from mis.exceptions import MisValueError
from mis.train import data
from mis.train.config import TrainConfig, epoch_plan, lr_at
from mis.train.models import build_model
from mis.train.trainer import train_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")


MLP = functools.partial(build_model, "mlp", in_features=64, hidden=(16,), n_classes=10)


def _digits(n=200):
    ds = data.load_digits()
    return ds.tensor(ds.x[:n]), torch.as_tensor(ds.y[:n])


def test_cosine_schedule_matches_torch_scheduler():
    cfg = TrainConfig(epochs=7, lr=0.1)
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=0.1)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=7)
    for e in range(7):
        assert math.isclose(lr_at(cfg, e), opt.param_groups[0]["lr"], rel_tol=1e-12, abs_tol=1e-15)
        opt.step()
        sched.step()
    assert lr_at(TrainConfig(epochs=3, lr=0.2, schedule="constant"), 2) == 0.2


def test_epoch_plan_covers_the_subset_once():
    g = torch.Generator().manual_seed(0)
    cfg = TrainConfig(batch_size=7, augment=True, padding=3)
    plan = epoch_plan(30, cfg, g)
    pos = torch.cat([b.pos for b in plan])
    assert sorted(pos.tolist()) == list(range(30))
    assert [len(b.pos) for b in plan] == [7, 7, 7, 7, 2]
    assert all(b.offsets.max() <= 6 and b.offsets.min() >= 0 for b in plan)
    dropped = epoch_plan(30, TrainConfig(batch_size=7, drop_last=True), g)
    assert [len(b.pos) for b in dropped] == [7, 7, 7, 7]
    assert len(epoch_plan(30, TrainConfig(batch_size=None), g)) == 1


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(epochs=0), "epochs"),
        (dict(lr=-1.0), "lr"),
        (dict(optimizer="rmsprop"), "optimizer"),
        (dict(schedule="step"), "schedule"),
        (dict(batch_size=0), "batch_size"),
        (dict(momentum=1.0), "momentum"),
    ],
)
def test_config_validation(kwargs, match):
    with pytest.raises(MisValueError, match=match):
        TrainConfig(**kwargs)


def test_recipes():
    z = TrainConfig.zhang2025()
    assert (
        z.optimizer,
        z.momentum,
        z.weight_decay,
        z.lr,
        z.schedule,
        z.epochs,
        z.batch_size,
        z.augment,
    ) == ("sgd", 0.9, 5e-4, 0.1, "cosine", 100, 128, True)
    a = TrainConfig.aubinais2025()
    assert (a.optimizer, a.lr, a.epochs, a.batch_size) == ("adam", 1e-4, 3000, None)


class _Stop(Exception):
    pass


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_interrupted_run_resumes_to_identical_weights(tmp_path, optimizer):
    x, y = _digits()
    cfg = TrainConfig(epochs=6, lr=0.02, batch_size=32, optimizer=optimizer, augment=False)
    ref = train_model(MLP, x, y, cfg, seed=4, subset=torch.arange(150))

    def stop_at_3(epoch, view):
        if epoch == 3:
            raise _Stop

    ckpt = tmp_path / "ckpt.pt"
    with pytest.raises(_Stop):
        train_model(
            MLP, x, y, cfg, seed=4, subset=torch.arange(150), checkpoint=ckpt, callbacks=[stop_at_3]
        )
    assert torch.load(ckpt, weights_only=True)["epoch"] == 2
    resumed = train_model(MLP, x, y, cfg, seed=4, subset=torch.arange(150), checkpoint=ckpt)
    for (n, a), b in zip(ref.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b), n
    # a checkpoint for another seed is refused
    with pytest.raises(MisValueError, match="another seed"):
        train_model(MLP, x, y, cfg, seed=5, checkpoint=ckpt)


def test_augmented_training_runs_and_learns():
    x, y = _digits(400)
    cnn = functools.partial(build_model, "digits_cnn", width=8)
    cfg = TrainConfig(epochs=8, lr=0.05, batch_size=32, augment=True, padding=1)
    m = train_model(cnn, x, y, cfg, seed=0)
    with torch.no_grad():
        acc = (m(x).argmax(1) == y).float().mean().item()
    assert acc > 0.6


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_amp_channels_last_resnet_smoke(tmp_path):
    x = torch.randn(64, 3, 32, 32)
    y = torch.randint(0, 10, (64,))
    fn = functools.partial(build_model, "resnet18")
    cfg = TrainConfig.zhang2025(epochs=2, batch_size=32)
    m = train_model(fn, x, y, cfg, seed=0, device="cuda", checkpoint=tmp_path / "c.pt")
    assert next(m.parameters()).device.type == "cuda"
    with torch.no_grad():
        assert torch.isfinite(m(x[:4].cuda())).all()
