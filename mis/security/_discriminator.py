"""The baseline MIS estimate of Aubinais et al. (2025), §4.2: a trained discriminator.

The MIS of a learning algorithm is 2(1 − sup_φ Acc(φ)) (Definition 2.6), the
sup being over all membership inference attacks φ(θ̂, z). The Neyman–Pearson
test between the joint law of (θ̂_n, z_1) (z a member) and the product law
P_θ̂ ⊗ P (z a fresh sample) attains it (Eq. 5–6), so a discriminator
g_ψ(θ̂, x, y, ℓ(θ̂; x, y)) trained with binary cross-entropy to tell members from
fresh non-members, across many independently trained models, estimates the
MIS by MIS = clip(2(1 − test accuracy), 0, 1).

Data layout. Run r is one model θ̂_r trained on its own i.i.d. training set;
its ``n`` members are (a subset of) that set and its ``n`` non-members fresh
samples that no model was trained on. Inputs are arrays with a leading run
axis (see :func:`discriminator_mis`). Members and non-members are balanced in
every run (the prior ½ of Definition 2.5).

Cross-fitting (default, ``folds=5``). The runs are split at random into K folds
**by run**; for each fold a discriminator is trained on the runs of the other
folds (a share ``val_fraction`` of them held out for early stopping) and
decides on the runs of its fold. Every run is thus a test run, scored by a
discriminator that never saw it, and the MIS comes from all n_runs × 2n
out-of-fold decisions. ``folds=None`` is the older single split: a share
``test_fraction`` of the runs (or ``test_runs``) is tested, the rest trains.

Architecture and training (defaults; the paper specifies only "a feed-forward
neural network" on (x, flattened θ̂, loss)):

* input: the concatenation [θ̂_flat, x, y, ℓ], each feature standardised with the
  mean and standard deviation over the training runs (θ̂ over runs, the rest
  over samples); integer labels may be one-hot encoded (``n_classes``);
* MLP with ReLU hidden layers ``hidden=(256, 256)``, ``dropout=0``, one logit out;
* Adam, ``lr=1e-3``, ``weight_decay=0``, ``batch_size=256``, at most
  ``epochs=50`` epochs, BCE with logits;
* early stopping: ``val_fraction=0.1`` of the non-test runs (at least one run,
  when at least two runs are left for training) are held out; the weights of
  the epoch with the lowest validation BCE are kept (``patience=10`` epochs
  without improvement stop the training);
* decision: member iff the logit is > 0.

Interval. The decisions of one run share θ̂ (and, cross-fitted, the fold's
discriminator), so they are not independent trials: the interval is a cluster
bootstrap over test runs (runs resampled with replacement, the accuracy of a
resample is the mean of its runs' accuracies — every run has 2n decisions),
percentile, mapped through clip(2(1 − ·), 0, 1). Between-run variation and,
through the runs, between-fold variation are in it; the randomness of
training a discriminator (its seed) is not — repeat with another ``rng`` to see
it. The Clopper–Pearson interval over decisions, which treats them as
independent and is therefore optimistic, is kept as ``mis_clopper_pearson`` for
comparison.

Limitation (§4.2 of the paper): the discriminator is not invariant to
permutations of hidden units, so it is meant for models with one layer or a
canonical parameter order; the θ̂ input is repeated for each sample of a batch
(memory batch_size × n_params).

This is the only module of :mod:`mis.security` that imports torch.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

import numpy as np
import torch
from scipy import stats
from torch import nn

from mis._progress import progress_bar
from mis._validation import as_generator, integer, positive_int, probability, real
from mis.exceptions import MisValueError
from mis.metrics import Interval

__all__ = ["DiscriminatorMIS", "discriminator_mis"]


@dataclass(frozen=True)
class DiscriminatorMIS:
    """Discriminator estimate of the MIS (result of :func:`discriminator_mis`).

    Attributes
    ----------
    mis : Interval
        clip(2(1 − accuracy), 0, 1) over all test decisions, with the cluster-bootstrap
        (over test runs) percentile interval mapped through the same function.
    accuracy : Interval
        Test accuracy with the same bootstrap interval.
    mis_clopper_pearson : Interval
        The MIS with the Clopper–Pearson interval over decisions (treats the decisions as
        independent: optimistic; for comparison).
    n_test, n_correct : int
        Test decisions (members + non-members of the test runs) and correct ones.
    confidence_level : float
    n_resamples : int
        Bootstrap resamples of the test runs.
    folds : int or None
        Number of cross-fitting folds (None: one train / test split).
    per_run_accuracy : ndarray, shape (n_test_runs,)
        Accuracy on each test run (order of ``test_runs``).
    per_run_mis : ndarray, shape (n_test_runs,)
        2(1 − per_run_accuracy), *not* clipped, so that its mean over runs is
        the unclipped MIS estimate (input for bootstrap-over-runs statistics).
    test_runs : ndarray of int
        Runs with decisions, sorted (all runs when cross-fitted).
    fold_of_run : ndarray of int, shape (n_runs,)
        Fold that tested each run (−1: never tested, single split only).
    train_runs, val_runs : tuple of ndarray of int
        Per fold, the runs that trained the discriminator and those that stopped it early.
    best_epochs : tuple of int
        Per fold, the epoch (1-based) whose weights were kept.
    histories : tuple of dict of list of float
        Per fold, ``train_loss`` (mean BCE per epoch) and, with validation runs,
        ``val_loss`` and ``val_accuracy``.
    config : dict
        The hyperparameters used.
    device : str
    """

    mis: Interval
    accuracy: Interval
    mis_clopper_pearson: Interval
    n_test: int
    n_correct: int
    confidence_level: float
    n_resamples: int
    folds: int | None
    per_run_accuracy: np.ndarray = field(repr=False, compare=False)
    per_run_mis: np.ndarray = field(repr=False, compare=False)
    test_runs: np.ndarray = field(repr=False, compare=False)
    fold_of_run: np.ndarray = field(repr=False, compare=False)
    train_runs: tuple = field(default=(), repr=False, compare=False)
    val_runs: tuple = field(default=(), repr=False, compare=False)
    best_epochs: tuple = ()
    histories: tuple = field(default=(), repr=False, compare=False)
    config: dict = field(default_factory=dict, repr=False, compare=False)
    device: str = "cpu"


# --------------------------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------------------------
def _finite(arr, name: str) -> np.ndarray:
    a = np.asarray(arr)
    if not (np.issubdtype(a.dtype, np.number) or a.dtype == bool):
        raise MisValueError(f"{name} must be numeric; got dtype {a.dtype}")
    a = a.astype(np.float32) if a.dtype != np.float32 else a
    bad = ~np.isfinite(a)
    if bad.any():
        where = tuple(int(v[0]) for v in np.nonzero(bad))
        raise MisValueError(
            f"{name} must be finite; found {a[where]} at index {where} "
            f"({int(bad.sum())} non-finite values)"
        )
    return a


def _features(x, y, loss, side: str, n_runs: int, n_classes):
    """Validate one side (members or non-members): x (R, n, d), y (R, n, c), loss (R, n)."""
    x = _finite(x, f"{side}_x")
    if x.ndim == 2:
        x = x[:, :, None]
    if x.ndim != 3 or x.shape[0] != n_runs:
        raise MisValueError(
            f"{side}_x must have shape (n_runs={n_runs}, n_{side}s, d); got {x.shape}"
        )
    n = x.shape[1]
    if n == 0:
        raise MisValueError(f"{side}_x must hold at least one sample per run; got shape {x.shape}")
    loss = _finite(loss, f"{side}_loss")
    if loss.shape != (n_runs, n):
        raise MisValueError(
            f"{side}_loss must have shape (n_runs, n_{side}s) = {(n_runs, n)}; got {loss.shape}"
        )
    y_arr = np.asarray(y)
    if n_classes is not None:
        if y_arr.shape != (n_runs, n):
            raise MisValueError(
                f"{side}_y must have shape {(n_runs, n)} when n_classes is given; got {y_arr.shape}"
            )
        if (
            not np.issubdtype(y_arr.dtype, np.integer)
            or y_arr.min() < 0
            or y_arr.max() >= n_classes
        ):
            raise MisValueError(
                f"{side}_y must hold integer labels in [0, {n_classes}) when n_classes is given"
            )
        y = np.eye(n_classes, dtype=np.float32)[y_arr]
    else:
        y = _finite(y_arr, f"{side}_y")
        if y.ndim == 2:
            y = y[:, :, None]
        if y.ndim != 3 or y.shape[:2] != (n_runs, n):
            raise MisValueError(
                f"{side}_y must have shape {(n_runs, n)} or {(n_runs, n)} + (d_y,); got {y.shape}"
            )
    return x, y, loss


def _val_split(rest: np.ndarray, val_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Training and early-stopping runs among ``rest`` (already in random order)."""
    n_val = 0
    if val_fraction > 0 and rest.size >= 3:
        n_val = min(max(1, round(val_fraction * rest.size)), rest.size - 1)
    return np.sort(rest[n_val:]), np.sort(rest[:n_val])


def _splits(n_runs, folds, test_fraction, val_fraction, test_runs, gen):
    """The (train, val, test) runs of every fold; one fold for a single split."""
    probability(val_fraction, "val_fraction", open_lo=False)
    perm = gen.permutation(n_runs)
    if folds is not None:
        if test_runs is not None:
            raise MisValueError("test_runs needs folds=None (a single split); got folds="
                                f"{folds}")  # fmt: skip
        folds = integer(folds, "folds", 2, n_runs)
        out = []
        for f in range(folds):
            test = np.sort(perm[f::folds])
            rest = perm[np.arange(n_runs) % folds != f]
            out.append((*_val_split(rest, val_fraction), test))
        return out
    if test_runs is not None:
        test = np.unique(np.asarray(test_runs, dtype=np.int64))
        if test.size == 0 or test.min() < 0 or test.max() >= n_runs:
            raise MisValueError(
                f"test_runs must be non-empty run indices in [0, {n_runs}); got {test_runs!r}"
            )
        rest = perm[~np.isin(perm, test)]
    else:
        probability(test_fraction, "test_fraction")
        n_test = min(max(1, round(test_fraction * n_runs)), n_runs - 1)
        test, rest = np.sort(perm[:n_test]), perm[n_test:]
    if rest.size == 0:
        raise MisValueError(f"no runs left to train the discriminator ({n_runs} runs, all test)")
    return [(*_val_split(rest, val_fraction), test)]


# --------------------------------------------------------------------------------------------
# model and data
# --------------------------------------------------------------------------------------------
def _mlp(n_in: int, hidden, dropout: float) -> nn.Module:
    layers: list[nn.Module] = []
    width = n_in
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU()]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        width = h
    layers.append(nn.Linear(width, 1))
    return nn.Sequential(*layers)


class _Data:
    """All runs on the device; a batch gathers (θ̂ of its run, x, y, ℓ) by (run, sample) index."""

    def __init__(self, params, x, y, loss, labels, train_runs, device):
        def standardise(a, axes):
            sub = a[train_runs]
            mu = sub.mean(axis=axes, keepdims=True, dtype=np.float64)
            sd = sub.std(axis=axes, keepdims=True, dtype=np.float64)
            sd[sd == 0] = 1.0
            return torch.from_numpy(((a - mu) / sd).astype(np.float32)).to(device)

        self.params = standardise(params, (0,))
        self.sample = torch.cat(
            [standardise(x, (0, 1)), standardise(y, (0, 1)), standardise(loss[..., None], (0, 1))],
            dim=2,
        )  # (R, 2n, d + c + 1)
        self.labels = torch.from_numpy(labels).to(device)  # (R, 2n)
        self.n_per_run = labels.shape[1]
        self.device = device

    def index(self, runs) -> torch.Tensor:
        """Flat (run * n_per_run + j) indices of every sample of ``runs``."""
        r = torch.as_tensor(runs, dtype=torch.int64)
        j = torch.arange(self.n_per_run, dtype=torch.int64)
        return (r[:, None] * self.n_per_run + j[None, :]).reshape(-1)

    def batch(self, flat: torch.Tensor):
        flat = flat.to(self.device)
        r = torch.div(flat, self.n_per_run, rounding_mode="floor")
        j = flat - r * self.n_per_run
        feats = torch.cat([self.params[r], self.sample[r, j]], dim=1)
        return feats, self.labels[r, j]


@torch.no_grad()
def _predict(model, data: _Data, flat: torch.Tensor, batch_size: int):
    """Logits and labels of the samples ``flat``, in order."""
    model.eval()
    logits, labels = [], []
    for s in range(0, flat.shape[0], batch_size):
        f, y = data.batch(flat[s : s + batch_size])
        logits.append(model(f).squeeze(1))
        labels.append(y)
    return torch.cat(logits), torch.cat(labels)


def _clopper_pearson(k: int, n: int, level: float) -> tuple[float, float]:
    """Exact (Clopper–Pearson) interval of a binomial proportion k/n."""
    ci = stats.binomtest(k, n).proportion_ci(confidence_level=level, method="exact")
    return float(ci.low), float(ci.high)


def _clipped_discriminator_mis(acc: float) -> float:
    """The MIS of a discriminator with accuracy ``acc``: clip(2(1 − acc), 0, 1)."""
    return float(min(1.0, max(0.0, 2.0 * (1.0 - acc))))


# --------------------------------------------------------------------------------------------
# public
# --------------------------------------------------------------------------------------------
def discriminator_mis(
    params,
    member_x,
    member_y,
    member_loss,
    nonmember_x,
    nonmember_y,
    nonmember_loss,
    *,
    n_classes: int | None = None,
    folds: int | None = 5,
    test_fraction: float = 0.3,
    val_fraction: float = 0.1,
    test_runs=None,
    hidden=(256, 256),
    dropout: float = 0.0,
    epochs: int = 50,
    batch_size: int = 256,
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    patience: int = 10,
    confidence_level: float = 0.95,
    n_resamples: int = 2000,
    device=None,
    num_threads: int | None = None,
    rng: int = 0,
    progress: bool | None = None,
) -> DiscriminatorMIS:
    """Estimate the MIS of a (quantized) training algorithm with a discriminator (§4.2).

    Call it once per quantizer, with ``params`` the quantized weights of each run.

    Parameters
    ----------
    params : array_like, shape (n_runs, n_params)
        Flattened (quantized) parameters θ̂_r of the model of each run, in a
        fixed order.
    member_x : array_like, shape (n_runs, n_members, d) or (n_runs, n_members)
        Inputs of members of each run's training set.
    member_y : array_like, shape (n_runs, n_members) or (n_runs, n_members, d_y)
        Their targets: numbers (a binary label, a regression target) used as
        features, or integer class labels one-hot encoded when ``n_classes`` is given.
    member_loss : array_like, shape (n_runs, n_members)
        Loss of model r on each of its members.
    nonmember_x, nonmember_y, nonmember_loss : array_like
        The same for fresh non-members, evaluated with model r, with as many
        samples per run as members (balanced classes).
    n_classes : int, optional
        One-hot encode integer labels ``member_y``/``nonmember_y`` (shape (n_runs, n)).
    folds : int or None, default 5
        Cross-fitting by run: K folds, each run tested by the discriminator trained on
        the other folds (module docstring). None: a single train / test split.
    test_fraction : float, default 0.3
        With ``folds=None``: share of runs held out for testing (at least one; ignored
        if ``test_runs``).
    val_fraction : float, default 0.1
        Share of each discriminator's training runs held out for early stopping (0: none).
    test_runs : sequence of int, optional
        With ``folds=None``: explicit test runs. Folds and splits are otherwise drawn
        from ``rng`` and depend only on (n_runs, rng): every quantizer of a study given
        the same seed is tested on the same runs, in the same folds.
    hidden, dropout, epochs, batch_size, lr, weight_decay, patience
        Discriminator and training (module docstring).
    confidence_level : float, default 0.95
        Of the intervals.
    n_resamples : int, default 2000
        Cluster-bootstrap resamples of the test runs for the intervals.
    device : str or torch.device, optional
        Default: ``"cuda"`` when available, else ``"cpu"``.
    num_threads : int, optional
        CPU threads for torch during the call (``torch.set_num_threads``, which
        is process-wide; restored afterwards). Default: torch's setting. For a
        small discriminator 1 is fastest: on a busy machine, intra-op threads
        of tiny matrix products mostly wait for each other (measured 14x
        slower with 2 threads than with 1 on a loaded 2-core machine).
    rng : int, default 0
        Seed of the folds (or split), the initialisations and the batch orders. On the CPU
        the same seed gives identical results; the global torch RNG state is
        left untouched.
    progress : bool or None
        Progress bar over epochs (None: only when stderr is a terminal).

    Returns
    -------
    DiscriminatorMIS

    Raises
    ------
    MisValueError
        Mismatched shapes, non-finite values, unbalanced members / non-members,
        fewer than 2 runs, or bad hyperparameters.
    """
    integer(rng, "rng")  # torch seeds from an int, not a Generator
    p = _finite(params, "params")
    if p.ndim != 2:
        raise MisValueError(f"params must have shape (n_runs, n_params); got {p.shape}")
    n_runs = p.shape[0]
    if n_runs < 2:
        raise MisValueError(f"params must hold at least 2 runs (train and test); got {n_runs}")
    mx, my, ml = _features(member_x, member_y, member_loss, "member", n_runs, n_classes)
    nx, ny, nl = _features(nonmember_x, nonmember_y, nonmember_loss, "nonmember", n_runs, n_classes)
    if nx.shape[1] != mx.shape[1]:
        raise MisValueError(
            "members and non-members must be balanced (the MIS assumes a prior of 1/2): got "
            f"{mx.shape[1]} members and {nx.shape[1]} non-members per run; subsample the larger"
        )
    if nx.shape[2] != mx.shape[2] or ny.shape[2] != my.shape[2]:
        raise MisValueError(
            f"member and non-member features must have the same width: x {mx.shape[2]} vs "
            f"{nx.shape[2]}, y {my.shape[2]} vs {ny.shape[2]}"
        )
    hidden = tuple(positive_int(h, "hidden sizes") for h in hidden)
    epochs = positive_int(epochs, "epochs")
    batch_size = positive_int(batch_size, "batch_size")
    patience = positive_int(patience, "patience")
    real(lr, "lr", 0.0, open_lo=True)
    real(weight_decay, "weight_decay", 0.0)
    real(dropout, "dropout", 0.0, 1.0, open_hi=True)
    probability(confidence_level, "confidence_level")
    dev = torch.device(
        device if device is not None else "cuda" if torch.cuda.is_available() else "cpu"
    )
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise MisValueError("device='cuda' was requested but CUDA is not available; use 'cpu'")

    n_resamples = positive_int(n_resamples, "n_resamples")
    gen = as_generator(int(rng))
    splits = _splits(n_runs, folds, test_fraction, val_fraction, test_runs, gen)
    x = np.concatenate([mx, nx], axis=1)
    y = np.concatenate([my, ny], axis=1)
    loss = np.concatenate([ml, nl], axis=1)
    n = mx.shape[1]
    labels = np.concatenate([np.ones((n_runs, n)), np.zeros((n_runs, n))], axis=1).astype(
        np.float32
    )
    config = dict(
        hidden=hidden, dropout=dropout, epochs=epochs, batch_size=batch_size, lr=lr,
        weight_decay=weight_decay, patience=patience, folds=folds, test_fraction=test_fraction,
        val_fraction=val_fraction, n_classes=n_classes, rng=int(rng), num_threads=num_threads,
        n_features=int(p.shape[1] + x.shape[2] + y.shape[2] + 1),
    )  # fmt: skip

    prev_threads = torch.get_num_threads()
    correct = np.zeros((n_runs, 2 * n), dtype=bool)
    fold_of_run = np.full(n_runs, -1, dtype=np.int64)
    best_epochs, histories = [], []
    try:
        if num_threads is not None:
            torch.set_num_threads(num_threads)
        for f, (train, val, test) in enumerate(splits):
            data = _Data(p, x, y, loss, labels, train, dev)
            seed = int(np.random.SeedSequence([int(rng), f]).generate_state(1)[0] >> 33)
            ok, best, history = _train_and_test(data, config, dev, seed, train, val, test,
                                                progress)  # fmt: skip
            correct[test] = ok
            fold_of_run[test] = f
            best_epochs.append(best)
            histories.append(history)
    finally:
        torch.set_num_threads(prev_threads)

    test = np.flatnonzero(fold_of_run >= 0)
    per_run = correct[test].mean(axis=1)
    n_correct, n_test = int(correct[test].sum()), int(test.size * 2 * n)
    acc = n_correct / n_test
    # cluster bootstrap over test runs (every run has 2n decisions: acc* = mean of run
    # accuracies), from its own stream of the seed
    boot = np.random.default_rng([int(rng), 1])
    idx = boot.integers(0, test.size, size=(n_resamples, test.size))
    reps = np.sort(per_run[idx].mean(axis=1))
    alpha = (1.0 - confidence_level) / 2.0
    lo, hi = (float(v) for v in np.quantile(reps, [alpha, 1.0 - alpha]))
    cp_lo, cp_hi = _clopper_pearson(n_correct, n_test, confidence_level)
    clip = _clipped_discriminator_mis
    return DiscriminatorMIS(
        mis=Interval(clip(acc), clip(hi), clip(lo)),
        accuracy=Interval(acc, lo, hi),
        mis_clopper_pearson=Interval(clip(acc), clip(cp_hi), clip(cp_lo)),
        n_test=n_test,
        n_correct=n_correct,
        confidence_level=float(confidence_level),
        n_resamples=n_resamples,
        folds=None if folds is None else int(folds),
        per_run_accuracy=per_run,
        per_run_mis=2.0 * (1.0 - per_run),
        test_runs=test,
        fold_of_run=fold_of_run,
        train_runs=tuple(t for t, _, _ in splits),
        val_runs=tuple(v for _, v, _ in splits),
        best_epochs=tuple(best_epochs),
        histories=tuple(histories),
        config=config,
        device=str(dev),
    )


def _train_and_test(data, config, dev, seed, train, val, test, progress):
    """Train one discriminator on ``train`` (early stopping on ``val``) and decide on ``test``.

    Returns the correctness of every decision (len(test), 2n) bool, the kept epoch and the
    history.
    """
    hidden, dropout, epochs = config["hidden"], config["dropout"], config["epochs"]
    batch_size, patience = config["batch_size"], config["patience"]
    lr, weight_decay = config["lr"], config["weight_decay"]
    fork_devices = [dev] if dev.type == "cuda" else []
    with torch.random.fork_rng(devices=fork_devices):
        torch.manual_seed(seed)
        model = _mlp(config["n_features"], hidden, dropout).to(dev)
        opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
        bce = nn.BCEWithLogitsLoss()
        shuffle = torch.Generator().manual_seed(seed + 1)
        train_idx = data.index(train)
        val_idx = data.index(val) if val.size else None
        history: dict[str, list[float]] = {"train_loss": []}
        if val_idx is not None:
            history["val_loss"], history["val_accuracy"] = [], []
        best_loss, best_epoch, best_state, waited = math.inf, epochs, None, 0
        bar = progress_bar(range(1, epochs + 1), desc="discriminator epochs", enabled=progress)
        for epoch in bar:
            model.train()
            order = train_idx[torch.randperm(train_idx.shape[0], generator=shuffle)]
            total, count = 0.0, 0
            for s in range(0, order.shape[0], batch_size):
                f, target = data.batch(order[s : s + batch_size])
                opt.zero_grad(set_to_none=True)
                out = bce(model(f).squeeze(1), target)
                out.backward()
                opt.step()
                total += float(out.detach()) * target.shape[0]
                count += target.shape[0]
            history["train_loss"].append(total / count)
            if val_idx is None:
                continue
            logits, target = _predict(model, data, val_idx, 4 * batch_size)
            vloss = float(bce(logits, target))
            history["val_loss"].append(vloss)
            history["val_accuracy"].append(float(((logits > 0).float() == target).float().mean()))
            if vloss < best_loss:
                best_loss, best_epoch, waited = vloss, epoch, 0
                best_state = copy.deepcopy(model.state_dict())
            else:
                waited += 1
                if waited >= patience:
                    break
        bar.close()
        if best_state is not None:
            model.load_state_dict(best_state)
        logits, target = _predict(model, data, data.index(test), 4 * batch_size)
    correct = ((logits > 0).float() == target).reshape(test.size, -1).cpu().numpy()
    best = int(best_epoch if val_idx is not None else len(history["train_loss"]))
    return correct, best, history
