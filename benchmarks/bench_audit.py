"""Benchmark: the Fashion-MNIST audit's training and scoring stages against what users run today.

Privacy Meter and LeakPro train shadow models one after another with a plain PyTorch loop
and score them with per-example Python loops and scikit-learn. Both stages are timed here in
one run, ours against a baseline written the way those tools do it, and printed as ratios
(goal: >= 5x on training, >= 50x on scoring).

Part 1 — training (the configuration of ``experiments/fashion_mnist.toml``: its MLP, SGD
0.9, lr, weight decay, batch size and cosine schedule, on its 5,000-image pool; 16 shadows
with keep masks, pkeep 0.5; ``--epochs`` epochs, 3 by default):

* **ours** — :func:`mis.train.train_ensemble`, the audit's training job: the 16 models as one
  stacked ensemble (closed-form batched MLP gradient), data resident as one normalised tensor;
* **Privacy-Meter-style loop** — Privacy Meter's ``models/utils.py`` + ``trainers/
  default_trainer.py`` recipe: a torchvision-style data set (each image a PIL image, turned
  into a tensor and normalised per sample, as ``FashionMNIST(transform=Compose([ToTensor(),
  Normalize()]))``), ``Subset`` of the model's members, ``DataLoader(shuffle=True)``,
  ``torch.optim.SGD``, the running loss and accuracy read with ``.item()`` every step, and
  the held-out half evaluated after every epoch (``train(..., test_loader)``), one model
  after another. ``--workers`` DataLoader workers (0 here; Privacy Meter uses 4, which on a
  2-core machine only adds processes);
* **lean loop** (for reference, not the goal) — the leanest plain loop a user could write:
  pre-normalised tensors in a ``TensorDataset``, ``DataLoader``, SGD, no evaluation.

Part 2 — scoring (64 shadows + ``--targets`` targets (10) on ``--examples`` examples (5,000),
one query; LiRA online and offline with fixed variance; per-target and pooled bootstrap CIs
of TPR at 0.1 % and 1 % FPR and AUC, ``--resamples`` resamples (1,000)):

* **ours** — :func:`mis.attacks.lira` per target (as the audit's attack stage) and
  :func:`mis.attacks.evaluate` (numba bootstraps: per target, and pooled over targets with
  the cluster bootstrap; it also computes log-AUC);
* **reference-style** — LiRA as tensorflow/privacy ``research/mi_lira_2021/plot.py``
  (``generate_ours``: a Python loop over examples to collect IN/OUT signals, then
  ``scipy.stats.norm``), the bootstrap as a Python loop over resamples calling
  ``sklearn.metrics.roc_curve`` and ``roc_auc_score`` (per target and pooled, resampling
  members and non-members separately as ours).

Signals are simulated with the shape of the audit's (``--run DIR`` scores the stored signals
of a finished ``mis audit`` run instead). Timings: wall clock and CPU time (this process and
its finished children, i.e. DataLoader workers); the machine is shared, so the CPU-time ratio
is the steadier one and the goals are checked on it. Run::

    .venv/bin/python benchmarks/bench_audit.py [--quick] [--epochs 3] [--workers 0]
"""

from __future__ import annotations

import argparse
import os
import resource
import time
import warnings
from pathlib import Path

import numpy as np
import scipy.stats
import torch
from PIL import Image
from sklearn.metrics import roc_auc_score, roc_curve
from torch.utils.data import DataLoader, Dataset, Subset, TensorDataset

from mis.attacks import evaluate, lira
from mis.store import RunStore
from mis.studies.audit import load_config
from mis.studies.audit.data import load_data
from mis.studies.audit.models import model_factory
from mis.train import keep_masks, train_ensemble

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "experiments" / "fashion_mnist.toml"


def _cpu() -> float:
    """CPU seconds of this process and its finished children (DataLoader workers)."""
    ch = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + ch.ru_utime + ch.ru_stime


class _Timer:
    def __enter__(self):
        self.wall, self.cpu = time.perf_counter(), _cpu()
        return self

    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self.wall
        self.cpu = _cpu() - self.cpu


def _load():
    cfg = load_config(CONFIG)
    try:
        data = load_data(cfg)
        note = f"Fashion-MNIST pool of {len(data)} images"
    except FileNotFoundError:  # the Debian package is missing: images of the same shape
        cfg = cfg.replace(data={"name": "synthetic", "synthetic_n": 5000, "synthetic_n_test": 10,
                                "synthetic_shape": [1, 28, 28], "n_examples": 0})  # fmt: skip
        data = load_data(cfg)
        data.x = np.clip(data.x * 64 + 128, 0, 255).astype(np.uint8)
        note = "synthetic 28x28 images (dataset-fashion-mnist is not installed)"
    return cfg, data, note


# ------------------------------------------------------------------------------------------
# part 1: training
# ------------------------------------------------------------------------------------------
class TorchvisionStyle(Dataset):
    """Per-sample decoding as torchvision's FashionMNIST with ToTensor() + Normalize()."""

    def __init__(self, images, labels, mean, std):
        self.images, self.labels, self.mean, self.std = images, labels, mean, std

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        img = Image.fromarray(self.images[i, 0], mode="L")  # as torchvision's __getitem__
        t = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).unsqueeze(0)  # ToTensor
        return (t - self.mean) / self.std, int(self.labels[i])  # Normalize


def privacy_meter_loop(factory, full, members, held_out, tc, workers):
    """One model, trained as Privacy Meter's default_trainer.train (see module docstring)."""
    model = factory()
    opt = torch.optim.SGD(model.parameters(), lr=tc.lr, momentum=tc.momentum,
                          weight_decay=tc.weight_decay)  # fmt: skip
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=tc.epochs)
    kw = dict(batch_size=tc.batch_size, num_workers=workers)
    train_loader = DataLoader(Subset(full, members), shuffle=True, **kw)
    test_loader = DataLoader(Subset(full, held_out), **kw)
    loss_fn = torch.nn.CrossEntropyLoss()
    for _ in range(tc.epochs):
        model.train()
        total, correct = 0.0, 0
        for data, target in train_loader:
            opt.zero_grad(set_to_none=True)
            out = model(data)
            loss = loss_fn(out, target)
            loss.backward()
            opt.step()
            total += loss.item()
            correct += out.argmax(1).eq(target).sum().item()
        sched.step()
        model.eval()
        with torch.no_grad():  # the per-epoch test evaluation of default_trainer.train
            for data, target in test_loader:
                out = model(data)
                total += loss_fn(out, target).item()
                correct += out.argmax(1).eq(target).sum().item()
    return model


def lean_loop(factory, x, y, members, tc):
    model = factory()
    opt = torch.optim.SGD(model.parameters(), lr=tc.lr, momentum=tc.momentum,
                          weight_decay=tc.weight_decay)  # fmt: skip
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=tc.epochs)
    loader = DataLoader(TensorDataset(x[members], y[members]), batch_size=tc.batch_size,
                        shuffle=True)  # fmt: skip
    for _ in range(tc.epochs):
        for data, target in loader:
            loss = torch.nn.functional.cross_entropy(model(data), target)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        sched.step()
    return model


def part1(args) -> None:
    cfg, data, note = _load()
    tc = cfg.train.train_config()
    tc = type(tc)(**{**tc.as_dict(), "epochs": args.epochs, "betas": tuple(tc.betas)})
    factory = model_factory(cfg, data)
    k = args.shadows
    keep = keep_masks(k, len(data), 0.5, rng=0)
    x, y = data.tensor(data.x), torch.as_tensor(data.y)
    mean, std = (data.mean[0], data.std[0]) if data.mean else (0.0, 1.0)
    print(f"[1] training: {cfg.model.name} {dict(cfg.model.options)}, {k} shadows (pkeep 0.5) on "
          f"a {note}; {tc.epochs} epochs, SGD lr {tc.lr} momentum {tc.momentum}, batch "
          f"{tc.batch_size}; torch threads {torch.get_num_threads()}")  # fmt: skip
    # warm-up of every contender (first-call overheads), outside the timings
    warm = type(tc)(**{**tc.as_dict(), "epochs": 1, "betas": tuple(tc.betas)})
    train_ensemble(factory, x[:600], y[:600], warm, [0, 1], subsets=keep[:2, :600], device="cpu")
    full = TorchvisionStyle(data.x, data.y, mean, std)
    privacy_meter_loop(factory, full, np.arange(300), np.arange(300, 400), warm, 0)
    lean_loop(factory, x, y, np.arange(300), warm)

    with _Timer() as ours:
        train_ensemble(factory, x, y, tc, list(range(k)), subsets=keep, device="cpu")
    nb = min(args.baseline_models, k)
    with _Timer() as pm:
        for i in range(nb):
            torch.manual_seed(i)
            privacy_meter_loop(factory, full, np.flatnonzero(keep[i]), np.flatnonzero(~keep[i]),
                               tc, args.workers)  # fmt: skip
    with _Timer() as lean:
        for i in range(nb):
            torch.manual_seed(i)
            lean_loop(factory, x, y, np.flatnonzero(keep[i]), tc)
    scale = k / nb  # the baselines are linear in the number of models
    print(f"    ours (train_ensemble, {k} models at once): {ours.wall:7.2f} s wall, "
          f"{ours.cpu:7.2f} s CPU")  # fmt: skip
    for name, t in (("Privacy-Meter-style loop", pm), ("lean tensor loop", lean)):
        w, c = t.wall * scale, t.cpu * scale
        print(f"    {name:25s} ({nb} of {k} models timed, x{scale:g}): {w:7.2f} s wall, "
              f"{c:7.2f} s CPU -> ratio {w / ours.wall:5.1f}x wall, "
              f"{c / ours.cpu:5.1f}x CPU")  # fmt: skip
    r = pm.cpu * scale / ours.cpu
    print(f"    training goal >= 5x against the Privacy-Meter-style loop (CPU time): "
          f"{'MET' if r >= 5 else 'MISSED'} ({r:.1f}x)")  # fmt: skip


# ------------------------------------------------------------------------------------------
# part 2: scoring
# ------------------------------------------------------------------------------------------
def reference_lira(keep_sh, sig_sh, sig_t, offline: bool) -> np.ndarray:
    """plot.py's generate_ours / generate_ours_offline for one target (Python loop)."""
    dat_in, dat_out = [], []
    for j in range(sig_sh.shape[1]):
        dat_in.append(sig_sh[keep_sh[:, j], j, :])
        dat_out.append(sig_sh[~keep_sh[:, j], j, :])
    in_size = min(len(v) for v in dat_in)
    out_size = min(len(v) for v in dat_out)
    dat_in = np.array([v[:in_size] for v in dat_in])
    dat_out = np.array([v[:out_size] for v in dat_out])
    mean_in, mean_out = np.median(dat_in, 1), np.median(dat_out, 1)
    if offline:  # fixed variance: one std of all OUT values
        std_out = np.std(dat_out)
        return scipy.stats.norm.logpdf(sig_t, mean_out, std_out + 1e-30).mean(1)
    std_in, std_out = np.std(dat_in, 1), np.std(dat_out, 1)
    pr_in = -scipy.stats.norm.logpdf(sig_t, mean_in, std_in + 1e-30)
    pr_out = -scipy.stats.norm.logpdf(sig_t, mean_out, std_out + 1e-30)
    return -(pr_in - pr_out).mean(1)


def _tpr_at(fpr, tpr, level):
    ok = fpr <= level
    return tpr[ok].max() if ok.any() else np.nan


def reference_bootstrap(scores, labels, groups, n_resamples, rng, fprs=(1e-3, 1e-2)):
    """Percentile CIs of TPR@FPR and AUC with sklearn in a Python loop over resamples."""
    pos, neg = np.flatnonzero(labels), np.flatnonzero(~labels)
    out = []
    for _ in range(n_resamples):
        if groups is None:
            idx = np.concatenate([rng.choice(pos, pos.size), rng.choice(neg, neg.size)])
        else:  # cluster bootstrap: an example drawn with its rows for every target
            n, t = groups
            pick = rng.integers(0, n, n)
            idx = (pick[:, None] + n * np.arange(t)[None, :]).ravel()
        f, t, _ = roc_curve(labels[idx], scores[idx])
        out.append([_tpr_at(f, t, a) for a in fprs] + [roc_auc_score(labels[idx], scores[idx])])
    return np.nanpercentile(np.array(out), [2.5, 97.5], axis=0)


def _signals(args):
    rng = np.random.default_rng(0)
    m, n = 64 + args.targets, args.examples
    if args.run:
        store = RunStore(Path(args.run) / "store", create=False)
        keep = np.asarray(store.load("keep"))
        chunks = sorted({p.split("/")[1] for p in store.names() if p.startswith("train/")})
        sig = np.concatenate([np.asarray(store.load(f"train/{c}/signal")) for c in chunks])
        return sig, keep, f"stored signals of {args.run} {sig.shape}"
    keep = keep_masks(m, n, 0.5, rng=1)
    mu = rng.normal(0.0, 2.0, (1, n, 1))
    sig = mu + rng.normal(0.0, 1.0, (m, n, 1)) + keep[:, :, None] * rng.gamma(2.0, 0.5, (1, n, 1))
    return sig, keep, f"simulated signals {sig.shape}"


def part2(args) -> None:
    sig, keep, what = _signals(args)
    s = sig.shape[0] - args.targets
    targets = list(range(s, sig.shape[0]))
    print(f"\n[2] scoring: {what}; {s} shadows, {len(targets)} targets; LiRA online + "
          f"offline (fixed variance); bootstrap {args.resamples} resamples per target and "
          "pooled")  # fmt: skip
    # numba compilation outside the timings
    lira(sig[:, :300], keep[:, :300], -1)
    lira(sig[:, :300], keep[:, :300], -1, mode="offline", fixed_variance=True)
    with warnings.catch_warnings():  # 150 non-members: TPR@0.1% undefined, fine for a warm-up
        warnings.simplefilter("ignore")
        evaluate(np.random.default_rng(0).normal(size=(2, 300)), keep[:2, :300], n_resamples=20)

    def ours():
        res = []
        for mode, fv in (("online", False), ("offline", True)):
            sc = np.empty((len(targets), sig.shape[1]))
            for i, t in enumerate(targets):
                st = np.concatenate([sig[:s], sig[t : t + 1]])
                kp = np.concatenate([keep[:s], keep[t : t + 1]])
                sc[i] = lira(st, kp, -1, mode=mode, fixed_variance=fv)
            res.append(evaluate(sc, keep[targets], n_resamples=args.resamples, rng=0))
        return res

    def reference():
        g = np.random.default_rng(0)
        res = []
        for offline in (False, True):
            sc = np.stack([reference_lira(keep[:s], sig[:s], sig[t], offline) for t in targets])
            per = [reference_bootstrap(sc[i], keep[t], None, args.resamples, g)
                   for i, t in enumerate(targets)]  # fmt: skip
            groups = (sig.shape[1], len(targets))  # rows of example j: j + n·t
            pooled = reference_bootstrap(sc.ravel(), keep[targets].ravel(), groups,
                                         args.resamples, g)  # fmt: skip
            res.append((per, pooled))
        return res

    with _Timer() as t_ours:
        ours()
    with _Timer() as t_ref:
        reference()
    print(f"    ours (mis.attacks.lira + evaluate)        : {t_ours.wall:8.2f} s wall, "
          f"{t_ours.cpu:8.2f} s CPU")  # fmt: skip
    print(f"    reference-style (Python loops + sklearn)  : {t_ref.wall:8.2f} s wall, "
          f"{t_ref.cpu:8.2f} s CPU -> ratio {t_ref.wall / t_ours.wall:6.1f}x wall, "
          f"{t_ref.cpu / t_ours.cpu:6.1f}x CPU")  # fmt: skip
    r = t_ref.cpu / t_ours.cpu
    print(f"    scoring goal >= 50x (CPU time): {'MET' if r >= 50 else 'MISSED'} ({r:.0f}x)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="1 epoch, 2 baseline models, 200 "
                    "resamples, 4 targets")  # fmt: skip
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--shadows", type=int, default=16)
    ap.add_argument(
        "--baseline-models",
        type=int,
        default=16,
        help="baseline models actually timed (the rest extrapolated linearly)",
    )
    ap.add_argument("--workers", type=int, default=0, help="DataLoader workers of the baseline")
    ap.add_argument("--targets", type=int, default=10)
    ap.add_argument("--examples", type=int, default=5000)
    ap.add_argument("--resamples", type=int, default=1000)
    ap.add_argument("--run", default=None, help="score the stored signals of this audit run")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    ap.add_argument("--skip", choices=["training", "scoring"], default=None)
    args = ap.parse_args()
    if args.quick:
        args.epochs, args.baseline_models, args.resamples, args.targets = 1, 2, 200, 4
    torch.set_num_threads(args.threads)
    print(f"load average {os.getloadavg()[0]:.2f}")
    if args.skip != "training":
        part1(args)
    if args.skip != "scoring":
        part2(args)


if __name__ == "__main__":
    main()
