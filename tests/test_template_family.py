"""Properties every background template model must have (after zuko's test_flows).

Each model of the family (`CathodeTemplate`, `SigmaTemplate` with and without an SR to
interpolate) is fitted once on a toy with a known conditional density and checked for: the
`TemplateModel` interface, sample shape/dtype/seeding, invertibility of the latent map, the
log-density as change of variables (Jacobian by finite differences), a density that integrates
to 1, identical outputs after save/load, a CPU fit, and a clear error for a diverging fit.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from sideband.background import CathodeTemplate, SigmaTemplate, TemplateModel
from sideband.background.training import uses_n_threads
from sideband.errors import CheckpointError, InputError, TrainingError

SLOPE = 1.0


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _toy(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """x1 | m ~ N(SLOPE (m - 3500)/500, 1), x2 ~ Gamma(2, 1); m uniform 3000-4000 GeV."""
    rng = np.random.default_rng(seed)
    m = rng.uniform(3000.0, 4000.0, n)
    return np.column_stack(
        [rng.normal(SLOPE * (m - 3500.0) / 500.0, 1.0), rng.gamma(2.0, 1.0, n)]
    ), m


def _true_log_prob(X: np.ndarray, m: np.ndarray) -> np.ndarray:
    return stats.norm.logpdf(X[:, 0], SLOPE * (m - 3500) / 500) + stats.gamma.logpdf(X[:, 1], 2.0)


MODELS = {
    "cathode": lambda **kw: CathodeTemplate(
        n_transforms=3, hidden_features=(32, 32), epochs=20, learning_rate=3e-3, patience=5,
        n_ensemble=2, device="cpu", **kw,
    ),
    "sigma": lambda **kw: SigmaTemplate(
        hidden_features=32, n_blocks=2, epochs=100, batch_size=128, learning_rate=1e-3,
        patience=15, n_ensemble=2, selection="cfm", atol=1e-6, rtol=1e-6, device="cpu", **kw,
    ),
}  # fmt: skip


@pytest.fixture(scope="module", params=["cathode", "sigma", "sigma_sr"])
def model(request):
    name = request.param
    X, m = _toy(5000, 1)
    if name == "cathode":
        return MODELS["cathode"](seed=0).fit(X, m)
    t = MODELS["sigma"](seed=0).fit(X, m)
    return t if name == "sigma" else t.at_region((3400.0, 3600.0))


def test_follows_the_template_interface(model):
    assert isinstance(model, TemplateModel)
    assert model.device_.type == "cpu"
    assert model.n_features_in_ == 2
    assert len(model.best_epochs_) == 2
    assert model.history_.val_loss[model.best_epochs_[0]] == model.history_.val_loss.min()
    assert type(model)(**model.get_params()).get_params() == model.get_params()


def test_samples_shape_dtype_and_seed(model):
    m = np.linspace(3300.0, 3700.0, 300)
    a, b = model.sample(m, seed=5), model.sample(m, seed=5)
    assert a.shape == (300, 2)
    assert a.dtype == np.float64
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, model.sample(m, seed=6))
    np.testing.assert_array_equal(model.sample(m), model.sample(m))  # default seed


def test_samples_follow_the_known_density(model):
    m = np.random.default_rng(8).uniform(3000.0, 4000.0, 4000)
    s = model.sample(m, seed=1)
    # Kolmogorov distance of x1 - E[x1 | m] and x2 to their true laws (small models, 5k events)
    assert stats.kstest(s[:, 0] - SLOPE * (m - 3500) / 500, stats.norm(0, 1).cdf).statistic < 0.05
    assert stats.kstest(s[:, 1], stats.gamma(2).cdf).statistic < 0.05
    X, mm = _toy(2000, 9)
    # mean log-likelihood close to the truth's (it cannot beat it by more than noise)
    gap = _true_log_prob(X, mm).mean() - model.log_prob(X, mm).mean()
    assert -0.05 < gap < 0.1


def test_template_is_indistinguishable_from_the_truth(model):
    """Classifier two-sample test: template vs true events at the same masses, AUC ~ 0.5."""
    from sideband.evaluation.two_sample import classifier_two_sample_test
    from sideband.scoring import HGBEnsemble

    X, m = _toy(3000, 11)
    res = classifier_two_sample_test(
        np.column_stack([model.sample(m, seed=4), m]),
        np.column_stack([X, m]),
        classifier=HGBEnsemble(n_members=1, max_iter=50, n_threads=1),
        n_folds=3,
        n_null=2,
    )
    assert res.auc < 0.55


def test_latent_map_is_invertible(model):
    X, m = _toy(300, 2)
    z = model.transform(X, m)
    assert z.shape == X.shape
    np.testing.assert_allclose(model.inverse_transform(z, m), X, atol=2e-3, rtol=1e-3)


def test_log_prob_is_change_of_variables(model):
    """log p(x|m) of the best member = log N(T(x)) + log|det dT/dx|, Jacobian by finite
    differences of `transform` (preprocessing and flow / ODE together)."""
    X, m = _toy(4, 4)
    members = model.flows_ if hasattr(model, "flows_") else model.nets_
    attr = "flows_" if hasattr(model, "flows_") else "nets_"
    try:
        setattr(model, attr, members[:1])
        lp = model.log_prob(X, m)
    finally:
        setattr(model, attr, members)
    base = stats.norm.logpdf(model.transform(X, m)).sum(1)
    # h = 1e-2: the adaptive ODE solver picks its steps per call, so SIGMA's `transform` is
    # smooth only to ~1e-6; smaller h turns that into noise (O(h^2) bias here is ~1e-4).
    h = 1e-2
    for i in range(len(X)):
        jac = np.empty((2, 2))
        for j in range(2):
            e = np.zeros(2)
            e[j] = h
            d = model.transform((X[i] + e)[None], m[i : i + 1]) - model.transform(
                (X[i] - e)[None], m[i : i + 1]
            )
            jac[:, j] = d[0] / (2 * h)
        assert lp[i] == pytest.approx(base[i] + np.log(abs(np.linalg.det(jac))), abs=2e-2)


def test_density_integrates_to_one(model):
    lo, hi = model.preprocessing_.steps_[0].low_, model.preprocessing_.steps_[0].high_
    g0, g1 = np.linspace(lo[0], hi[0], 61), np.linspace(lo[1], hi[1], 81)
    xx, yy = np.meshgrid(g0, g1, indexing="ij")
    pts = np.column_stack([xx.ravel(), yy.ravel()])
    dens = np.exp(model.log_prob(pts, np.full(len(pts), 3450.0))).reshape(xx.shape)
    assert np.trapezoid(np.trapezoid(dens, g1, axis=1), g0) == pytest.approx(1.0, abs=0.02)


def test_save_load_gives_identical_outputs(model, tmp_path):
    X, m = _toy(200, 3)
    model.save(tmp_path / "t.pt")
    assert not list(tmp_path.glob("*.tmp"))
    loaded = type(model).load(tmp_path / "t.pt", device="cpu")
    assert loaded.get_params() == model.get_params() | {"device": "cpu"}
    np.testing.assert_array_equal(loaded.log_prob(X, m), model.log_prob(X, m))
    np.testing.assert_array_equal(loaded.sample(m, seed=2), model.sample(m, seed=2))
    np.testing.assert_array_equal(loaded.transform(X, m), model.transform(X, m))
    (tmp_path / "bad.pt").write_bytes(b"not a model")
    with pytest.raises(CheckpointError, match="corrupt"):
        type(model).load(tmp_path / "bad.pt")
    other = CathodeTemplate if isinstance(model, SigmaTemplate) else SigmaTemplate
    with pytest.raises(CheckpointError, match=f"not a saved sideband {other.__name__}"):
        other.load(tmp_path / "t.pt")


@pytest.mark.parametrize("name", sorted(MODELS))
def test_same_seed_same_model_and_rng_untouched(name):
    X, m = _toy(600, 5)
    state = torch.random.get_rng_state()
    a = MODELS[name](seed=3)
    a.epochs = b_epochs = 2
    a.fit(X, m)
    b = MODELS[name](seed=3)
    b.epochs = b_epochs
    b.fit(X, m)
    assert torch.equal(torch.random.get_rng_state(), state)  # nothing seeds torch globally
    np.testing.assert_array_equal(a.history_.val_loss, b.history_.val_loss)
    np.testing.assert_array_equal(a.sample(m[:50], seed=1), b.sample(m[:50], seed=1))


@pytest.mark.parametrize("name", sorted(MODELS))
def test_diverging_fit_names_the_epoch(name):
    X, m = _toy(600, 6)
    model = MODELS[name](seed=0)
    model.learning_rate, model.epochs = 1e12, 3
    with pytest.raises(TrainingError, match=r"non-finite .* loss .* at epoch \d+.*learning rate"):
        model.fit(X, m)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_n_threads_applies_while_fitting_and_is_restored(name, monkeypatch):
    X, m = _toy(300, 7)
    seen = []
    model = MODELS[name](seed=0, n_threads=2)
    model.epochs = 1
    fit = type(model).fit.__wrapped__

    def spy(self, *a, **kw):
        seen.append(torch.get_num_threads())
        return fit(self, *a, **kw)

    monkeypatch.setattr(type(model), "fit", uses_n_threads(spy))
    before = torch.get_num_threads()
    model.fit(X, m)
    assert seen == [2]
    assert torch.get_num_threads() == before
    with pytest.raises(InputError, match="n_threads must be None or a positive integer"):
        MODELS[name](n_threads=0).fit(X, m)
