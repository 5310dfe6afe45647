"""Device check (issue 21): the CUDA paths of ``mis`` exercised by one command, one table.

Parts (each in its own process, with its own time budget; the whole stays under 8 minutes
on one H200):

1.  ``pytest -m gpu`` over the test files that hold ``gpu``-marked tests (among
    them ``tests/test_cuda_paths.py``, which covers the CUDA branches of the trainers, logit
    extraction, grids and every PTQ method), with ``CUBLAS_WORKSPACE_CONFIG=:4096:8`` so that
    the deterministic-training test can run. On a CUDA machine every selected test must run
    (a skip fails the part); on the CPU they all skip by design.
2.  Training throughput of ResNet-18 (Zhang et al. 2025, §IV-A recipe: SGD 0.9, wd 5e-4,
    cosine lr, batch 128, flip + 4-pixel crop) on CIFAR-shaped data — the real CIFAR-10
    python batches with ``--data-root``, else random N(0, 1) tensors of that shape (labelled
    as such): a plain fp32 ``DataLoader`` loop (per-sample augmentation in worker processes,
    NCHW) against :func:`mis.train.train_model` (data on the device, augmentation as tensor
    ops, bf16 autocast, channels-last), the same number of steps each, images/s of the epochs
    after the first (warm-up) and their ratio (goal ≥ 3×). With real data also the test
    accuracy of both models.
2c. The same trainer with ``torch.compile`` (inductor on CUDA; ``aot_eager`` in ``--tiny``):
    steady images/s, compile + first-epoch time and the ratios. Informational: a failure or
    a timeout here is reported as ``warn`` and does not fail the check.
3.  The ensemble trainer (:func:`mis.train.train_ensemble`, ``vmap`` over stacked
    parameters): K = 1, 2, 4, … BatchNorm-free CIFAR CNNs (``digits_cnn`` at 3×32×32) at once,
    doubling K until the budget, the memory or the cap stops it; images/s per model and the
    speed-up against training them one at a time with :func:`mis.train.train_model` (both fp32).
    ResNet-18 itself has BatchNorm, which the ensemble trainer refuses (checked).
4.  PTQ of a ResNet-18 (briefly trained by our trainer) at 2 bits with RTN, GPTQ, AdaRound
    (short schedule), BRECQ (short) and OBC on the device: wall time of each, and that every
    quantized layer's weights lie on their grid — exactly on the grid the method used where
    it can be rebuilt (RTN; AdaRound / BRECQ keep it as ``weight_grid``; OBC / GPTQ when no
    input column is dead), else on *some* grid of that many levels (per output channel at
    most L distinct values, evenly spaced); test accuracy only with real data.
5.  A reduced CIFAR-shaped audit end to end on the device (``mis.studies.audit.run_audit``
    with ``study.device``): 6 shadows + 2 targets of ResNet-18, GPTQ at 4 and 2 bits, LiRA /
    RMIA / loss attacks, metrics and report.

``--tiny`` runs every part at toy sizes (ResNet-18's topology at width 8, a few steps, a
few models) on whatever device there is — on the CPU in about a minute — and is run by the
default test suite (``tests/test_device_check.py``), so the script cannot rot.

Output: one markdown table on stdout (part, check, result, status) and, under ``--out``,
``table.md``, ``results.json`` and ``logs.txt`` (each part's own output). Status ``ok``,
``FAIL``, ``below goal`` (a measured figure under the issue's goal: not a failure unless
``--strict``), ``warn`` (informational part failed), ``skip`` (not applicable, e.g. accuracy
without real data), ``info``. The exit status is 1 when any row is ``FAIL``, 2 when the
command cannot run (no CUDA without ``--tiny``), else 0.

Usage::

    python benchmarks/device_check.py --out $OUT/dc                # on a CUDA machine
    python benchmarks/device_check.py --data-root DIR --out $OUT/dc  # with CIFAR-10 batches
    python benchmarks/device_check.py --tiny                        # CPU smoke test
    python benchmarks/device_check.py --parts 2,4                   # some parts only

The script imports ``mis`` from the repository it lives in (no installation needed), so it
runs on a machine that has PyTorch and the package's dependencies but not the package. The
part limits add up to 480 s (``--budget-scale`` multiplies them); give the whole command an
outer timeout of about 560 s. ``table.md`` and ``results.json`` are rewritten after every
part, so a run stopped from outside still leaves the parts it finished.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # import the repository's mis, installed or not
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402
from torch.utils.data import Dataset as TorchDataset  # noqa: E402

from mis.exceptions import MisValueError  # noqa: E402
from mis.quant import Calibration, QuantConfig, quantize_model, select_calibration  # noqa: E402
from mis.quant.grids import as_channels  # noqa: E402
from mis.quant.obc import layer_grid, on_grid  # noqa: E402
from mis.studies.audit import default_config, run_audit  # noqa: E402
from mis.train import (  # noqa: E402
    TrainConfig,
    build_model,
    count_parameters,
    keep_masks,
    load_cifar10,
    train_ensemble,
    train_model,
)
from mis.train.config import init_model, lr_at  # noqa: E402
from mis.train.data import random_flip_crop  # noqa: E402

#: Execution order (the table is sorted by part).
PARTS = ("1", "2", "3", "4", "5", "2c")
TITLES = {
    "1": "pytest: gpu tests and CUDA branches",
    "2": "training throughput, ResNet-18",
    "2c": "torch.compile on our trainer",
    "3": "ensemble trainer: models at once",
    "4": "PTQ of ResNet-18 at 2 bits",
    "5": "audit end to end",
}
#: Parts whose failure is reported as ``warn`` (measurements, not package code paths).
OPTIONAL = {"2c"}
#: Hard time limits in seconds (each part is killed at its limit). Full: 480 s in all.
BUDGET_FULL = {"1": 75, "2": 75, "2c": 75, "3": 50, "4": 110, "5": 95}
#: ``--tiny``: generous limits for a loaded 2-core CPU; a healthy run takes about a minute.
BUDGET_TINY = {"1": 120, "2": 90, "2c": 120, "3": 90, "4": 150, "5": 150}
THROUGHPUT_GOAL = 3.0
STATUSES = ("ok", "FAIL", "below goal", "warn", "skip", "info")
CUBLAS_DETERMINISTIC = ":4096:8"


@dataclasses.dataclass(frozen=True)
class Sizes:
    """Problem sizes of every part (full: on one GPU; tiny: toy sizes for a CPU)."""

    width: int  # ResNet-18 planes of the stem; 64 = the published network
    batch: int
    steps: int  # part 2: steps per epoch
    epochs: int  # part 2: epochs (the first is the warm-up)
    workers: int  # part 2: DataLoader workers of the plain loop
    ens_width: int  # part 3: digits_cnn width
    ens_pool: int
    ens_batch: int
    ens_max_k: int
    ptq_train: int  # part 4: training examples of the quantized model
    ptq_epochs: int
    calib: int
    recon_iter: int  # AdaRound / BRECQ iterations per unit ("short schedule")
    n_test: int
    audit_shadows: int
    audit_targets: int
    audit_pool: int
    audit_test: int
    audit_epochs: int
    audit_batch: int
    audit_calib: int


FULL = Sizes(
    width=64, batch=128, steps=96, epochs=3, workers=4,
    ens_width=16, ens_pool=4096, ens_batch=128, ens_max_k=512,
    ptq_train=10240, ptq_epochs=2, calib=1024, recon_iter=200, n_test=2000,
    audit_shadows=6, audit_targets=2, audit_pool=2048, audit_test=512, audit_epochs=3,
    audit_batch=128, audit_calib=256,
)  # fmt: skip
TINY = Sizes(
    width=8, batch=16, steps=3, epochs=2, workers=0,
    ens_width=4, ens_pool=96, ens_batch=16, ens_max_k=4,
    ptq_train=128, ptq_epochs=1, calib=32, recon_iter=5, n_test=64,
    audit_shadows=4, audit_targets=2, audit_pool=128, audit_test=32, audit_epochs=1,
    audit_batch=32, audit_calib=16,
)  # fmt: skip


# ==========================================================================================
# rows
# ==========================================================================================
def _append_json(path: Path, record: dict) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record, default=float) + "\n")
        f.flush()


def read_records(path: Path) -> list[dict]:
    """The JSON lines written so far (rows and meta records); a torn last line is dropped."""
    if not Path(path).is_file():
        return []
    out = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        with contextlib.suppress(json.JSONDecodeError):
            out.append(json.loads(line))
    return out


def row(part: str, item: str, value: str, status: str = "ok", **data) -> dict:
    if status not in STATUSES:
        raise ValueError(f"status must be one of {STATUSES}; got {status!r}")
    return {"kind": "row", "part": part, "item": item, "value": value, "status": status,
            "data": data}  # fmt: skip


def exit_code(rows: list[dict], strict: bool = False) -> int:
    """1 when a row failed (or, with ``strict``, missed its goal), else 0."""
    bad = {"FAIL", "below goal"} if strict else {"FAIL"}
    return int(any(r["status"] in bad for r in rows))


def format_table(rows: list[dict]) -> str:
    order = {p: i for i, p in enumerate(sorted(PARTS, key=lambda p: (p[0], p)))}
    rows = sorted(rows, key=lambda r: order.get(r["part"], 99))  # stable within a part
    lines = ["| part | check | result | status |", "| --- | --- | --- | --- |"]
    for r in rows:
        cells = [r["part"], r["item"], r["value"], r["status"]]
        text = (" ".join(str(c).replace("|", "/").split()) for c in cells)  # one line each
        lines.append("| " + " | ".join(text) + " |")
    return "\n".join(lines)


# ==========================================================================================
# grid checks (part 4)
# ==========================================================================================
def lattice_ok(w: torch.Tensor, n_levels: int, rtol: float = 1e-3) -> bool:
    """True when every output channel of ``w`` lies on *some* grid of ``n_levels`` levels.

    Per channel (row of ``as_channels(w)``): at most ``n_levels`` distinct values, the gaps
    between neighbouring distinct values integer multiples of the smallest gap, and the span
    at most ``n_levels − 1`` smallest gaps. A weight left in float (thousands of distinct
    values per channel) fails.
    """
    x = as_channels(w.detach()).to("cpu", torch.float64)
    s = torch.sort(x, dim=1).values
    distinct = 1 + (s[:, 1:] != s[:, :-1]).sum(1)
    if int(distinct.max()) > n_levels:
        return False
    for r in range(s.shape[0]):
        u = torch.unique_consecutive(s[r])
        if u.numel() < 2:
            continue
        d = u[1:] - u[:-1]
        step = d.min()
        k = d / step
        if bool(((k - k.round()).abs() > rtol * k.clamp_min(1)).any()):
            return False
        if float((u[-1] - u[0]) / step) > n_levels - 1 + rtol * n_levels:
            return False
    return True


def grid_report(qmodel: nn.Module, fp_model: nn.Module, method: str) -> dict:
    """On-grid facts of every quantized layer of ``qmodel`` (see :func:`lattice_ok`)."""
    specs = qmodel.mis_quant_info.specs
    fp_layers = dict(fp_model.named_modules())
    n = exact = lattice = 0
    bad, devices = [], set()
    for name, m in qmodel.named_modules():
        spec = specs.get(name)
        if spec is None:
            continue
        n += 1
        w = m.weight.detach()
        devices.add(w.device.type)
        w2 = as_channels(w)
        grid = getattr(m, "weight_grid", None)  # AdaRound / BRECQ keep the grid they used
        if grid is None and not spec.is_sign and name in fp_layers:
            grid = layer_grid(spec, fp_layers[name].weight.detach().to(w.device))
        if grid is not None and bool(on_grid(grid, w2).all()):
            exact += 1
        elif lattice_ok(w, spec.n_levels):
            lattice += 1
        else:
            bad.append(name)
    return {"layers": n, "exact": exact, "lattice": lattice, "off_grid": bad,
            "devices": sorted(devices), "method": method}  # fmt: skip


# ==========================================================================================
# child context
# ==========================================================================================
@dataclasses.dataclass
class Ctx:
    part: str
    device: torch.device
    sizes: Sizes
    tiny: bool
    data_root: str | None
    budget: float
    work: Path
    rows_file: Path
    start: float = dataclasses.field(default_factory=time.perf_counter)

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    def emit(self, item: str, value: str, status: str = "ok", **data) -> None:
        _append_json(self.rows_file, row(self.part, item, value, status, **data))

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()

    def reset_peak(self) -> None:
        if self.cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()

    def peak_mb(self) -> float:
        return torch.cuda.max_memory_allocated() / 2**20 if self.cuda else float("nan")


def _mem(ctx: Ctx) -> str:
    return f"; peak GPU memory {ctx.peak_mb():,.0f} MB" if ctx.cuda else ""


def _resnet(ctx: Ctx, n_classes: int = 10):
    return functools.partial(build_model, "resnet18", n_classes=n_classes, width=ctx.sizes.width)


def _model_label(ctx: Ctx) -> str:
    n = count_parameters(_resnet(ctx)())
    if ctx.sizes.width == 64:
        return f"ResNet-18 ({n / 1e6:.1f} M parameters)"
    return f"ResNet-18 topology at width {ctx.sizes.width} ({n:,} parameters)"


def cifar_shaped(ctx: Ctx, n: int, n_test: int, seed: int = 0):
    """``n`` training and ``n_test`` test images of shape 3×32×32, normalised float32.

    Real CIFAR-10 with ``--data-root`` (test split included), else N(0, 1) tensors with
    uniform labels (no test split). Returns (x, y, x_test, y_test, label).
    """
    if ctx.data_root:
        ds = load_cifar10(ctx.data_root)
        if n > len(ds):
            raise MisValueError(f"n must be <= {len(ds)}; got {n}")
        x, y = ds.tensor(ds.x[:n]), torch.as_tensor(ds.y[:n])
        xt, yt = ds.tensor(ds.x_test[:n_test]), torch.as_tensor(ds.y_test[:n_test])
        return x, y, xt, yt, f"CIFAR-10 ({n:,} training images of {ctx.data_root})"
    g = torch.Generator().manual_seed(seed)
    x = torch.randn((n, 3, 32, 32), generator=g)
    y = torch.randint(0, 10, (n,), generator=g)
    return x, y, None, None, f"random N(0,1) tensors, 3×32×32 ({n:,}; no --data-root)"


@torch.no_grad()
def accuracy(model: nn.Module, x, y, device, batch: int = 1000) -> float:
    model.eval()
    hits = 0
    for i in range(0, len(y), batch):
        out = model(x[i : i + batch].to(device))
        hits += int((out.argmax(1).cpu() == y[i : i + batch]).sum())
    return hits / len(y)


class EpochTimer:
    """A training callback: the (synchronised) time at the end of every epoch."""

    def __init__(self, ctx: Ctx):
        self.ctx, self.t0, self.ends = ctx, time.perf_counter(), []

    def __call__(self, epoch, view) -> None:
        self.ctx.sync()
        self.ends.append(time.perf_counter())

    def steady_rate(self, images_per_epoch: int) -> float:
        """Images/s over the epochs after the first."""
        if len(self.ends) < 2:
            return float("nan")
        return (len(self.ends) - 1) * images_per_epoch / (self.ends[-1] - self.ends[0])

    @property
    def first_epoch_s(self) -> float:
        return self.ends[0] - self.t0


# ==========================================================================================
# part 2: throughput
# ==========================================================================================
class AugmentedImages(TorchDataset):
    """CPU images with the per-sample flip + crop of a torchvision-style pipeline."""

    def __init__(self, x, y, padding: int = 4):
        self.x, self.y, self.padding = x, y, padding

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i):
        flip = torch.rand(1) < 0.5
        off = torch.randint(0, 2 * self.padding + 1, (1, 2))
        return random_flip_crop(self.x[i : i + 1], flip, off, self.padding)[0], self.y[i]


def plain_loop(ctx: Ctx, model_fn, x, y, cfg: TrainConfig, workers: int):
    """The baseline: fp32, NCHW, a DataLoader with per-sample augmentation, torch.optim.SGD."""
    torch.manual_seed(1)
    model = init_model(model_fn, 0).to(ctx.device)
    opt = torch.optim.SGD(
        model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
    )
    loader = DataLoader(
        AugmentedImages(x, y, cfg.padding),
        batch_size=cfg.batch_size,
        shuffle=True,
        drop_last=True,
        num_workers=workers,
        pin_memory=ctx.cuda,
        persistent_workers=workers > 0,
    )
    timer = EpochTimer(ctx)
    for epoch in range(cfg.epochs):
        model.train()
        for group in opt.param_groups:
            group["lr"] = lr_at(cfg, epoch)
        for xb, yb in loader:
            xb = xb.to(ctx.device, non_blocking=True)
            yb = yb.to(ctx.device, non_blocking=True)
            loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        timer(epoch + 1, None)
    return model.eval(), timer


def part2(ctx: Ctx) -> None:
    s = ctx.sizes
    n = s.steps * s.batch
    x, y, xt, yt, label = cifar_shaped(ctx, n, s.n_test)
    ctx.emit("data", label, "info")
    cfg = TrainConfig.zhang2025(epochs=s.epochs, batch_size=s.batch, drop_last=True)
    fn = _resnet(ctx)
    what = f"{_model_label(ctx)}, batch {s.batch}, {s.steps} steps × {s.epochs} epochs"
    ctx.emit("workload", what + " (first epoch = warm-up, not timed)", "info")

    ctx.reset_peak()
    base_model, base_t = plain_loop(ctx, fn, x, y, cfg, s.workers)
    base = base_t.steady_rate(n)
    ctx.emit(f"plain fp32 DataLoader loop ({s.workers} workers, NCHW)", f"{base:,.0f} images/s"
             + _mem(ctx), "ok" if math.isfinite(base) else "FAIL", images_per_s=base)  # fmt: skip

    ctx.reset_peak()
    timer = EpochTimer(ctx)
    ours_model = train_model(fn, x, y, cfg, 0, device=ctx.device, callbacks=[timer],
                             progress=False)  # fmt: skip
    ours = timer.steady_rate(n)
    ctx.emit(
        "our trainer (" + ("bf16 autocast, channels-last, " if ctx.cuda else "CPU: no AMP, ")
        + "data on the device)", f"{ours:,.0f} images/s" + _mem(ctx),
        "ok" if math.isfinite(ours) else "FAIL", images_per_s=ours,
    )  # fmt: skip
    ratio = ours / base
    status = "ok" if ratio >= THROUGHPUT_GOAL else "below goal"
    ctx.emit("ratio ours / plain", f"{ratio:.2f}× (goal ≥ {THROUGHPUT_GOAL:g}×)", status,
             ratio=ratio)  # fmt: skip

    probe = x[: min(256, n)].to(ctx.device)
    with torch.no_grad():
        finite = all(bool(torch.isfinite(m(probe)).all()) for m in (base_model, ours_model))
    ctx.emit("outputs of both trained models finite", str(finite), "ok" if finite else "FAIL")
    if xt is None:
        ctx.emit("test accuracy", "needs --data-root (random data)", "skip")
        return
    a_ours = accuracy(ours_model, xt, yt, ctx.device)
    a_base = accuracy(base_model, xt, yt, ctx.device)
    ok = a_ours >= a_base - 0.10 and (ctx.tiny or a_ours > 0.15)
    ctx.emit(f"test accuracy after {s.epochs} epochs ({len(yt)} images)",
             f"ours {a_ours:.3f}, plain {a_base:.3f}", "ok" if ok else "FAIL")  # fmt: skip


def _compiled_resnet(width: int, backend: str) -> nn.Module:
    return torch.compile(build_model("resnet18", width=width), backend=backend)


def part2c(ctx: Ctx) -> None:
    s = ctx.sizes
    n = s.steps * s.batch
    x, y, *_ = cifar_shaped(ctx, n, 0)
    backend = "inductor" if ctx.cuda else "aot_eager"
    fn = functools.partial(_compiled_resnet, s.width, backend)
    cfg = TrainConfig.zhang2025(epochs=s.epochs, batch_size=s.batch, drop_last=True)
    ctx.reset_peak()
    timer = EpochTimer(ctx)
    train_model(fn, x, y, cfg, 0, device=ctx.device, callbacks=[timer], progress=False)
    rate = timer.steady_rate(n)
    ctx.emit(f"our trainer + torch.compile ({backend})",
             f"{rate:,.0f} images/s; compile + first epoch {timer.first_epoch_s:.1f} s"
             + _mem(ctx), "info", images_per_s=rate)  # fmt: skip
    earlier = {r["item"]: r["data"] for r in read_records(ctx.rows_file)
               if r.get("kind") == "row" and r["part"] == "2"}  # fmt: skip
    base = next((d["images_per_s"] for k, d in earlier.items() if k.startswith("plain")), None)
    ours = next((d["images_per_s"] for k, d in earlier.items() if k.startswith("our")), None)
    if base and ours:
        r = rate / base
        ctx.emit("ratio compiled / plain", f"{r:.2f}× (goal ≥ {THROUGHPUT_GOAL:g}×); "
                 f"compiled / eager ours {rate / ours:.2f}×", "info", ratio=r)  # fmt: skip


# ==========================================================================================
# part 3: ensemble
# ==========================================================================================
def part3(ctx: Ctx) -> None:
    s = ctx.sizes
    g = torch.Generator().manual_seed(0)
    x = torch.randn((s.ens_pool, 3, 32, 32), generator=g)
    y = torch.randint(0, 10, (s.ens_pool,), generator=g)
    fn = functools.partial(build_model, "digits_cnn", in_channels=3, size=32, width=s.ens_width)
    cfg = TrainConfig(epochs=2, lr=0.05, batch_size=s.ens_batch, augment=True, padding=4,
                      amp=False, channels_last=False)  # fmt: skip
    members = s.ens_pool // 2
    ctx.emit("workload", f"digits_cnn (width {s.ens_width}, 3×32×32, "
             f"{count_parameters(fn()):,} parameters), {members} members per model, batch "
             f"{s.ens_batch}, fp32, flip + crop; epoch 2 timed", "info")  # fmt: skip

    # ResNet-18 has BatchNorm: the vmap ensemble must refuse it with a clear message
    try:
        train_ensemble(_resnet(ctx), x[:4], y[:4], TrainConfig(epochs=1), [0, 1],
                       device=ctx.device)  # fmt: skip
        ctx.emit("ResNet-18 in the ensemble trainer", "accepted (expected a refusal)", "FAIL")
    except MisValueError as exc:
        ok = "BatchNorm" in str(exc)
        ctx.emit("ResNet-18 in the ensemble trainer", "refused (BatchNorm): it trains with "
                 "train_model, one model per job", "ok" if ok else "FAIL")  # fmt: skip

    keep1 = keep_masks(2, s.ens_pool, 0.5, rng=0)[0]
    timer = EpochTimer(ctx)
    train_model(fn, x, y, cfg, 0, subset=keep1, device=ctx.device, callbacks=[timer],
                progress=False)  # fmt: skip
    single = members / (timer.ends[-1] - timer.ends[-2])
    ctx.emit("one model at a time (train_model, fp32)", f"{single:,.0f} images/s",
             "ok" if math.isfinite(single) else "FAIL", images_per_s=single)  # fmt: skip

    k, largest, best, stop = 1, 0, (0.0, 0), "cap"
    last_s = 0.0
    while k <= s.ens_max_k:
        if not ctx.tiny and ctx.elapsed() + 2.5 * last_s > 0.8 * ctx.budget:
            stop = "time budget"
            break
        keep = keep_masks(k, s.ens_pool, 0.5, rng=k) if k > 1 else keep1[None]
        ctx.reset_peak()
        timer = EpochTimer(ctx)
        try:
            train_ensemble(fn, x, y, cfg, list(range(k)), subsets=keep, device=ctx.device,
                           callbacks=[timer], progress=False)  # fmt: skip
        except torch.cuda.OutOfMemoryError:
            stop = f"out of memory at K = {k}"
            ctx.emit(f"ensemble K = {k}", "out of memory", "info")
            break
        last_s = timer.ends[-1] - timer.t0
        per_model = float(keep.sum()) / k / (timer.ends[-1] - timer.ends[-2])
        speedup = k * per_model / single
        if k * per_model > best[0]:
            best = (k * per_model, k)
        largest = k
        ctx.emit(f"ensemble K = {k}", f"{per_model:,.0f} images/s per model, "
                 f"{k * per_model:,.0f} in all = {speedup:.2f}× one at a time" + _mem(ctx),
                 "ok", k=k, per_model=per_model, speedup=speedup)  # fmt: skip
        k *= 2
    if largest == 0:
        ctx.emit("ensemble", "no K ran", "FAIL")
        return
    ctx.emit("models trained at once", f"up to K = {largest} (stopped by {stop}); best "
             f"aggregate {best[0] / single:.2f}× one at a time at K = {best[1]}", "info",
             largest=largest)  # fmt: skip


# ==========================================================================================
# part 4: PTQ
# ==========================================================================================
def _method_options(ctx: Ctx) -> dict[str, dict]:
    s = ctx.sizes
    recon = {"n_iter": s.recon_iter, "progress": False}
    if ctx.tiny and not ctx.cuda:
        recon["num_threads"] = 1
    obc: dict = {"progress": False}
    if ctx.cuda:  # rows solved together: bounded by memory, not by the 1 GiB CPU default
        free, _ = torch.cuda.mem_get_info()
        obc["memory_budget"] = int(min(32 * 2**30, 0.3 * free))
    return {"rtn": {}, "gptq": {"progress": False}, "adaround": dict(recon),
            "brecq": dict(recon), "obc": obc}  # fmt: skip


def part4(ctx: Ctx) -> None:
    s = ctx.sizes
    x, y, xt, yt, label = cifar_shaped(ctx, s.ptq_train, s.n_test, seed=4)
    cfg = TrainConfig.zhang2025(epochs=s.ptq_epochs, batch_size=s.batch)
    t0 = time.perf_counter()
    model = train_model(_resnet(ctx), x, y, cfg, 0, device=ctx.device, progress=False)
    ctx.sync()
    ctx.emit("model", f"{_model_label(ctx)} trained {s.ptq_epochs} epoch(s) on {label} in "
             f"{time.perf_counter() - t0:.1f} s", "info")  # fmt: skip
    members = np.ones(len(y), dtype=bool)  # every training example is a member
    cal = select_calibration(x, y, member_mask=members, n_samples=s.calib, rng=0)
    if ctx.cuda:  # as the audit's quantization job does
        cal = Calibration(tuple(t.to(ctx.device) for t in cal.data), cal.indices, members)
    fp_acc = None
    if xt is not None:
        fp_acc = accuracy(model, xt, yt, ctx.device)
        ctx.emit("full-precision test accuracy", f"{fp_acc:.3f}", "info")
    options = _method_options(ctx)
    for method in ("rtn", "gptq", "adaround", "brecq", "obc"):
        name = {"rtn": "RTN", "gptq": "GPTQ", "adaround": "AdaRound", "brecq": "BRECQ",
                "obc": "OBC"}[method]  # fmt: skip
        if method in ("adaround", "brecq"):
            name += f" ({s.recon_iter} iterations per unit)"
        try:
            qc = QuantConfig(bits=2, method=method, method_options=options[method])
            ctx.reset_peak()
            ctx.sync()
            t0 = time.perf_counter()
            q = quantize_model(model, qc, cal)
            ctx.sync()
            wall = time.perf_counter() - t0
            rep = grid_report(q, model, method)
            probe = x[:64].to(ctx.device)
            with torch.no_grad():
                finite = bool(torch.isfinite(q.eval()(probe)).all())
            on_dev = rep["devices"] == [ctx.device.type]
            ok = not rep["off_grid"] and finite and on_dev and rep["layers"] > 0
            how = (f"{rep['exact'] + rep['lattice']}/{rep['layers']} layers on grid "
                   f"({rep['exact']} exactly on the method's grid)")  # fmt: skip
            if rep["off_grid"]:
                how += f"; OFF GRID: {', '.join(rep['off_grid'][:4])}"
            if not on_dev:
                how += f"; weights on {rep['devices']}"
            if not finite:
                how += "; non-finite outputs"
            acc = ""
            if xt is not None:
                acc = f"; test accuracy {accuracy(q, xt, yt, ctx.device):.3f} (fp {fp_acc:.3f})"
            ctx.emit(f"{name} 2-bit", f"{wall:.1f} s; {how}{acc}{_mem(ctx)}",
                     "ok" if ok else "FAIL", wall_s=wall, **rep)  # fmt: skip
            del q
        except Exception as exc:  # one method's failure must not hide the others
            ctx.emit(f"{name} 2-bit", f"{type(exc).__name__}: {exc}"[:300], "FAIL")
            traceback.print_exc()


# ==========================================================================================
# part 5: audit
# ==========================================================================================
def audit_config(ctx: Ctx):
    s = ctx.sizes
    if ctx.data_root:
        data = {"name": "cifar10", "root": str(ctx.data_root), "n_examples": s.audit_pool,
                "n_test": s.audit_test}  # fmt: skip
    else:
        data = {"name": "synthetic", "synthetic_n": s.audit_pool,
                "synthetic_n_test": s.audit_test, "synthetic_shape": [3, 32, 32],
                "synthetic_classes": 10, "synthetic_noise": 1.0}  # fmt: skip
    return default_config().replace(
        study={"name": "device-check", "shadows": s.audit_shadows, "targets": s.audit_targets,
               "pkeep": 0.5, "device": ctx.device.type,
               "torch_threads": 1 if ctx.tiny and not ctx.cuda else 0},
        data=data,
        model={"name": "resnet18", "options": {"width": s.width}},
        train={"trainer": "plain", "epochs": s.audit_epochs, "batch_size": s.audit_batch,
               "lr": 0.1, "augment": True, "amp": True, "channels_last": True},
        quant={"methods": ["gptq"], "bits": [4, 2], "decoupled_last_layer_bits": 0,
               "calibration_samples": s.audit_calib, "options": {"gptq": {"progress": False}}},
        attack={"n_aug": 2},
        metrics={"fprs": [0.01, 0.1], "n_resamples": 100, "band_resamples": 20,
                 "band_points": 8},
    )  # fmt: skip


def part5(ctx: Ctx) -> None:
    s = ctx.sizes
    cfg = audit_config(ctx)
    ctx.reset_peak()
    t0 = time.perf_counter()
    res = run_audit(cfg, ctx.work / "audit", progress=False)
    wall = time.perf_counter() - t0
    t = res.get("timing", {})
    stages = ", ".join(f"{k[:-2]} {t[k]:.0f} s" for k in ("train_s", "quantize_s", "attack_s",
                       "analysis_s") if k in t)  # fmt: skip
    data = "CIFAR-10" if ctx.data_root else "synthetic 3×32×32"
    ctx.emit(
        "audit",
        f"{s.audit_shadows} shadows + {s.audit_targets} targets, "
        f"{_model_label(ctx)}, {data} ({s.audit_pool} pool), GPTQ 4/2-bit, "
        f"{s.audit_epochs} epoch(s): {wall:.1f} s ({stages})",
        "ok",
        wall_s=wall,
    )
    keys = [v["key"] for v in res["variants"]]
    aucs, ok = {}, keys == ["fp", "gptq_4b", "gptq_2b"]
    for key in keys:
        for attack in cfg.attack.attacks:
            a = res["privacy"][key][attack]["pooled"]["auc"]["estimate"]
            ok &= math.isfinite(a) and 0.0 <= a <= 1.0
            aucs.setdefault(attack, []).append(a)
    ctx.emit("variants", ", ".join(keys), "ok" if keys == ["fp", "gptq_4b", "gptq_2b"]
             else "FAIL")  # fmt: skip
    line = "; ".join(f"{a}: " + " / ".join(f"{v:.3f}" for v in vals) for a, vals in aucs.items())
    ctx.emit("pooled AUC fp / 4-bit / 2-bit", line, "ok" if ok else "FAIL")
    acc = [res["accuracy"][k]["mean"] for k in keys]
    acc_ok = all(0.0 <= a <= 1.0 for a in acc)
    ctx.emit("test accuracy fp / 4-bit / 2-bit (mean over targets)",
             " / ".join(f"{a:.3f}" for a in acc), "ok" if acc_ok else "FAIL")  # fmt: skip
    report = (ctx.work / "audit" / "report.md").is_file()
    ctx.emit("report.md written", str(report), "ok" if report else "FAIL")
    if ctx.cuda:
        used = torch.cuda.max_memory_allocated() > 0
        ctx.emit("the audit ran on CUDA", f"peak GPU memory {ctx.peak_mb():,.0f} MB",
                 "ok" if used else "FAIL")  # fmt: skip


CHILD_PARTS = {"2": part2, "2c": part2c, "3": part3, "4": part4, "5": part5}


def child_main(args) -> int:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cpu" and args.tiny:
        torch.set_num_threads(1)  # toy sizes on a busy CPU: one thread avoids stalls
    ctx = Ctx(
        part=args._part, device=device, sizes=TINY if args.tiny else FULL, tiny=args.tiny,
        data_root=args.data_root, budget=args._budget, work=Path(args._work),
        rows_file=Path(args._rows),
    )  # fmt: skip
    if args.workers is not None:
        ctx.sizes = dataclasses.replace(ctx.sizes, workers=args.workers)
    torch.manual_seed(0)
    try:
        CHILD_PARTS[args._part](ctx)
    except Exception as exc:
        ctx.emit("part raised", f"{type(exc).__name__}: {exc}"[:300], "FAIL")
        traceback.print_exc()
        return 1
    return 0


# ==========================================================================================
# parent: part 1 (pytest) and the orchestration
# ==========================================================================================
def gpu_test_files() -> list[str]:
    """Test files with a ``gpu`` marker (relative to the repository): collecting only those
    keeps optional extras that the device may lack (RDKit, Dask) out of the run."""
    out = []
    for p in sorted((ROOT / "tests").glob("test_*.py")):
        if "mark.gpu" in p.read_text(encoding="utf-8"):
            out.append(str(p.relative_to(ROOT)))
    return out


def run_command(cmd, *, timeout: float, log, env=None) -> tuple[str, int | None, float]:
    """Run ``cmd`` in its own process group, output to ``log``; kill the group at ``timeout``.

    Returns (state, return code, wall seconds): state "done", "crashed" or "timeout".
    """
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)  # fmt: skip
    try:
        rc = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        return "timeout", None, time.perf_counter() - t0
    return ("done" if rc == 0 else "crashed"), rc, time.perf_counter() - t0


def _env(extra: dict | None = None) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


def part1(args, budget: float, work: Path, log) -> list[dict]:
    files = gpu_test_files()
    junit = work / "pytest-gpu.xml"
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "-rfEs",
        "-m",
        "gpu",
        f"--junitxml={junit}",
        *files,
    ]
    state, rc, wall = run_command(
        cmd, timeout=budget, log=log, env=_env({"CUBLAS_WORKSPACE_CONFIG": CUBLAS_DETERMINISTIC})
    )  # fmt: skip
    what = f"pytest -m gpu ({len(files)} test files with gpu tests)"
    if state == "timeout":
        return [row("1", what, f"timed out after {budget:.0f} s", "FAIL")]
    if not junit.is_file():
        return [row("1", what, f"no report (pytest exit {rc}); see logs.txt", "FAIL")]
    cases = ET.parse(junit).getroot().iter("testcase")
    passed, failed, skipped = [], [], []
    for c in cases:
        name = f"{c.get('classname', '').rsplit('.', 1)[-1]}::{c.get('name')}"
        kinds = {child.tag for child in c}
        (failed if kinds & {"failure", "error"} else skipped if "skipped" in kinds
         else passed).append(name)  # fmt: skip
    cuda = torch.cuda.is_available()
    value = f"{len(passed)} passed, {len(failed)} failed, {len(skipped)} skipped in {wall:.0f} s"
    # on CUDA every selected test must run; on the CPU the gpu tests skip by design
    ok = rc == 0 and not failed and (not cuda or not skipped) and (passed or skipped)
    rows = [
        row(
            "1",
            what,
            value + ("" if cuda else " (no CUDA: gpu tests skip)"),
            "ok" if ok else "FAIL",
            passed=len(passed),
            failed=failed,
            skipped=skipped,
        )
    ]
    rows += [row("1", f"failed: {n}", "see logs.txt", "FAIL") for n in failed[:10]]
    if cuda:
        rows += [row("1", f"skipped on CUDA: {n}", "see logs.txt", "FAIL") for n in skipped[:10]]
    return rows


def run_child(part, args, budget: float, work: Path, rows_file: Path, log) -> list[dict]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--_part", part, "--_rows",
           str(rows_file), "--_work", str(work), "--_budget", str(budget)]  # fmt: skip
    if args.tiny:
        cmd.append("--tiny")
    if args.data_root:
        cmd += ["--data-root", str(args.data_root)]
    if args.workers is not None:
        cmd += ["--workers", str(args.workers)]
    state, rc, wall = run_command(cmd, timeout=budget, log=log, env=_env())
    soft = "warn" if part in OPTIONAL else "FAIL"
    rows = []
    if state == "timeout":
        rows.append(row(part, "part", f"timed out after {budget:.0f} s; rows above are what "
                        "it finished", soft))  # fmt: skip
    elif state == "crashed":
        rows.append(row(part, "part", f"exited with {rc}; see logs.txt", soft))
    rows.append(row(part, "wall time", f"{wall:.1f} s (limit {budget:.0f} s)", "info",
                    wall_s=wall))  # fmt: skip
    return rows


def _meta() -> dict:
    meta = {"torch": torch.__version__, "numpy": np.__version__, "python": sys.version.split()[0]}
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        meta.update(device=p.name, memory_gb=round(p.total_memory / 2**30, 1),
                    cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version())  # fmt: skip
    else:
        meta.update(device=f"CPU ({os.cpu_count()} cores)")
    return meta


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiny", action="store_true", help="toy sizes (CPU smoke test)")
    ap.add_argument(
        "--data-root",
        default=None,
        help="directory with CIFAR-10's python batches (else random tensors)",
    )
    ap.add_argument(
        "--parts",
        default=",".join(PARTS),
        help=f"comma-separated parts to run, of {','.join(PARTS)}",
    )
    ap.add_argument("--out", default=None, help="where table.md, results.json, logs.txt go")
    ap.add_argument(
        "--budget-scale",
        type=float,
        default=1.0,
        help="multiply every part's time limit (slow machines)",
    )
    ap.add_argument(
        "--workers",
        type=int,
        default=None,
        help="DataLoader workers of the plain loop (default 4; 0 with --tiny)",
    )
    ap.add_argument(
        "--strict", action="store_true", help="a figure below its goal fails the check too"
    )
    for hidden in ("--_part", "--_rows", "--_work"):
        ap.add_argument(hidden, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--_budget", type=float, default=0.0, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        ap.error(f"--parts: unknown part(s) {unknown}; choose from {list(PARTS)}")
    args.part_list = [p for p in PARTS if p in parts]
    if args.data_root and not Path(args.data_root).is_dir():
        ap.error(f"--data-root: not a directory: {args.data_root}")
    if args.budget_scale <= 0:
        ap.error(f"--budget-scale must be > 0; got {args.budget_scale}")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args._part:
        return child_main(args)
    if not args.tiny and not torch.cuda.is_available():
        print("device_check: no CUDA device; run with --tiny for the CPU smoke test",
              file=sys.stderr)  # fmt: skip
        return 2
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="device-check-"))
    out.mkdir(parents=True, exist_ok=True)
    budgets = BUDGET_TINY if args.tiny else BUDGET_FULL
    meta = _meta()
    mode = "tiny (toy sizes)" if args.tiny else "full"
    print(f"device check, {mode}: {meta['device']}, torch {meta['torch']}; output in {out}",
          flush=True)  # fmt: skip
    t_start = time.perf_counter()
    rows: list[dict] = []
    parts: dict[str, dict] = {}

    def write_outputs(final: bool) -> int:
        """table.md and results.json of what has run (rewritten after every part, so a run
        killed from outside still leaves its finished parts)."""
        total = time.perf_counter() - t_start
        code = exit_code(rows, args.strict)
        head = (
            f"Device check ({mode}) on {meta['device']}, torch {meta['torch']}"
            + (f", CUDA {meta['cuda']}" if "cuda" in meta else "")
            + f": {total:.0f} s wall, exit {code}"
            + ("" if final else f" (unfinished: {len(parts)} of {len(args.part_list)} parts)")
        )
        table = format_table(rows)
        (out / "table.md").write_text(head + "\n\n" + table + "\n", encoding="utf-8")
        (out / "results.json").write_text(json.dumps(
            {"mode": "tiny" if args.tiny else "full", "meta": meta, "parts": parts,
             "rows": rows, "total_s": total, "exit_code": code, "strict": args.strict,
             "finished": final, "data_root": args.data_root}, indent=1, default=float),
            encoding="utf-8")  # fmt: skip
        if final:
            print("\n" + head + "\n\n" + table)
        return code

    with tempfile.TemporaryDirectory(prefix="device-check-work-") as tmp, \
            open(out / "logs.txt", "w", encoding="utf-8") as log:  # fmt: skip
        work = Path(tmp)
        rows_file = work / "rows.jsonl"
        for part in args.part_list:
            budget = budgets[part] * args.budget_scale
            print(f"[{part}] {TITLES[part]} (limit {budget:.0f} s) …", flush=True)
            log.write(f"\n===== part {part}: {TITLES[part]} =====\n")
            log.flush()
            t0 = time.perf_counter()
            if part == "1":
                new = part1(args, budget, work, log)
                new.append(row("1", "wall time", f"{time.perf_counter() - t0:.1f} s "
                               f"(limit {budget:.0f} s)", "info"))  # fmt: skip
            else:
                before = len(read_records(rows_file))
                tail = run_child(part, args, budget, work, rows_file, log)
                new = [r for r in read_records(rows_file)[before:] if r.get("kind") == "row"]
                if part in OPTIONAL:
                    for r in new:
                        if r["status"] == "FAIL":
                            r["status"] = "warn"
                new += tail
            rows += new
            n_bad = sum(r["status"] == "FAIL" for r in new)
            parts[part] = {
                "title": TITLES[part],
                "limit_s": budget,
                "wall_s": time.perf_counter() - t0,
                "failed_rows": n_bad,
            }
            print(
                f"[{part}] done in {parts[part]['wall_s']:.1f} s"
                + (f", {n_bad} failed row(s)" if n_bad else ""),
                flush=True,
            )
            write_outputs(final=False)
    return write_outputs(final=True)


if __name__ == "__main__":
    sys.exit(main())
