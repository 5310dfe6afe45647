"""Training engine (PyTorch): data sets, models, keep masks, ensemble and plain trainers,
trajectory recording, logit extraction and resumable jobs.

Everything here produces arrays for the run store (:mod:`mis.store`); the estimators
never import this package::

    from mis.train import keep_masks, train_ensemble, TrainConfig

Submodules
----------
data        synthetic Gaussian mixture, digits, (Fashion-)MNIST, CIFAR-10/100, TinyImageNet,
            npz; augmentations
models      Aubinais' quadratic single layer, MLP, digits CNN, CIFAR ResNet-18/50, DenseNet-121
masks       ``keep_masks`` (LiRA recipe: every example IN for exactly pkeep·n_models models)
config      ``TrainConfig`` and what both trainers derive from it: seeds, batch plans, devices
ensemble    ``train_ensemble``: K models at once with ``torch.func`` (vmap + functional_call)
fused       ``train_linear_ensemble``: K linear classifiers, minibatch Adam in one numba kernel
trainer     ``train_model``: plain loop, AMP bf16 / channels-last, checkpoints
trajectory  ``TrajectoryRecorder``: quantized validation losses and weight hashes per checkpoint
logits      ``extract_logits``: logits under augmentation queries, shape (M, N, A, C)
jobs        ``JobSpec``, ``run_jobs``, ``SerialExecutor``, ``ProcessExecutor``; standard jobs
executors   ``make_executor``: serial, process pool or Dask cluster (``mis[dask]``)
"""

from mis.train.config import TrainConfig
from mis.train.data import (
    Dataset,
    GaussianMixture,
    as_dataset,
    augmentation_queries,
    dataset_from_arrays,
    gaussian_mixture,
    hflip,
    load_cifar10,
    load_cifar100,
    load_digits,
    load_fashion_mnist,
    load_idx,
    load_mnist,
    load_npz,
    load_tinyimagenet,
    random_flip_crop,
    read_idx,
    restricted_load,
    shift,
)
from mis.train.ensemble import Ensemble, train_ensemble
from mis.train.fused import LinearEnsemble, batch_order, train_linear_ensemble
from mis.train.jobs import (
    JobSpec,
    ProcessExecutor,
    SerialExecutor,
    gather,
    lira_job,
    run_job,
    run_jobs,
    trajectory_job,
)
from mis.train.logits import extract_logits
from mis.train.masks import keep_masks
from mis.train.models import (
    MLP,
    DigitsCNN,
    QuadraticLinear,
    available_models,
    build_model,
    count_parameters,
    densenet121,
    resnet18,
    resnet50,
)
from mis.train.rq_recorder import ModelQuantizer, RQRecorder, load_rq_runs, saved_runs
from mis.train.trainer import train_model
from mis.train.trajectory import TrajectoryRecorder, weights_hash

__all__ = [
    "MLP",
    "Dataset",
    "DigitsCNN",
    "Ensemble",
    "GaussianMixture",
    "JobSpec",
    "LinearEnsemble",
    "ModelQuantizer",
    "ProcessExecutor",
    "QuadraticLinear",
    "RQRecorder",
    "SerialExecutor",
    "TrainConfig",
    "TrajectoryRecorder",
    "as_dataset",
    "augmentation_queries",
    "available_models",
    "batch_order",
    "build_model",
    "count_parameters",
    "dataset_from_arrays",
    "densenet121",
    "extract_logits",
    "gather",
    "gaussian_mixture",
    "hflip",
    "keep_masks",
    "lira_job",
    "load_cifar10",
    "load_cifar100",
    "load_digits",
    "load_fashion_mnist",
    "load_idx",
    "load_mnist",
    "load_npz",
    "load_rq_runs",
    "load_tinyimagenet",
    "random_flip_crop",
    "read_idx",
    "resnet18",
    "resnet50",
    "restricted_load",
    "run_job",
    "run_jobs",
    "saved_runs",
    "shift",
    "train_ensemble",
    "train_linear_ensemble",
    "train_model",
    "trajectory_job",
    "weights_hash",
]
