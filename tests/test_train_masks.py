"""keep_masks: every example IN for exactly pkeep·n_models models."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mis.exceptions import MisValueError
from mis.train.masks import keep_masks


@given(st.integers(1, 40), st.integers(1, 300), st.data())
def test_every_example_in_exactly_n_in_models(half, n_examples, draw):
    n_models = 2 * half
    keep = keep_masks(n_models, n_examples, 0.5, rng=draw.draw(st.integers(0, 2**32)))
    assert keep.shape == (n_models, n_examples) and keep.dtype == bool
    np.testing.assert_array_equal(keep.sum(0), np.full(n_examples, half))


@given(st.integers(2, 30), st.integers(1, 100), st.data())
def test_other_pkeep(n_models, n_examples, draw):
    n_in = draw.draw(st.integers(1, n_models - 1))
    keep = keep_masks(n_models, n_examples, n_in / n_models, rng=0)
    assert (keep.sum(0) == n_in).all()


def test_same_seed_same_masks_and_uniform_membership():
    a = keep_masks(16, 5000, 0.5, rng=7)
    np.testing.assert_array_equal(a, keep_masks(16, 5000, 0.5, rng=7))
    assert not np.array_equal(a, keep_masks(16, 5000, 0.5, rng=8))
    # each model is IN for each example with probability 1/2: per-model shares near 0.5
    share = a.mean(1)
    assert np.all(np.abs(share - 0.5) < 5 * 0.5 / np.sqrt(5000))
    # pairs of models overlap on about a quarter... exactly (n/2-1)/(n-1) of examples in expectation
    overlap = (a[0] & a[1]).mean()
    assert abs(overlap - 0.5 * 7 / 15) < 0.03


@pytest.mark.parametrize(
    "args, match",
    [
        ((1, 10, 0.5), "n_models"),
        ((4, 0, 0.5), "n_examples"),
        ((4, 10, 0.0), "pkeep"),
        ((4, 10, 1.0), "pkeep"),
        ((5, 10, 0.5), "integer"),
        ((4, 10, "a"), "pkeep"),
    ],
)
def test_bad_inputs(args, match):
    with pytest.raises(MisValueError, match=match):
        keep_masks(*args, rng=0)
