"""The public plots: each returns a matplotlib Figure with what it promises drawn."""

import numpy as np
import pytest
from matplotlib.figure import Figure

from mis.metrics import roc_band
from mis.report.plots import plot_accuracy_vs_leak, plot_ranking, plot_roc, save_figure
from mis.security import rank_quantizers


def test_plot_roc_draws_one_curve_per_band_and_chance(tmp_path):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 400)
    bands = {
        "strong": roc_band(labels + rng.normal(0, 1, 400), labels, n_resamples=20, rng=0),
        "weak": roc_band(rng.normal(0, 1, 400), labels, n_resamples=20, rng=1),
    }
    fig = plot_roc(bands)
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    assert [line.get_label() for line in ax.get_lines()] == ["chance", "strong", "weak"]
    assert ax.get_xscale() == ax.get_yscale() == "log"
    path = save_figure(fig, tmp_path / "roc.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_ranking_puts_the_most_private_on_top():
    rng = np.random.default_rng(1)
    rq = np.column_stack([rng.gamma(2, 1, 30), rng.gamma(2, 5, 30), rng.gamma(2, 0.2, 30)])
    ranking = rank_quantizers(rq, ["a", "b", "c"], n_resamples=200, rng=0)
    fig = plot_ranking(ranking)
    ax = fig.axes[0]
    top = max(zip(ax.get_yticks(), [t.get_text() for t in ax.get_yticklabels()], strict=True))[1]
    assert top == ranking.names[ranking.order[0]] == "b"  # largest mean r_Q: most private


def test_plot_accuracy_vs_leak_floors_zero_tpr_and_marks_the_reference():
    points = {
        "full precision": {"accuracy": 0.9, "tpr": 0.05, "tpr_low": 0.03, "tpr_high": 0.07},
        "GPTQ 2-bit": {"accuracy": 0.85, "accuracy_low": 0.8, "accuracy_high": 0.88, "tpr": 0.0},
    }
    fig = plot_accuracy_vs_leak(points, fpr=0.001, reference="full precision")
    ax = fig.axes[0]
    assert ax.get_yscale() == "log"
    ys = [c.get_children()[0].get_ydata()[0] for c in ax.containers]
    assert ys == pytest.approx([0.05, 0.001 / 4])  # a TPR of 0 drawn at FPR / 4
    assert {t.get_text() for t in ax.get_legend().get_texts()} == {*points, "chance"}
