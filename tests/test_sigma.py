"""SIGMA specifics: the interpolation across the SR, resuming, exact-likelihood selection,
the histogram mass sampler, bad input, and a signal the data model learns but the
interpolated template does not."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from sideband.background import HistogramMassSampler, SigmaTemplate
from sideband.errors import InputError, NotFittedError

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _toy(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    m = rng.uniform(3000.0, 4000.0, n)
    return np.column_stack([rng.normal((m - 3500.0) / 500.0, 1.0), rng.normal(0, 1, n)]), m


def _small(**kw) -> SigmaTemplate:
    params = {
        "hidden_features": 16,
        "n_blocks": 1,
        "epochs": 3,
        "batch_size": 128,
        "selection": "cfm",
        "device": "cpu",
        "seed": 0,
    }
    return SigmaTemplate(**(params | kw))


@pytest.fixture(scope="module")
def fitted() -> SigmaTemplate:
    X, m = _toy(2000, 0)
    return _small(anchor_margin_gev=0.0, learning_rate=3e-3).fit(X, m)


@pytest.mark.parametrize("mode", ["context", "linear"])
def test_interpolation_reduces_to_the_data_model_at_the_anchors_and_outside(fitted, mode):
    region = fitted.at_region((3400.0, 3600.0), interpolation=mode)
    data_model = fitted.at_region(None)
    for mass in (3400.0, 3600.0, 3200.0, 3800.0):  # anchors (margin 0) and outside the SR
        m = np.full(200, mass)
        np.testing.assert_allclose(
            region.sample(m, seed=1), data_model.sample(m, seed=1), atol=1e-5
        )
    m = np.full(200, 3500.0)
    assert np.abs(region.sample(m, seed=1) - data_model.sample(m, seed=1)).max() > 1e-4
    # at_region shares the fitted networks and leaves the original untouched
    assert region.net_ is fitted.net_
    assert fitted.signal_region is None


def test_context_and_linear_interpolation_differ_inside_the_sr(fitted):
    ctx = fitted.at_region((3400.0, 3600.0))
    lin = fitted.at_region((3400.0, 3600.0), interpolation="linear")
    assert (ctx.interpolation, lin.interpolation) == ("context", "linear")
    m = np.full(100, 3500.0)
    assert np.abs(ctx.sample(m, seed=0) - lin.sample(m, seed=0)).max() > 1e-4


def test_mixed_batches_map_each_event_by_its_own_region(fitted):
    """A batch with masses inside and outside the SR maps each event as a batch of its kind."""
    region = fitted.at_region((3400.0, 3600.0))
    X, m = _toy(400, 5)
    inside = (m >= 3400) & (m <= 3600)
    assert 0 < inside.sum() < 400
    z = region.transform(X, m)
    np.testing.assert_allclose(z[inside], region.transform(X[inside], m[inside]), atol=1e-3)
    np.testing.assert_allclose(z[~inside], fitted.transform(X[~inside], m[~inside]), atol=1e-3)


def test_anchor_outside_training_masses_is_a_clear_error(fitted):
    with pytest.raises(InputError, match="needs training masses from 3850 to 4150 GeV"):
        fitted.at_region((3850.0, 4150.0))
    with pytest.raises(InputError, match="TeV"):
        fitted.at_region((3.3, 3.7))
    with pytest.raises(InputError, match="low < high"):
        fitted.at_region((3700.0, 3300.0))
    X, m = _toy(500, 1)
    with pytest.raises(InputError, match="needs training masses"):
        _small(signal_region=(3300.0, 3700.0), anchor_margin_gev=400.0).fit(X, m)


def test_bad_input_and_unfitted():
    X, m = _toy(500, 1)
    with pytest.raises(NotFittedError, match="call fit"):
        _small().sample(m)
    with pytest.raises(InputError, match="interpolation must be"):
        _small(interpolation="cubic").fit(X, m)
    with pytest.raises(InputError, match="TeV"):
        _small().fit(X, m / 1000)
    X[3, 1] = np.nan
    with pytest.raises(InputError, match=r"NaN/inf value\(s\) in feature column\(s\) \[1\]"):
        _small().fit(X, m)
    with pytest.raises(InputError, match="at least 100 events"):
        _small().fit(X[4:60], m[4:60])


def test_resume_after_interruption_matches_an_uninterrupted_fit(tmp_path):
    X, m = _toy(1000, 2)
    whole = _small(epochs=4, patience=None).fit(X, m)
    _small(epochs=2, patience=None, checkpoint_dir=tmp_path).fit(X, m)  # "killed" after epoch 1
    resumed = _small(epochs=4, patience=None, checkpoint_dir=tmp_path).fit(X, m)
    np.testing.assert_array_equal(resumed.history_.train_loss, whole.history_.train_loss)
    np.testing.assert_array_equal(resumed.history_.val_loss, whole.history_.val_loss)
    np.testing.assert_array_equal(resumed.sample(m[:20]), whole.sample(m[:20]))


def test_nll_selection_uses_the_exact_likelihood():
    X, m = _toy(1500, 3)
    t = _small(selection="nll", epochs=2, patience=None).fit(X[:1200], m[:1200], X[1200:], m[1200:])
    # the validation loss of the kept epoch is the mean -log p in the preprocessed space, over
    # the validation events inside the training range
    Xv, mv = X[1200:], m[1200:]
    lo, hi = t.mass_range_gev_
    inside = t.preprocessing_.in_range(Xv) & (mv >= lo) & (mv <= hi)
    assert 250 < inside.sum() < 300
    Xv, mv = Xv[inside], mv[inside]
    _, ladj = t.preprocessing_.transform_and_ladj(Xv)
    nll = -(t.log_prob(Xv, mv) - ladj).mean()
    assert t.history_.val_loss[t.best_epochs_[0]] == pytest.approx(nll, abs=1e-3)


def test_histogram_mass_sampler():
    rng = np.random.default_rng(0)
    m_sr = rng.uniform(3300, 3700, 5000) ** 1.0
    m_sr = np.concatenate([m_sr, rng.uniform(3300, 3400, 5000)])  # falling spectrum
    s = HistogramMassSampler(bins=8, seed=1).fit(m_sr, low_gev=3300, high_gev=3700)
    draws = s.sample(40000)
    assert draws.min() >= 3300
    assert draws.max() <= 3700
    observed, _ = np.histogram(draws, bins=s.edges_)
    expected = s.counts_ / s.counts_.sum() * draws.size
    assert stats.chisquare(observed, expected).pvalue > 1e-3
    np.testing.assert_array_equal(s.sample(10), s.sample(10))
    grid = np.linspace(3250, 3750, 5001)
    assert np.trapezoid(s.pdf(grid), grid) == pytest.approx(1.0, abs=2e-3)
    assert HistogramMassSampler(bins=50.0).fit(m_sr).counts_.size == 8
    with pytest.raises(InputError, match="outside the window"):
        HistogramMassSampler().fit(m_sr, low_gev=3400, high_gev=3700)
    with pytest.raises(InputError, match="positive number of bins"):
        HistogramMassSampler(bins=0).fit(m_sr)


@pytest.mark.slow
def test_interpolated_template_does_not_learn_a_localised_signal():
    """The data model learns a narrow signal at m = 3.5 TeV; SIGMA's interpolated template
    (context and linear) does not, and matches the background density there."""
    rng = np.random.default_rng(7)
    X, m = _toy(30000, 7)
    n_sig = 1500
    m_sig = rng.normal(3500.0, 30.0, n_sig)
    x_sig = rng.normal([2.5, 2.5], 0.15, (n_sig, 2))
    X, m = np.concatenate([X, x_sig]), np.concatenate([m, m_sig])
    t = SigmaTemplate(
        hidden_features=64, n_blocks=3, epochs=40, batch_size=256, learning_rate=2e-3,
        selection="cfm", patience=8, device="cpu", seed=0, signal_region=(3400.0, 3600.0),
    ).fit(X, m)  # fmt: skip
    masses = np.full(20000, 3500.0)

    def near_signal(model: SigmaTemplate) -> float:
        s = model.sample(masses, seed=3)
        return float((np.hypot(s[:, 0] - 2.5, s[:, 1] - 2.5) < 0.45).mean())

    # background fraction in that disc at m = 3500: N(0,1) x N(0,1) mass within radius 0.45
    bkg = float((np.hypot(*rng.normal(0, 1, (2, 10**6)) - 2.5) < 0.45).mean())
    sig = n_sig / (30000 * 200 / 1000 + n_sig * 0.99)  # signal share of SR-centre events
    assert near_signal(t.at_region(None)) > bkg + 0.3 * sig  # the data model learned it
    for mode in ("context", "linear"):
        assert near_signal(t.at_region((3400.0, 3600.0), interpolation=mode)) < bkg + 0.1 * sig


@pytest.mark.gpu
def test_sigma_on_cuda_matches_cpu_reload(tmp_path):
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    X, m = _toy(2000, 4)
    t = _small(device="cuda", signal_region=(3400.0, 3600.0)).fit(X, m)
    assert t.device_.type == "cuda"
    s = t.sample(m[:100], seed=1)
    t.save(tmp_path / "s.pt")
    cpu = SigmaTemplate.load(tmp_path / "s.pt", device="cpu")
    np.testing.assert_allclose(cpu.sample(m[:100], seed=1), s, atol=1e-3)
    np.testing.assert_allclose(cpu.log_prob(X[:50], m[:50]), t.log_prob(X[:50], m[:50]), atol=1e-2)


def test_files_without_activation_load_as_relu(fitted, tmp_path):
    """Models saved before the ``activation`` option were ReLU networks: load them as such."""
    relu = fitted.at_region(None)
    relu.activation = "relu"
    relu._set_nets([n.state_dict() for n in fitted.nets_])
    relu.save(tmp_path / "new.pt")
    payload = torch.load(tmp_path / "new.pt", weights_only=True)
    del payload["params"]["activation"]
    torch.save(payload, tmp_path / "old.pt")
    old = SigmaTemplate.load(tmp_path / "old.pt", device="cpu")
    assert old.activation == "relu"
    m = np.full(50, 3500.0)
    np.testing.assert_array_equal(old.sample(m, seed=1), relu.sample(m, seed=1))
    assert np.abs(old.sample(m, seed=1) - fitted.sample(m, seed=1)).max() > 1e-3
