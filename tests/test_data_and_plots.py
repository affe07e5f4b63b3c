import pytest
import torch
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output
from sklearn.datasets import load_digits

from losslab import data, plots


def test_digits_splits_are_disjoint_standardized_and_repeatable():
    train, val, test = data.digits(1000, 397, seed=1)
    assert (len(train), len(val), len(test)) == (1000, 397, 400)
    assert train.x.shape == (1000, 64) and train.y.dtype == torch.int64
    mean, std = train.x.double().mean(0), train.x.double().std(0)
    varying = std > 0
    assert torch.allclose(mean[varying], torch.zeros_like(mean[varying]), atol=1e-5)
    assert torch.allclose(std[varying], torch.ones_like(std[varying]), atol=1e-4)
    again = data.digits(1000, 397, seed=1)[0]
    assert torch.equal(train.x, again.x) and torch.equal(train.y, again.y)
    assert not torch.equal(train.y, data.digits(1000, 397, seed=2)[0].y)
    # every example appears exactly once across the splits
    raw = torch.as_tensor(load_digits().target)
    counts = torch.bincount(torch.cat([train.y, val.y, test.y]), minlength=10)
    assert torch.equal(counts, torch.bincount(raw, minlength=10))


def test_digits_rejects_sizes_that_leave_no_test_split():
    with pytest.raises(ValueError, match="n_train \\+ n_val"):
        data.digits(1500, 297)
    with pytest.raises(ValueError, match="n_train"):
        data.digits(5)


def test_regression_outliers_and_errors():
    clean = data.regression_1d(100, seed=0)
    dirty = data.regression_1d(100, seed=0, outlier_fraction=0.1)
    assert clean.x.shape == (100, 1) and clean.y.shape == (100,)
    assert int((dirty.y - clean.y > 0).sum()) == 10
    with pytest.raises(ValueError, match="outlier_fraction"):
        data.regression_1d(outlier_fraction=1.5)


def test_blobs_are_balanced():
    s = data.blobs(50, 4, dim=3)
    assert s.x.shape == (200, 3)
    assert torch.equal(torch.bincount(s.y), torch.full((4,), 50))
    with pytest.raises(ValueError, match="n_classes"):
        data.blobs(n_classes=1)


def test_show_embeds_the_figure_with_alt_text():
    InteractiveShell.instance()
    fig, ax = plots.figure()
    ax.plot([0, 1], [1, 0])
    with capture_output() as cap:
        plots.show(fig, alt="A falling straight line")
    out = cap.outputs[0]
    assert 'alt="A falling straight line"' in out.data["text/html"]
    assert out.data["text/html"].startswith('<img class="ll-figure" src="data:image/png;base64,')
    with pytest.raises(ValueError, match="alt"):
        plots.show(fig, alt="")


def test_figure_rejects_bad_layouts():
    with pytest.raises(ValueError, match="layout"):
        plots.figure(layout="tight")
    with pytest.raises(ValueError, match="ncols"):
        plots.figure(1, 0)
