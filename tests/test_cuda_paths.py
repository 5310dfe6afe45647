"""The CUDA branches of the trainers, logit extraction, grids and PTQ methods (issue 21).

Every test is marked ``gpu`` and skips without CUDA: the default test run leaves them out,
and ``benchmarks/device_check.py`` runs them (part 1) with ``CUBLAS_WORKSPACE_CONFIG=:4096:8``
in the environment (deterministic cuBLAS). ResNet-18 runs at width 8 (the same topology,
toy size) so the whole file takes seconds on a GPU.
"""

from __future__ import annotations

import contextlib
import functools
import os

import numpy as np
import pytest
import torch

from mis.quant import (
    Calibration,
    QuantConfig,
    StackedQuantizer,
    make_grid,
    quantize_model,
    select_calibration,
)
from mis.quant.grids import as_channels
from mis.train import (
    TrainConfig,
    TrajectoryRecorder,
    build_model,
    extract_logits,
    keep_masks,
    train_ensemble,
    train_model,
)

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
]

RESNET = functools.partial(build_model, "resnet18", width=8)
CNN = functools.partial(build_model, "digits_cnn", in_channels=3, size=16, width=4)


def images(n, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn((n, 3, size, size), generator=g), torch.randint(0, 10, (n,), generator=g)


@contextlib.contextmanager
def no_tf32():
    """Full fp32 convolutions and matmuls (TF32 would blur a comparison of two code paths)."""
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


def assert_same_state(a, b):
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(p, q), name


class _Stop(Exception):
    pass


@pytest.mark.skipif(
    os.environ.get("CUBLAS_WORKSPACE_CONFIG") not in (":4096:8", ":16:8"),
    reason="deterministic cuBLAS needs CUBLAS_WORKSPACE_CONFIG=:4096:8 before the process starts",
)
def test_deterministic_amp_channels_last_training_repeats_and_resumes(tmp_path):
    """TrainConfig(deterministic=True) on CUDA (bf16 autocast, channels-last, flip + crop):
    two runs give the same weights bit for bit, and so does a run resumed from its checkpoint."""
    x, y = images(192)
    cfg = TrainConfig.zhang2025(epochs=3, batch_size=64, deterministic=True)
    assert cfg.amp and cfg.channels_last and cfg.augment
    a = train_model(RESNET, x, y, cfg, 0, device="cuda", progress=False)
    assert a.conv1.weight.device.type == "cuda"
    assert a.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    assert not torch.are_deterministic_algorithms_enabled()  # restored after training
    b = train_model(RESNET, x, y, cfg, 0, device="cuda", progress=False)
    assert_same_state(a, b)

    def stop(epoch, view):
        if epoch == 2:
            raise _Stop

    ckpt = tmp_path / "ckpt.pt"
    with pytest.raises(_Stop):
        train_model(RESNET, x, y, cfg, 0, device="cuda", checkpoint=ckpt, callbacks=[stop],
                    progress=False)  # fmt: skip
    assert torch.load(ckpt, weights_only=True)["epoch"] == 1
    c = train_model(RESNET, x, y, cfg, 0, device="cuda", checkpoint=ckpt, progress=False)
    assert_same_state(a, c)


def test_ensemble_on_cuda_equals_plain_trainer_and_logits_agree():
    """The vmap ensemble on CUDA ends where train_model on CUDA ends (unequal subsets,
    flip + crop), and extract_logits gives the same logits for the ensemble and its models."""
    x, y = images(120, size=16)
    seeds = [3, 5, 7, 11]
    keep = keep_masks(4, 120, 0.5, rng=0)
    cfg = TrainConfig(epochs=2, lr=0.05, batch_size=16, augment=True, padding=2, amp=False,
                      channels_last=False)  # fmt: skip
    with no_tf32():
        ens = train_ensemble(CNN, x, y, cfg, seeds, subsets=keep, device="cuda", progress=False)
        assert all(p.device.type == "cuda" for p in ens.params.values())
        for k, s in enumerate(seeds):
            single = train_model(CNN, x, y, cfg, s, subset=keep[k], device="cuda", progress=False)
            sd = ens.state_dict(k)
            diff = max((sd[n] - p).abs().max().item() for n, p in single.state_dict().items())
            assert diff < 1e-4, (k, diff)
        logits = extract_logits(ens, x, queries=2, batch_size=50)
        models = [ens.model(k) for k in range(len(seeds))]
        ref = extract_logits(models, x, queries=2, batch_size=50, device="cuda")
    assert logits.shape == (4, 120, 2, 10) and logits.dtype == np.float32
    np.testing.assert_allclose(logits, ref, rtol=1e-4, atol=1e-4)
    bf16 = extract_logits(models, x, queries=2, batch_size=50, device="cuda", amp=True)
    assert bf16.dtype == np.float32 and np.isfinite(bf16).all()
    np.testing.assert_allclose(bf16, ref, rtol=0.05, atol=0.1)


@pytest.mark.parametrize("bits", [2, 4])
def test_mse_grid_search_on_cuda_is_as_good_as_on_cpu(bits):
    """The L2.4 range search: CUDA takes the vectorized torch path, the CPU the screened
    numba path; both choose the grid of least float64 error."""
    g = torch.Generator().manual_seed(bits)
    w = torch.randn((64, 144), generator=g) * 0.05
    w[:, 0] *= 8  # an outlier per channel: the range search has something to trade off
    cpu = make_grid(w, bits)
    gpu = make_grid(w.cuda(), bits)
    assert gpu.scale.device.type == "cuda"
    e_cpu, e_gpu = cpu.error(w), gpu.error(w.cuda()).cpu()
    assert bool((e_gpu <= e_cpu * (1 + 1e-5)).all())
    same = torch.isclose(gpu.scale.cpu(), cpu.scale, rtol=1e-6, atol=0)
    assert float(same.double().mean()) >= 0.9


@pytest.fixture(scope="module")
def trained_resnet():
    x, y = images(256, seed=1)
    model = train_model(RESNET, x, y, TrainConfig.zhang2025(epochs=1, batch_size=64), 0,
                        device="cuda", progress=False)  # fmt: skip
    members = np.ones(len(y), dtype=bool)
    cal = select_calibration(x, y, member_mask=members, n_samples=64, rng=0)
    cal = Calibration(tuple(t.cuda() for t in cal.data), cal.indices, members)
    return model, cal, x


@pytest.mark.parametrize(
    "method, options",
    [
        ("rtn", {}),
        ("gptq", {"progress": False}),
        ("adaround", {"n_iter": 20, "progress": False}),
        ("brecq", {"n_iter": 20, "progress": False}),
        ("obc", {"progress": False, "bn_tuning": True, "bn_batches": 2, "bn_batch_size": 32}),
    ],
)
def test_ptq_methods_on_cuda_leave_weights_on_cuda_and_on_grid(trained_resnet, method, options):
    model, cal, x = trained_resnet
    before = {n: t.clone() for n, t in model.state_dict().items()}
    q = quantize_model(model, QuantConfig(bits=2, method=method, method_options=options), cal)
    specs = q.mis_quant_info.specs
    n = 0
    for name, m in q.named_modules():
        spec = specs.get(name)
        if spec is None:
            continue
        n += 1
        w = m.weight.detach()
        assert w.device.type == "cuda", name
        rows = torch.sort(as_channels(w), dim=1).values
        distinct = 1 + (rows[:, 1:] != rows[:, :-1]).sum(1)
        assert int(distinct.max()) <= spec.n_levels, (name, int(distinct.max()))
    assert n == 21  # 17 3×3 convolutions, 3 shortcut convolutions, the linear head
    with torch.no_grad():
        assert bool(torch.isfinite(q.eval()(x[:32].cuda())).all())
    for name, t in model.state_dict().items():  # the input model is left alone
        assert torch.equal(t, before[name]), name
    if method == "obc":  # BN tuning re-estimated the statistics of the quantized copy
        rm = q.bn1.running_mean
        assert rm.device.type == "cuda" and not torch.equal(rm, model.bn1.running_mean)


def test_trajectory_recorder_on_a_cuda_ensemble():
    x, y = images(64, size=16)
    xv, yv = images(32, size=16, seed=1)
    quantizers = {"fp": lambda w: w, "ternary-50": StackedQuantizer("ternary-50")}
    rec = TrajectoryRecorder(quantizers, xv.cuda(), yv.cuda(), params="weights")
    cfg = TrainConfig(epochs=2, lr=0.05, batch_size=16, amp=False, channels_last=False)
    train_ensemble(CNN, x, y, cfg, [0, 1], device="cuda", callbacks=[rec], progress=False)
    res = rec.result()
    assert res["val_losses"].shape == (2, 2, 2, 32)
    assert np.isfinite(res["val_losses"]).all()
    # the ternary model is not the full-precision one
    assert not np.allclose(res["val_losses"][:, 0], res["val_losses"][:, 1])
