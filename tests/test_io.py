"""Reading arrays a user already has: .npy, .csv and .txt columns, with one-line errors."""

from __future__ import annotations

import numpy as np
import pytest

from mis.exceptions import MisValueError
from mis.io import read_array, read_column


def test_npy_and_columns(tmp_path):
    np.save(tmp_path / "s.npy", np.arange(5.0))
    np.save(tmp_path / "m.npy", np.arange(10.0).reshape(5, 2))
    np.testing.assert_array_equal(read_column(tmp_path / "s.npy", "scores"), np.arange(5.0))
    np.testing.assert_array_equal(read_column(f"{tmp_path}/m.npy:1", "scores"), [1, 3, 5, 7, 9])
    assert read_array(tmp_path / "m.npy", "x").shape == (5, 2)
    with pytest.raises(MisValueError, match=r"scores: .* shape \(5, 2\)"):
        read_column(tmp_path / "m.npy", "scores")
    with pytest.raises(MisValueError, match=r"index in 0\.\.1"):
        read_column(f"{tmp_path}/m.npy:2", "scores")


def test_csv_and_txt_named_or_single_columns(tmp_path):
    (tmp_path / "r.csv").write_text("# scores of two attacks\nid,lira,member\n0,0.5,1\n1,-1.5,0\n")
    (tmp_path / "one.txt").write_text("0.25\n0.5\n\n1e-3\n")
    (tmp_path / "two.txt").write_text("a b\n1 2\n3\t4\n")
    np.testing.assert_array_equal(read_column(f"{tmp_path}/r.csv:lira", "scores"), [0.5, -1.5])
    np.testing.assert_array_equal(read_column(f"{tmp_path}/r.csv:2", "labels"), [1, 0])
    np.testing.assert_array_equal(read_column(tmp_path / "one.txt", "scores"), [0.25, 0.5, 1e-3])
    np.testing.assert_array_equal(read_column(f"{tmp_path}/two.txt:b", "x"), [2, 4])


@pytest.mark.parametrize(
    "content, spec_suffix, match",
    [
        ("a,b\n1,2\n", "", r"has 2 columns \['a', 'b'\]; choose one"),
        ("a,b\n1,2\n", ":c", r"has no column 'c'; columns: \['a', 'b'\]"),
        ("a\n1\nx\n", "", r"row 3: 'x' is not a number"),
        ("a,b\n1,2\n3\n", ":a", "row 3 has 1 fields; the file has 2 columns"),
        ("a,b\n", ":a", "has a header but no rows"),
        ("# only a comment\n", "", "is empty"),
    ],
)
def test_text_errors_name_the_argument(tmp_path, content, spec_suffix, match):
    (tmp_path / "f.csv").write_text(content)
    with pytest.raises(MisValueError, match=f"scores: .*{match}"):
        read_column(f"{tmp_path}/f.csv{spec_suffix}", "scores")


def test_file_errors_name_the_argument(tmp_path):
    (tmp_path / "empty.npy").write_bytes(b"")
    (tmp_path / "text.npy").write_text("0.1\n0.2\n")
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    np.save(tmp_path / "ok.npy", np.arange(1000.0))
    (tmp_path / "cut.npy").write_bytes((tmp_path / "ok.npy").read_bytes()[:200])
    (tmp_path / "bin.csv").write_bytes(b"\xff\xfe\x00\x01")
    cases = {
        tmp_path / "missing.npy": "does not exist",
        tmp_path: "is a directory",
        tmp_path / "empty.npy": "is empty",
        tmp_path / "text.npy": "not a .npy file",
        tmp_path / "obj.npy": "Python objects",
        tmp_path / "cut.npy": "truncated",
        tmp_path / "bin.csv": "not a text file",
    }
    for path, match in cases.items():
        with pytest.raises(MisValueError, match=f"labels: .*{match}"):
            read_column(path, "labels")
