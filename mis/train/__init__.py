"""Training engine (PyTorch): data sets, models, keep masks, ensemble and plain trainers,
trajectory recording, logit extraction and resumable jobs.

Everything here produces arrays for the run store (:mod:`mis.store`); the estimators
never import this package. Submodules are imported lazily, so ``import mis.train`` is
cheap and torch is only loaded when a torch-backed name is first used::

    from mis.train import keep_masks, train_ensemble, TrainConfig

Submodules
----------
data        synthetic Gaussian mixture, digits, CIFAR-10/100, TinyImageNet, npz; augmentations
models      Aubinais' quadratic single layer, MLP, digits CNN, CIFAR ResNet-18/50, DenseNet-121
masks       ``keep_masks`` (LiRA recipe: every example IN for exactly pkeep·n_models models)
ensemble    ``train_ensemble``: K models at once with ``torch.func`` (vmap + functional_call)
trainer     ``TrainConfig``, ``train_model``: plain loop, AMP bf16 / channels-last, checkpoints
trajectory  ``TrajectoryRecorder``: quantized validation losses and weight hashes per checkpoint
logits      ``extract_logits``: logits under augmentation queries, shape (M, N, A, C)
jobs        ``JobSpec``, ``run_jobs``, ``SerialExecutor``, ``ProcessExecutor``; standard jobs
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    # data
    "GaussianMixture": "data",
    "gaussian_mixture": "data",
    "Dataset": "data",
    "load_digits": "data",
    "load_cifar10": "data",
    "load_cifar100": "data",
    "load_tinyimagenet": "data",
    "load_npz": "data",
    "restricted_load": "data",
    "hflip": "data",
    "shift": "data",
    "augmentation_queries": "data",
    "random_flip_crop": "data",
    # models
    "QuadraticLinear": "models",
    "MLP": "models",
    "DigitsCNN": "models",
    "resnet18": "models",
    "resnet50": "models",
    "densenet121": "models",
    "build_model": "models",
    "count_parameters": "models",
    # masks
    "keep_masks": "masks",
    # trainers
    "TrainConfig": "trainer",
    "train_model": "trainer",
    "train_ensemble": "ensemble",
    "Ensemble": "ensemble",
    # trajectory, logits
    "TrajectoryRecorder": "trajectory",
    "weights_hash": "trajectory",
    "extract_logits": "logits",
    # jobs
    "JobSpec": "jobs",
    "run_job": "jobs",
    "run_jobs": "jobs",
    "SerialExecutor": "jobs",
    "ProcessExecutor": "jobs",
    "gather": "jobs",
    "lira_job": "jobs",
    "trajectory_job": "jobs",
}

__all__ = sorted(_EXPORTS)


def progress_bar(iterable=None, *, total=None, desc=None, enabled=None):
    """A tqdm bar on stderr, quiet (disabled) when stderr is not a terminal.

    ``enabled=None`` decides from ``sys.stderr.isatty()``; ``True``/``False`` force it.
    """
    import sys

    from tqdm.auto import tqdm

    if enabled is None:
        enabled = bool(getattr(sys.stderr, "isatty", lambda: False)())
    return tqdm(iterable, total=total, desc=desc, disable=not enabled, leave=False)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'mis.train' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"mis.train.{module}"), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
