"""The run store: round trips, integrity checks, atomicity, no pickle."""

import json
import multiprocessing as mp

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from mis import store as store_mod
from mis.exceptions import MisValueError, StoreCorruptError
from mis.store import RunStore, sha256_file


@pytest.fixture
def run(tmp_path):
    return RunStore(tmp_path / "run", config={"study": "test", "seed": 3})


def test_manifest_layout(run):
    run.save("keep", np.ones((4, 10), dtype=bool), producer="keep_masks", seed=1)
    m = json.loads((run.path / "manifest.json").read_text())
    assert m["schema"] == store_mod.SCHEMA_VERSION
    assert m["config"] == {"study": "test", "seed": 3}
    assert {"mis", "python", "numpy", "platform"} <= set(m["provenance"])
    entry = m["arrays"]["keep"]
    assert entry["file"] == "keep.npy"
    assert entry["shape"] == [4, 10] and entry["dtype"] == "|b1"
    assert entry["meta"] == {"producer": "keep_masks", "seed": 1}
    assert entry["sha256"] == sha256_file(run.path / "keep.npy")
    assert entry["nbytes"] == (run.path / "keep.npy").stat().st_size


@given(
    hnp.arrays(
        dtype=st.sampled_from([np.float32, np.float64, np.int64, np.uint64, np.bool_, np.uint8]),
        shape=hnp.array_shapes(min_dims=0, max_dims=4, max_side=5),
    )
)
def test_round_trip(tmp_path_factory, arr):
    run = RunStore(tmp_path_factory.mktemp("rt"))
    run.save("x", arr)
    for mmap in (True, False):
        back = run.load("x", mmap=mmap)
        assert back.dtype == arr.dtype and back.shape == arr.shape
        np.testing.assert_array_equal(back, arr)


def test_load_is_memory_mapped_read_only(run):
    run.save("logits", np.zeros((3, 5, 2, 10), dtype=np.float32))
    arr = run.load("logits")
    assert isinstance(arr, np.memmap)
    with pytest.raises(ValueError):
        arr[0, 0, 0, 0] = 1.0


def test_nested_names_has_names_delete(run):
    run.save("models/0003/weights", np.arange(5.0))
    assert run.has("models/0003/weights") and "models/0003/weights" in run
    assert not run.has("models/0004/weights")
    assert run.names() == ["models/0003/weights"]
    run.delete("models/0003/weights")
    assert not run.has("models/0003/weights")
    assert not (run.path / "models/0003/weights.npy").exists()


def test_reopen_sees_saved_arrays(run):
    run.save("labels", np.arange(7))
    again = RunStore(run.path, create=False)
    np.testing.assert_array_equal(again.load("labels"), np.arange(7))
    assert again.meta("labels") == {}


def test_missing_store_without_create(tmp_path):
    with pytest.raises(FileNotFoundError, match="no run store"):
        RunStore(tmp_path / "nothing", create=False)


def test_truncated_file_is_named(run):
    run.save("signals", np.random.default_rng(0).normal(size=(4, 100)))
    run.save("labels", np.arange(4))
    path = run.path / "signals.npy"
    path.write_bytes(path.read_bytes()[:-16])
    fresh = RunStore(run.path)  # opening reads no array: the others stay usable
    np.testing.assert_array_equal(fresh.load("labels"), np.arange(4))
    assert not fresh.has("signals") and not fresh.has("signals", verify=False)
    for call in (fresh.check_files, lambda: fresh.load("signals"), fresh.verify):
        with pytest.raises(StoreCorruptError, match=r"signals\.npy.*truncated.*--repair"):
            call()


def test_missing_file_is_named(run):
    run.save("keep", np.zeros((2, 3), dtype=bool))
    (run.path / "keep.npy").unlink()
    fresh = RunStore(run.path)
    assert not fresh.has("keep")
    with pytest.raises(StoreCorruptError, match=r"keep\.npy is listed in the manifest but missing"):
        fresh.check_files()
    with pytest.raises(StoreCorruptError, match=r"keep\.npy is listed in the manifest but missing"):
        fresh.load("keep")


def test_checksum_mismatch_is_named_on_load(run):
    run.save("val_losses", np.zeros((2, 3, 4, 5), dtype=np.float32))
    path = run.path / "val_losses.npy"
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 0xFF  # same size, different content
    path.write_bytes(bytes(raw))
    fresh = RunStore(run.path)  # sizes still agree: opening is fine
    with pytest.raises(StoreCorruptError, match=r"val_losses\.npy does not match its sha256"):
        fresh.load("val_losses")
    with pytest.raises(StoreCorruptError, match=r"val_losses\.npy"):
        fresh.verify()
    assert not fresh.has("val_losses")  # has() checks the sha256 by default
    assert fresh.has("val_losses", verify=False)  # the cheap check only looks at the size


def test_corrupt_manifest_is_named(run):
    (run.path / "manifest.json").write_text('{"schema": 1, "arrays": {')
    with pytest.raises(StoreCorruptError, match=r"manifest\.json is not valid JSON"):
        RunStore(run.path)


def test_wrong_schema_is_refused(run):
    m = json.loads((run.path / "manifest.json").read_text())
    m["schema"] = 99
    (run.path / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(StoreCorruptError, match="schema version 99"):
        RunStore(run.path)


def test_object_arrays_and_pickles_are_refused(run, tmp_path):
    with pytest.raises(MisValueError, match="object arrays are refused"):
        run.save("bad", np.array([{"a": 1}], dtype=object))
    # a pickled .npy planted behind the store's back is never unpickled
    np.save(run.path / "evil.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    m = json.loads((run.path / "manifest.json").read_text())
    path = run.path / "evil.npy"
    m["arrays"]["evil"] = {
        "file": "evil.npy",
        "shape": [1],
        "dtype": "|O",
        "nbytes": path.stat().st_size,
        "sha256": sha256_file(path),
        "created": "",
        "meta": {},
    }
    (run.path / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(StoreCorruptError, match=r"evil\.npy could not be read"):
        RunStore(run.path).load("evil", mmap=False)


@pytest.mark.parametrize("name", ["", "../x", "a/../b", "a b", "/abs", "x\n"])
def test_bad_names(run, name):
    with pytest.raises(MisValueError, match="name must be"):
        run.save(name, np.zeros(1))


def test_meta_must_be_json(run):
    with pytest.raises(MisValueError, match="JSON"):
        run.save("x", np.zeros(1), fn=print)
    run.save("y", np.zeros(1), seed=np.int64(3), shape=np.array([1, 2]))
    assert run.meta("y") == {"seed": 3, "shape": [1, 2]}


def test_interrupted_write_leaves_nothing(run, monkeypatch):
    run.save("logits", np.zeros(10))
    before = (run.path / "manifest.json").read_bytes()

    def explode(f, arr, allow_pickle):
        f.write(b"\x93NUMPY partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(np.lib.format, "write_array", explode)
    with pytest.raises(KeyboardInterrupt):
        run.save("logits", np.ones(10))
    with pytest.raises(KeyboardInterrupt):
        run.save("signals", np.ones(10))
    monkeypatch.undo()
    assert (run.path / "manifest.json").read_bytes() == before
    assert sorted(p.name for p in run.path.iterdir() if not p.name.startswith(".manifest")) == [
        "logits.npy",
        "manifest.json",
    ]
    np.testing.assert_array_equal(RunStore(run.path).load("logits"), np.zeros(10))
    assert not run.has("signals")


def test_orphan_npy_without_manifest_is_refused(tmp_path):
    (tmp_path / "r").mkdir()
    np.save(tmp_path / "r" / "keep.npy", np.zeros(3))
    with pytest.raises(StoreCorruptError, match=r"manifest\.json is missing"):
        RunStore(tmp_path / "r")


def _writer(path, k):
    run = RunStore(path)
    for j in range(5):
        run.save(f"w{k}/a{j}", np.full(100, k * 10 + j))


def test_concurrent_writers_all_recorded(tmp_path):
    path = tmp_path / "shared"
    RunStore(path)
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(path, k)) for k in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    run = RunStore(path)
    assert len(run.names()) == 20
    run.verify()
    assert run.load("w3/a4")[0] == 34
