"""Models of mis.train.models: shapes and parameter counts."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from mis._progress import progress_bar
from mis.exceptions import MisValueError
from mis.train import models

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize(
    "name, n_classes, expected",
    [
        ("resnet18", 10, 11_173_962),  # the usual CIFAR ResNet-18 count
        ("resnet18", 100, 11_220_132),
        ("resnet50", 10, 23_520_842),
        ("densenet121", 10, 6_956_298),
    ],
)
def test_big_models_parameter_counts_and_forward(name, n_classes, expected):
    torch.manual_seed(0)
    m = models.build_model(name, n_classes=n_classes)
    assert models.count_parameters(m) == expected
    m.eval()
    with torch.no_grad():
        out = m(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, n_classes) and torch.isfinite(out).all()


def test_resnet18_accepts_64px_inputs():
    m = models.resnet18(n_classes=200).eval()
    with torch.no_grad():
        assert m(torch.randn(1, 3, 64, 64)).shape == (1, 200)


def test_quadratic_linear_is_linear_in_x_and_x_squared():
    torch.manual_seed(0)
    m = models.QuadraticLinear(dim=5, n_classes=2)
    x = torch.randn(7, 5)
    w, b = m.fc.weight, m.fc.bias
    expected = x @ w[:, :5].T + (x * x) @ w[:, 5:].T + b
    torch.testing.assert_close(m(x), expected)
    assert models.count_parameters(m) == 2 * 10 + 2


def test_small_models_shapes():
    x = torch.randn(3, 1, 8, 8)
    assert models.DigitsCNN()(x).shape == (3, 10)
    assert models.MLP(64, hidden=(32, 16), n_classes=4)(x).shape == (3, 4)
    assert not any(
        isinstance(mod, torch.nn.modules.batchnorm._BatchNorm)
        for mod in models.DigitsCNN().modules()
    )


def test_build_model_unknown_name():
    with pytest.raises(MisValueError, match="resnet18"):
        models.build_model("vgg")


def test_import_layering():
    """mis.quant never imports mis.train (train may import quant); the optional extras
    (dask, RDKit, datamol, scikit-learn) are imported only when used."""
    code = (
        "import sys, mis.quant\n"
        "assert not [m for m in sys.modules if m.startswith('mis.train')], 'quant imports train'\n"
        "import mis.chem, mis.train, mis.train.executors\n"
        "from mis.train import keep_masks; keep_masks(2, 3, 0.5, 0)\n"
        "extras = {'dask', 'distributed', 'rdkit', 'datamol', 'sklearn'}\n"
        "loaded = extras & {m.split('.')[0] for m in sys.modules}\n"
        "assert not loaded, f'optional extras imported eagerly: {loaded}'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_progress_bar_quiet_without_terminal():
    bar = progress_bar(range(3), desc="x")  # pytest captures stderr: not a terminal
    assert bar.disable and list(bar) == [0, 1, 2]
    assert not progress_bar(range(1), enabled=True).disable
