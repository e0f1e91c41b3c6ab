"""Tests of sideband.background: preprocessing Jacobians, mass sampler, fit loop, CATHODE flow."""

from __future__ import annotations

import copy
import logging
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats

from sideband.background import (
    CathodeTemplate,
    KDEMassSampler,
    LogitScaler,
    PreprocessingPipeline,
    StandardScaler,
    fit_loop,
)
from sideband.errors import CheckpointError, InputError, NotFittedError, TrainingError

SLOPE = 2.0  # toy: x1 | m ~ N(SLOPE * (m - 3500) / 500, 1)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _toy(n: int, seed: int, *, sidebands: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """x1 | m ~ N(2 (m - 3500)/500, 1), x2 ~ Gamma(2, 1) independent; m uniform in GeV."""
    rng = np.random.default_rng(seed)
    m = rng.uniform(3000.0, 4000.0, 3 * n)
    if sidebands:
        m = m[(m < 3300) | (m > 3700)]
    m = m[:n]
    x1 = rng.normal(SLOPE * (m - 3500.0) / 500.0, 1.0)
    x2 = rng.gamma(2.0, 1.0, n)
    return np.column_stack([x1, x2]), m


@pytest.fixture(scope="module")
def toy_data() -> tuple[np.ndarray, np.ndarray]:
    return _toy(6000, 1)


@pytest.fixture(scope="module")
def fitted(toy_data) -> CathodeTemplate:
    X, m = toy_data
    return CathodeTemplate(
        n_transforms=3,
        hidden_features=(32, 32),
        epochs=25,
        batch_size=256,
        learning_rate=3e-3,
        patience=5,
        n_ensemble=3,
        device="cpu",
        seed=0,
    ).fit(X, m)


def _small(**kw) -> CathodeTemplate:
    params = {"n_transforms": 1, "hidden_features": (8,), "epochs": 2, "device": "cpu"}
    return CathodeTemplate(**(params | kw))


# --------------------------------------------------------------------------- transforms
def _data(n: int = 500, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.column_stack([rng.normal(100, 20, n), rng.gamma(2, 0.3, n), rng.uniform(-1, 3, n)])


TRANSFORMS = [
    pytest.param(LogitScaler, id="logit"),
    pytest.param(StandardScaler, id="standard"),
    pytest.param(PreprocessingPipeline, id="pipeline"),
    pytest.param(lambda: PreprocessingPipeline(logit_eps=0.05), id="pipeline-eps"),
]


@pytest.mark.parametrize("make", TRANSFORMS)
def test_transform_invertible(make):
    X = _data()
    t = make().fit(X)
    Z = t.transform(X)
    assert Z.shape == X.shape
    assert np.isfinite(Z).all()
    np.testing.assert_allclose(t.inverse_transform(Z), X, rtol=0, atol=1e-6 * np.abs(X).max())
    z = np.random.default_rng(3).normal(size=(50, 3)) * 2
    np.testing.assert_allclose(t.transform(t.inverse_transform(z)), z, atol=1e-6)


@pytest.mark.parametrize("make", TRANSFORMS)
def test_transform_log_jacobian_finite_differences(make):
    X = _data()
    t = make().fit(X)
    pts = X[:20]
    ladj = t.log_abs_det_jacobian(pts)
    assert ladj.shape == (20,)
    h = 1e-6 * (X.max(0) - X.min(0))
    for i, x in enumerate(pts):
        jac = np.empty((3, 3))
        for j in range(3):
            e = np.zeros(3)
            e[j] = h[j]
            jac[:, j] = (t.transform((x + e)[None]) - t.transform((x - e)[None]))[0] / (2 * h[j])
        assert ladj[i] == pytest.approx(np.log(abs(np.linalg.det(jac))), abs=1e-5)


def test_logit_jacobian_sign_and_value():
    # sk_cathode had the sign wrong: at u = 1/2 the logit stretches by 4 / (high - low).
    t = LogitScaler(eps=0.5).fit(np.array([[0.0], [1.0]]))  # low=-0.5, high=1.5, u(0.5)=1/2
    assert t.log_abs_det_jacobian(np.array([[0.5]]))[0] == pytest.approx(np.log(4 / 2.0))
    assert t.transform(np.array([[0.5]]))[0, 0] == pytest.approx(0.0)


def test_pipeline_transform_and_ladj_consistent():
    X = _data()
    p = PreprocessingPipeline().fit(X)
    Z, ladj = p.transform_and_ladj(X[:7])
    np.testing.assert_allclose(Z, p.transform(X[:7]))
    np.testing.assert_allclose(ladj, p.log_abs_det_jacobian(X[:7]))


def test_logit_out_of_range_policies(caplog):
    X = _data()
    outside = np.vstack([X[:3], [[1e4, 0.5, 0.0]], [[100, -50.0, 0.0]]])
    clip = LogitScaler(out_of_range="clip").fit(X)
    with caplog.at_level(logging.WARNING, logger="sideband.background.transforms"):
        z = clip.transform(outside)
    assert np.isfinite(z).all()
    assert z[3, 0] == pytest.approx(math.log(1e6 - 1), rel=1e-6)  # clipped to u = 1 - 1e-6
    assert "2 of 5 event(s) outside" in caplog.text
    z_nan = LogitScaler(out_of_range="nan").fit(X).transform(outside)
    assert np.isnan(z_nan[3, 0])
    assert np.isnan(z_nan[4, 1])
    assert np.isfinite(z_nan[:3]).all()
    assert np.isfinite(z_nan[3, 1:]).all()
    with pytest.raises(InputError, match="outside the fitted feature range"):
        LogitScaler(out_of_range="raise").fit(X).transform(outside)
    # the margin eps keeps slightly-outside events in range
    span = X[:, 0].max() - X[:, 0].min()
    near = X[:1].copy()
    near[0, 0] = X[:, 0].max() + 0.5e-3 * span
    assert np.isfinite(LogitScaler(out_of_range="raise").fit(X).transform(near)).all()


def test_transform_errors():
    X = _data()
    with pytest.raises(NotFittedError):
        LogitScaler().transform(X)
    with pytest.raises(InputError, match="constant"):
        LogitScaler().fit(np.column_stack([X[:, 0], np.ones(len(X))]))
    with pytest.raises(InputError, match="NaN"):
        StandardScaler().fit(np.where(np.arange(len(X))[:, None] == 3, np.nan, X))
    with pytest.raises(InputError, match="feature column"):
        StandardScaler().fit(X).transform(X[:, :2])


def test_pipeline_state_roundtrip():
    X = _data()
    p = PreprocessingPipeline(logit_eps=0.01).fit(X)
    q = PreprocessingPipeline.from_state(p.get_state())
    np.testing.assert_array_equal(q.transform(X), p.transform(X))
    np.testing.assert_array_equal(q.log_abs_det_jacobian(X), p.log_abs_det_jacobian(X))


# --------------------------------------------------------------------------- mass sampler
def test_kde_sampler_window_and_distribution():
    rng = np.random.default_rng(5)
    m = 3300.0 + 400.0 * rng.beta(1.0, 1.6, 4000)  # falling spectrum, sharp at the low edge
    kde = KDEMassSampler(seed=1).fit(m, low_gev=3300.0, high_gev=3700.0)
    s = kde.sample(20000)
    assert s.shape == (20000,)
    assert s.min() >= 3300.0
    assert s.max() <= 3700.0
    assert stats.ks_2samp(s, m).pvalue > 0.01
    # same seed, same masses; another seed, other masses
    np.testing.assert_array_equal(kde.sample(100, seed=3), kde.sample(100, seed=3))
    assert not np.array_equal(kde.sample(100, seed=3), kde.sample(100, seed=4))
    # the reflected density integrates to 1 over the window
    grid = np.linspace(3300.0, 3700.0, 801)
    assert np.trapezoid(kde.pdf(grid), grid) == pytest.approx(1.0, abs=2e-3)


def test_kde_sampler_wide_bandwidth_reflection_and_errors():
    m = np.linspace(3310.0, 3690.0, 50)
    kde = KDEMassSampler(bandwidth=1000.0).fit(m, low_gev=3300.0, high_gev=3700.0)
    s = kde.sample(5000, rng=np.random.default_rng(0))
    assert s.min() >= 3300.0
    assert s.max() <= 3700.0
    # a very wide kernel folded into the window is close to uniform
    assert stats.kstest(s, stats.uniform(3300.0, 400.0).cdf).pvalue > 0.001
    with pytest.raises(InputError, match="TeV"):
        KDEMassSampler().fit(m / 1000.0)
    with pytest.raises(InputError, match="outside the window"):
        KDEMassSampler().fit(m, low_gev=3400.0, high_gev=3700.0)
    with pytest.raises(NotFittedError):
        KDEMassSampler().sample(3)


# --------------------------------------------------------------------------- fit loop
class _Gauss(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.mu = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ((x - self.mu) ** 2).mean()


def _mse(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    return model(x)


def test_fit_loop_history_and_best_epochs():
    x = np.random.default_rng(0).normal(3.0, 1.0, (2000, 1))
    model = _Gauss()
    res = fit_loop(
        model, _mse, (x,), epochs=12, batch_size=100, learning_rate=0.05, patience=None,
        n_ensemble=3, device="cpu", seed=1,
    )  # fmt: skip
    h = res.history
    np.testing.assert_array_equal(h.epochs, np.arange(12))
    assert h.train_loss.shape == h.val_loss.shape == (12,)
    np.testing.assert_array_equal(h.best_epochs, np.argsort(h.val_loss, kind="stable")[:3])
    assert h.val_loss[0] < 9.5  # epoch 0 is already trained (untrained loss would be ~10)
    assert len(res.best_states) == 3
    assert float(model.mu.detach()) == float(res.best_states[0]["mu"])  # best weights loaded
    assert float(model.mu.detach()) == pytest.approx(3.0, abs=0.2)


def test_fit_loop_early_stopping_and_resume(tmp_path):
    x = np.random.default_rng(0).normal(3.0, 1.0, (500, 1))
    kw = {"epochs": 40, "batch_size": 50, "learning_rate": 0.5, "patience": 3, "device": "cpu"}
    full = fit_loop(_Gauss(), _mse, (x,), seed=2, **kw)
    assert full.history.stopped_early
    assert len(full.history.epochs) < 40
    assert len(full.history.epochs) - 1 - full.history.best_epochs[0] == 3
    # interrupted after 4 epochs, then resumed: same history as the uninterrupted run
    part = fit_loop(_Gauss(), _mse, (x,), seed=2, checkpoint_dir=tmp_path, **kw | {"epochs": 4})
    assert len(part.history.epochs) == 4
    resumed = fit_loop(_Gauss(), _mse, (x,), seed=2, checkpoint_dir=tmp_path, **kw)
    np.testing.assert_allclose(resumed.history.val_loss, full.history.val_loss, rtol=1e-6)
    assert not list(tmp_path.glob("*.tmp"))
    with pytest.raises(CheckpointError, match="different model or settings"):
        fit_loop(_Gauss(), _mse, (x,), seed=2, checkpoint_dir=tmp_path, **kw | {"batch_size": 7})
    with pytest.raises(CheckpointError, match="data_sha1"):
        fit_loop(_Gauss(), _mse, (x + 1.0,), seed=2, checkpoint_dir=tmp_path, **kw)
    (tmp_path / "fit_loop.pt").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="corrupt"):
        fit_loop(_Gauss(), _mse, (x,), seed=2, checkpoint_dir=tmp_path, **kw)


def test_fit_loop_lr_plateau_drops_the_rate_and_resumes(tmp_path, monkeypatch):
    x = np.random.default_rng(0).normal(3.0, 1.0, (500, 1))
    kw = {"epochs": 12, "batch_size": 50, "learning_rate": 0.5, "patience": None,
          "device": "cpu", "lr_patience": 1, "lr_factor": 0.5}  # fmt: skip
    rates = []
    plateau = torch.optim.lr_scheduler.ReduceLROnPlateau

    class Spy(plateau):
        def step(self, metrics):
            super().step(metrics)
            rates.append(self.optimizer.param_groups[0]["lr"])

    monkeypatch.setattr(torch.optim.lr_scheduler, "ReduceLROnPlateau", Spy)
    full = fit_loop(_Gauss(), _mse, (x,), seed=2, **kw)
    assert rates[0] == 0.5
    assert min(rates) < 0.5  # the noisy loss plateaus at lr 0.5, so the rate drops
    h = full.history
    stalls = [e for e in range(2, 12) if h.val_loss[e - 1] >= h.val_loss[: e - 1].min()]
    assert stalls  # ... after an epoch without improvement
    # the scheduler state is checkpointed: interrupted + resumed = uninterrupted
    fit_loop(_Gauss(), _mse, (x,), seed=2, checkpoint_dir=tmp_path, **kw | {"epochs": 5})
    resumed = fit_loop(_Gauss(), _mse, (x,), seed=2, checkpoint_dir=tmp_path, **kw)
    np.testing.assert_allclose(resumed.history.val_loss, h.val_loss, rtol=1e-6)
    with pytest.raises(InputError, match="lr_factor"):
        fit_loop(_Gauss(), _mse, (x,), **kw | {"lr_factor": 1.5})


def test_fit_loop_cosine_schedule_warms_up_anneals_and_resumes(tmp_path, monkeypatch):
    from sideband.background.training import cosine_factor

    assert cosine_factor(0.0, 10, 2) < 0.01
    assert cosine_factor(1.0, 10, 2) == pytest.approx(0.5, abs=1e-3)
    assert cosine_factor(2.0, 10, 2) == pytest.approx(1.0)
    assert cosine_factor(6.0, 10, 2) == pytest.approx(0.5)
    assert cosine_factor(10.0, 10, 2) == pytest.approx(0.0, abs=1e-12)
    x = np.random.default_rng(0).normal(3.0, 1.0, (500, 1))
    kw = {"epochs": 8, "batch_size": 50, "learning_rate": 0.5, "patience": None,
          "device": "cpu", "lr_cosine": True, "warmup_epochs": 2}  # fmt: skip
    seen = []
    adamw = torch.optim.AdamW

    class Spy(adamw):
        def step(self, *a, **k):
            seen.append(self.param_groups[0]["lr"])
            return super().step(*a, **k)

    monkeypatch.setattr(torch.optim, "AdamW", Spy)
    full = fit_loop(_Gauss(), _mse, (x,), seed=2, **kw)
    rates = np.array(seen)
    assert len(rates) == 8 * 8  # 400 training rows / 50 per batch, 8 epochs
    assert rates[0] < 0.01
    assert rates.max() == pytest.approx(0.5, rel=0.02)
    assert 14 <= np.argmax(rates) <= 16  # end of the 2 warm-up epochs
    assert rates[-1] < 0.01  # annealed to ~0 at the end

    # a run killed after 3 epochs resumes on the same schedule: same losses as uninterrupted
    def kill(epoch: int) -> None:
        if epoch == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit_loop(_Gauss(), _mse, (x,), seed=2, checkpoint_dir=tmp_path, on_epoch_start=kill, **kw)
    resumed = fit_loop(_Gauss(), _mse, (x,), seed=2, checkpoint_dir=tmp_path, **kw)
    np.testing.assert_allclose(resumed.history.val_loss, full.history.val_loss, rtol=1e-6)
    # another length is another schedule: the checkpoint is refused
    with pytest.raises(CheckpointError, match="lr_cosine"):
        fit_loop(_Gauss(), _mse, (x,), seed=2, checkpoint_dir=tmp_path, **kw | {"epochs": 9})
    with pytest.raises(InputError, match="one learning-rate schedule"):
        fit_loop(_Gauss(), _mse, (x,), **kw | {"lr_patience": 2})
    with pytest.raises(InputError, match="warmup_epochs"):
        fit_loop(_Gauss(), _mse, (x,), **kw | {"lr_cosine": False})


def test_fit_loop_nan_loss_names_epoch_and_batch():
    calls = {"n": 0}

    def loss(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
        calls["n"] += model.training  # count training batches only: 10 per epoch
        out = model(x)
        return out * float("nan") if calls["n"] == 13 else out  # epoch 1, batch 2

    x = np.random.default_rng(0).normal(size=(1000, 1))
    with pytest.raises(TrainingError, match=r"epoch 1, batch 2.*lower the learning rate"):
        fit_loop(_Gauss(), loss, (x,), val_data=(x[:10],), batch_size=100, device="cpu")


# --------------------------------------------------------------------------- CATHODE
def test_cathode_fitted_state(fitted):
    h = fitted.history_
    assert fitted.n_features_in_ == 2
    np.testing.assert_array_equal(h.epochs, np.arange(len(h.val_loss)))
    assert len(fitted.flows_) == 3
    np.testing.assert_array_equal(fitted.best_epochs_, np.argsort(h.val_loss, kind="stable")[:3])
    assert fitted.flow_ is fitted.flows_[0]
    assert h.val_loss.min() < h.val_loss[0]


def test_cathode_conditional_toy_is_learned(fitted):
    # trained on sidebands only; m = 3500 GeV is an interpolation into the SR
    for mass in (3150.0, 3500.0, 3850.0):
        s = fitted.sample(np.full(4000, mass), seed=1)
        assert s[:, 0].mean() == pytest.approx(SLOPE * (mass - 3500.0) / 500.0, abs=0.2)
        assert s[:, 0].std() == pytest.approx(1.0, abs=0.15)
        assert s[:, 1].mean() == pytest.approx(2.0, abs=0.25)  # Gamma(2, 1)
        assert s[:, 1].min() > fitted.preprocessing_.steps_[0].low_[1]


def test_cathode_sample_shape_dtype_seed(fitted):
    m = np.linspace(3300.0, 3700.0, 500)
    a = fitted.sample(m, seed=7)
    assert a.shape == (500, 2)
    assert a.dtype == np.float64
    np.testing.assert_array_equal(a, fitted.sample(m, seed=7))
    np.testing.assert_array_equal(fitted.sample(m), fitted.sample(m))  # default seed from `seed`
    assert not np.array_equal(a, fitted.sample(m, seed=8))
    kde = KDEMassSampler().fit(m)
    b, mb = fitted.sample(300, mass_sampler=kde, seed=2, return_mass=True)
    assert b.shape == (300, 2)
    assert mb.shape == (300,)
    assert ((mb >= 3300.0) & (mb <= 3700.0)).all()
    with pytest.raises(InputError, match="mass_sampler"):
        fitted.sample(10)


def test_cathode_latent_roundtrip_and_gaussian(fitted):
    X, m = _toy(3000, 9, sidebands=False)
    z = fitted.transform(X, m)
    assert z.shape == X.shape
    ok = fitted.preprocessing_.in_range(X)  # events outside the training range are clipped
    assert ok.mean() > 0.99
    np.testing.assert_allclose(fitted.inverse_transform(z[ok], m[ok]), X[ok], atol=1e-4 * 10)
    # background maps to a standard normal at every mass (LaCATHODE's premise), loosely
    assert np.abs(z.mean(0)).max() < 0.15
    assert np.abs(z.std(0) - 1).max() < 0.15
    zz = np.random.default_rng(0).normal(size=(200, 2))
    mm = np.full(200, 3500.0)
    np.testing.assert_allclose(
        fitted.transform(fitted.inverse_transform(zz, mm), mm), zz, atol=1e-4
    )


def test_cathode_log_prob_is_change_of_variables(fitted):
    """log p(x|m) = log N(T(x)) + log|det dT/dx| with T = flow o preprocessing; the Jacobian
    from finite differences of `transform` and, for the flow part, from autograd."""
    X, m = _toy(5, 4, sidebands=False)
    lp = fitted.log_prob(X, m)
    member_lp = np.stack([_member_log_prob(fitted, k, X, m) for k in range(3)])
    np.testing.assert_allclose(lp, np.log(np.exp(member_lp).mean(0)), rtol=1e-5)
    base = stats.norm.logpdf(fitted.transform(X, m)).sum(1)
    flow = copy.deepcopy(fitted.flow_).double()
    h = 1e-4
    for i in range(len(X)):
        jac = np.empty((2, 2))
        for j in range(2):
            e = np.zeros(2)
            e[j] = h
            mi = m[i : i + 1]
            d = fitted.transform((X[i] + e)[None], mi) - fitted.transform((X[i] - e)[None], mi)
            jac[:, j] = d[0] / (2 * h)
        fd = base[i] + np.log(abs(np.linalg.det(jac)))
        assert member_lp[0, i] == pytest.approx(fd, abs=2e-2)
        # autograd Jacobian of the flow map at the preprocessed point vs zuko's own ladj
        zp = torch.as_tensor(fitted.preprocessing_.transform(X[i : i + 1]), dtype=torch.float64)
        c = torch.as_tensor([[(m[i] - fitted.mass_mean_gev_) / fitted.mass_std_gev_]]).double()
        bijection = flow(c).transform
        jac_ad = torch.autograd.functional.jacobian(bijection, zp)
        _, ladj = bijection.call_and_ladj(zp)
        logdet = torch.linalg.slogdet(jac_ad[0, :, 0, :]).logabsdet
        assert float(ladj) == pytest.approx(float(logdet), abs=1e-8)


def _member_log_prob(t: CathodeTemplate, k: int, X: np.ndarray, m: np.ndarray) -> np.ndarray:
    flows = t.flows_
    try:
        t.flows_ = [flows[k]]
        return t.log_prob(X, m)
    finally:
        t.flows_ = flows


def test_cathode_density_integrates_to_one(fitted):
    pre = fitted.preprocessing_.steps_[0]
    lo, hi = pre.low_, pre.high_
    g0 = np.linspace(lo[0], hi[0], 241)
    g1 = np.linspace(lo[1], hi[1], 401)
    xx, yy = np.meshgrid(g0, g1, indexing="ij")
    pts = np.column_stack([xx.ravel(), yy.ravel()])
    for mass in (3200.0, 3500.0):
        dens = np.exp(fitted.log_prob(pts, np.full(len(pts), mass))).reshape(xx.shape)
        total = np.trapezoid(np.trapezoid(dens, g1, axis=1), g0)
        assert total == pytest.approx(1.0, abs=0.01)


def test_cathode_save_load_roundtrip(fitted, tmp_path, toy_data):
    X, m = toy_data
    path = tmp_path / "sub" / "cathode.pt"
    path.parent.mkdir()
    fitted.save(path)
    assert not list(path.parent.glob("*.tmp"))
    loaded = CathodeTemplate.load(path, device="cpu")
    np.testing.assert_array_equal(
        loaded.log_prob(X[:200], m[:200]), fitted.log_prob(X[:200], m[:200])
    )
    np.testing.assert_array_equal(loaded.sample(m[:200], seed=3), fitted.sample(m[:200], seed=3))
    np.testing.assert_array_equal(loaded.best_epochs_, fitted.best_epochs_)
    np.testing.assert_array_equal(loaded.history_.val_loss, fitted.history_.val_loss)
    assert loaded.get_params() == fitted.get_params() | {"device": "cpu"}


def test_cathode_load_errors(tmp_path, fitted):
    with pytest.raises(CheckpointError, match="no saved CATHODE template"):
        CathodeTemplate.load(tmp_path / "missing.pt")
    bad = tmp_path / "corrupt.pt"
    bad.write_bytes(b"\x80\x02not a torch file")
    with pytest.raises(CheckpointError, match="corrupt"):
        CathodeTemplate.load(bad)
    good = tmp_path / "good.pt"
    fitted.save(good)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[:1000])
    with pytest.raises(CheckpointError):
        CathodeTemplate.load(truncated)
    other = tmp_path / "other.pt"
    torch.save({"format": "something else"}, other)
    with pytest.raises(CheckpointError, match="not a saved sideband CathodeTemplate"):
        CathodeTemplate.load(other)
    payload = torch.load(good, weights_only=True)
    payload["params"]["hidden_features"] = (16, 16)  # does not match the stored weights
    mismatched = tmp_path / "mismatched.pt"
    torch.save(payload, mismatched)
    with pytest.raises(CheckpointError, match="does not match"):
        CathodeTemplate.load(mismatched)


def test_cathode_input_errors(toy_data):
    X, m = toy_data
    with pytest.raises(NotFittedError):
        CathodeTemplate().sample(np.full(3, 3500.0))
    Xn = X.copy()
    Xn[5, 1] = np.nan
    with pytest.raises(InputError, match="NaN"):
        _small().fit(Xn, m)
    mn = m.copy()
    mn[2] = np.inf
    with pytest.raises(InputError, match="NaN/inf"):
        _small().fit(X, mn)
    with pytest.raises(InputError, match="TeV"):
        _small().fit(X, m / 1000.0)
    with pytest.raises(InputError, match="at least 100"):
        _small().fit(X[:60], m[:60])
    with pytest.raises(InputError, match="rows"):
        _small().fit(X, m[:-1])
    with pytest.raises(InputError, match="2-D"):
        _small().fit(X[:, 0], m)
    with pytest.raises(InputError, match="both X_val and m_val"):
        _small().fit(X, m, X_val=X[:10])


def test_cathode_wrong_inputs_after_fit(fitted):
    with pytest.raises(InputError, match="fitted on 2"):
        fitted.log_prob(np.zeros((3, 3)), np.full(3, 3500.0))
    with pytest.raises(InputError, match="TeV"):
        fitted.sample(np.full(3, 3.5))


def test_cathode_nan_loss_raises_training_error(toy_data):
    X, m = toy_data
    with pytest.raises(TrainingError, match=r"epoch \d+, batch \d+"):
        _small(learning_rate=1e12, epochs=3, seed=0).fit(X[:1000], m[:1000])


def test_cathode_explicit_validation_and_nsf(toy_data):
    X, m = toy_data
    torch_state = torch.random.get_rng_state()
    t = _small(flow="nsf", epochs=1, seed=0).fit(X[:800], m[:800], X[800:1000], m[800:1000])
    t.sample(m[:5])
    assert torch.equal(torch.random.get_rng_state(), torch_state)  # nothing seeds globally
    assert t.history_.epochs.tolist() == [0]
    lp = t.log_prob(X[:10], m[:10])
    assert lp.shape == (10,)
    assert np.isfinite(lp).all()
    # preprocessing was fitted on the 800 training events only
    lo = X[:800].min(0) - 1e-3 * (X[:800].max(0) - X[:800].min(0))
    np.testing.assert_allclose(t.preprocessing_.steps_[0].low_, lo)


def test_import_background_is_lazy():
    code = (
        "import sys, sideband.background as b; b.KDEMassSampler; b.LogitScaler; "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parent)


@pytest.mark.gpu
def test_cathode_on_cuda_matches_cpu_reload(tmp_path, toy_data):
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    X, m = toy_data
    t = _small(device="cuda", epochs=2, seed=0).fit(X[:2000], m[:2000])
    assert t.device_.type == "cuda"
    s = t.sample(m[:100], seed=1)
    assert s.shape == (100, 2)
    t.save(tmp_path / "c.pt")
    cpu = CathodeTemplate.load(tmp_path / "c.pt", device="cpu")
    np.testing.assert_allclose(
        cpu.log_prob(X[:100], m[:100]), t.log_prob(X[:100], m[:100]), atol=1e-4
    )
    np.testing.assert_allclose(cpu.sample(m[:100], seed=1), s, atol=1e-4)
