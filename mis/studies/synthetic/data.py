"""Seeds and data of the synthetic study: the Gaussian mixture of a setting (§5.1.1), its
shared validation and test sets, each run's training set and its fresh non-members.

Seeds. ``derive_seed(seed, purpose, k_modes, round(1000 σ), run)`` hashes these integers with
:class:`numpy.random.SeedSequence`; the purposes are the constants below.
"""

from __future__ import annotations

from mis.studies._common import derive_seed
from mis.studies.synthetic.config import Config
from mis.train.data import GaussianMixture

__all__ = [
    "PURPOSES",
    "nonmember_set",
    "setting_data",
    "setting_key",
    "setting_keys",
    "training_set",
]

#: Seed purposes: every random quantity derives from the master seed, its purpose and the
#: identity of what it is for, never from the order of execution.
MIXTURE, VALIDATION, TEST, TRAIN_DATA, INIT, NONMEMBERS, DISCRIMINATOR, ANALYSIS = range(1, 9)
BATCHES, FOLDS = 9, 10
PURPOSES = {
    "mixture": MIXTURE,
    "validation": VALIDATION,
    "test": TEST,
    "training_set": TRAIN_DATA,
    "init": INIT,
    "nonmembers": NONMEMBERS,
    "discriminator": DISCRIMINATOR,
    "analysis": ANALYSIS,
    "batch_order": BATCHES,
    "folds": FOLDS,
}


def setting_key(k_modes: int, sigma: float) -> str:
    """Store prefix and report label of a setting, e.g. ``"k8-s2"``."""
    return f"k{int(k_modes)}-s{float(sigma):g}"


def setting_keys(k_modes, sigma) -> tuple[int, int]:
    """The integer seed keys of a setting: ``(k_modes, round(1000 σ))``."""
    return int(k_modes), round(1000 * float(sigma))


def setting_data(cfg: Config, k_modes: int, sigma: float):
    """The mixture, validation set and test set of a setting.

    Returns
    -------
    mixture : GaussianMixture
    (x_val, y_val) : (n_val, dim) float32, (n_val,) int64
    (x_test, y_test) : (n_test, dim) float32, (n_test,) int64
    """
    s, d = cfg.study.seed, cfg.data
    sk = setting_keys(k_modes, sigma)
    mixture = GaussianMixture.random(
        dim=d.dim,
        k_modes=int(k_modes),
        sigma=float(sigma),
        rng=derive_seed(s, MIXTURE, *sk),
        centre_scale=d.centre_scale,
    )
    val = mixture.sample(d.n_val, derive_seed(s, VALIDATION, *sk))
    test = mixture.sample(d.n_test, derive_seed(s, TEST, *sk))
    return mixture, val, test


def training_set(cfg: Config, mixture, k_modes, sigma, run: int):
    """Run ``run``'s ``n_train`` training points: (n_train, dim) float32, (n_train,) int64."""
    return mixture.sample(
        cfg.data.n_train,
        derive_seed(cfg.study.seed, TRAIN_DATA, *setting_keys(k_modes, sigma), run),
    )


def nonmember_set(cfg: Config, mixture, k_modes, sigma, run: int):
    """``n_members`` fresh points for run ``run``'s non-members (never trained on)."""
    return mixture.sample(
        cfg.mis.n_members,
        derive_seed(cfg.study.seed, NONMEMBERS, *setting_keys(k_modes, sigma), run),
    )
