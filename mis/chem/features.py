"""Molecular features computed locally: Morgan fingerprints and RDKit 2-D descriptors.

Aubinais et al. (2025, §5.2) feed embeddings of four *pretrained* models (GraphMVP,
3D-Infomax, MolR, ChemBERTa-MTR) to small MLPs. Their weights cannot be fetched here, so
``mis`` stands in classical features that need nothing but RDKit:

* ``"morgan"`` — Morgan / ECFP bit vectors (radius 2 = ECFP4, ``n_bits`` bits; Rogers &
  Hahn 2010), values in {0, 1};
* ``"descriptors"`` — RDKit's 2-D descriptors (``rdkit.Chem.Descriptors``: 217 in RDKit
  2026.09, molecular weight, logP, TPSA, counts, …). Non-finite values (a few descriptors
  overflow on unusual molecules) are replaced by the column's median over finite values.

Features are returned raw; the study standardises them with statistics of the training
part only (:func:`standardize`). Users with embeddings of their own bring them as an
``npz`` (:func:`load_embeddings`).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from mis._validation import integer
from mis.exceptions import MisValueError

__all__ = ["FEATURE_KINDS", "featurize", "load_embeddings", "standardize"]

#: Feature blocks :func:`featurize` can compute.
FEATURE_KINDS = ("morgan", "descriptors")


def _rdkit():
    try:  # RDKit is the optional extra mis[chem]: imported only when features are computed
        from rdkit import Chem, RDLogger
        from rdkit.Chem import Descriptors, rdFingerprintGenerator
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            "molecular features need RDKit: pip install 'mis[chem]' (or pip install rdkit)"
        ) from err
    RDLogger.DisableLog("rdApp.*")  # parse errors are reported by us, once
    return Chem, Descriptors, rdFingerprintGenerator


def parse_smiles(smiles) -> list:
    """RDKit molecules of ``smiles``; a ``ValueError`` lists the ones that do not parse."""
    Chem, _, _ = _rdkit()
    mols = [Chem.MolFromSmiles(s) for s in smiles]
    bad = [i for i, m in enumerate(mols) if m is None]
    if bad:
        shown = ", ".join(f"{i}: {smiles[i]!r}" for i in bad[:5])
        raise MisValueError(
            f"smiles: {len(bad)} of {len(mols)} strings are not valid SMILES ({shown}"
            f"{', ...' if len(bad) > 5 else ''}); remove or fix them"
        )
    return mols


def _median_fill(x: np.ndarray) -> np.ndarray:
    """Replace non-finite entries of each column by the median of its finite entries (0 if
    none), and clip to float32's range."""
    x = x.copy()
    bad = ~np.isfinite(x)
    if bad.any():
        for j in np.flatnonzero(bad.any(0)):
            ok = x[~bad[:, j], j]
            x[bad[:, j], j] = np.median(ok) if ok.size else 0.0
    lim = float(np.finfo(np.float32).max) / 2
    return np.clip(x, -lim, lim)


def featurize(
    smiles, *, kinds=FEATURE_KINDS, radius: int = 2, n_bits: int = 1024
) -> tuple[np.ndarray, list[str]]:
    """Features of every molecule.

    Parameters
    ----------
    smiles : sequence of str, length n
    kinds : sequence of {"morgan", "descriptors"}
        Blocks to compute, concatenated in this order.
    radius : int, default 2
        Morgan radius (2 = ECFP4).
    n_bits : int, default 1024
        Length of the Morgan bit vector.

    Returns
    -------
    x : ndarray, shape (n, n_features), float32
    names : list of str, length n_features
    """
    kinds = [kinds] if isinstance(kinds, str) else list(kinds)
    bad = [k for k in kinds if k not in FEATURE_KINDS]
    if not kinds or bad:
        raise MisValueError(
            f"kinds must be a non-empty subset of {list(FEATURE_KINDS)}; got {kinds}"
        )
    integer(radius, "radius", 0)
    integer(n_bits, "n_bits", 1)
    smiles = [str(s) for s in smiles]
    _, Descriptors, rdFingerprintGenerator = _rdkit()
    mols = parse_smiles(smiles)
    blocks, names = [], []
    for kind in kinds:
        if kind == "morgan":
            gen = rdFingerprintGenerator.GetMorganGenerator(radius=radius, fpSize=n_bits)
            fp = np.stack([gen.GetFingerprintAsNumPy(m) for m in mols]).astype(np.float32)
            blocks.append(fp)
            names += [f"morgan{radius}_{i}" for i in range(n_bits)]
        else:
            desc_names = [n for n, _ in Descriptors._descList]
            with warnings.catch_warnings(), np.errstate(all="ignore"):
                warnings.simplefilter("ignore")  # RDKit warns on a few degenerate molecules
                rows = [Descriptors.CalcMolDescriptors(m) for m in mols]
            d = np.array([[r.get(n, np.nan) for n in desc_names] for r in rows], dtype=np.float64)
            blocks.append(_median_fill(d).astype(np.float32))
            names += desc_names
    return np.concatenate(blocks, axis=1), names


def standardize(x: np.ndarray, fit_rows) -> np.ndarray:
    """``(x − μ) / σ`` per column, with μ, σ from the rows ``fit_rows`` only (the training
    part: no statistic of the validation part leaks into training). Columns constant on
    ``fit_rows`` become 0. Returns float32."""
    x = np.asarray(x, dtype=np.float64)
    fit = x[fit_rows]
    mu, sd = fit.mean(0), fit.std(0)
    sd = np.where(sd > 0, sd, np.inf)
    return ((x - mu) / sd).astype(np.float32)


def load_embeddings(path, *, n: int | None = None) -> np.ndarray:
    """A user's own molecular embeddings from an ``npz`` with an array ``x`` (n, d).

    Rows must be in the order of the task's molecules; ``n`` checks the count.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    with np.load(path, allow_pickle=False) as z:
        if "x" not in z.files:
            raise MisValueError(f"{path} must hold an array named 'x'; it has {z.files}")
        x = np.asarray(z["x"], dtype=np.float32)
    if x.ndim != 2:
        raise MisValueError(f"embeddings in {path} must be 2-D (n, d); got shape {x.shape}")
    if n is not None and x.shape[0] != n:
        raise MisValueError(
            f"embeddings in {path} have {x.shape[0]} rows; the task has {n} molecules"
        )
    if not np.isfinite(x).all():
        raise MisValueError(f"embeddings in {path} must be finite")
    return x
