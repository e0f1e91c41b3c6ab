"""Tests of sideband.scoring.mlp.MLPEnsemble and of HGBEnsemble's explicit validation set."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import norm
from sklearn.base import clone
from sklearn.metrics import log_loss, roc_auc_score

from sideband.errors import CheckpointError, InputError, NotFittedError
from sideband.scoring.classifiers import HGBEnsemble, event_weights
from sideband.scoring.mlp import MLPEnsemble

# Small and single-threaded: a busy 2-core machine makes torch's and HGB's threads fight.
SMALL = {
    "hidden": (32, 32),
    "n_epochs": 12,
    "n_best": 3,
    "batch_size": 128,
    "learning_rate": 3e-3,
    "device": "cpu",
    "n_threads": 1,
}
HGB_SMALL = {"n_members": 3, "max_iter": 100, "n_threads": 1}


def gaussians(n0: int, n1: int, shift: float, rng: np.random.Generator, d: int = 4):
    """Label 0 ~ N(0, 1), label 1 ~ N(shift, 1) in every one of the d features."""
    X = rng.normal(size=(n0 + n1, d))
    X[n0:] += shift
    return X, np.r_[np.zeros(n0, np.int64), np.ones(n1, np.int64)]


def optimal_auc(shift: float, d: int) -> float:
    """AUC of the likelihood ratio for N(0, 1) vs N(shift, 1) in d dimensions:
    the projection on the mean difference separates the classes by shift * sqrt(d)."""
    return float(norm.cdf(shift * np.sqrt(d) / np.sqrt(2.0)))


def mann_whitney_sigma(n1: int, n2: int) -> float:
    """Standard deviation of the AUC of a score independent of the label (no ties)."""
    return float(np.sqrt((n1 + n2 + 1) / (12.0 * n1 * n2)))


@pytest.fixture(scope="module")
def toy():
    """2k training events, 1k validation events and 20k test events, shift 1.0 in 4 features."""
    rng = np.random.default_rng(11)
    X, y = gaussians(1000, 1000, 1.0, rng)
    Xv, yv = gaussians(500, 500, 1.0, rng)
    Xt, yt = gaussians(10_000, 10_000, 1.0, rng)
    return X, y, Xv, yv, Xt, yt


@pytest.fixture(scope="module")
def fitted(toy):
    X, y, *_ = toy
    return MLPEnsemble(**SMALL, random_state=0).fit(X, y)


# --------------------------------------------------------------------------- performance


def test_mlp_reaches_optimal_auc_on_gaussians(toy, fitted):
    _, _, _, _, Xt, yt = toy
    best = optimal_auc(1.0, 4)  # 0.921
    proba = fitted.predict_proba(Xt)
    assert proba.shape == (len(Xt), 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    auc = roc_auc_score(yt, proba[:, 1])
    assert auc > 0.7
    assert auc == pytest.approx(best, abs=0.03)
    np.testing.assert_array_equal(fitted.decision_function(Xt), proba[:, 1])
    np.testing.assert_array_equal(fitted.score(Xt), proba[:, 1])
    np.testing.assert_array_equal(fitted.predict(Xt), (proba[:, 1] > 0.5).astype(np.int64))
    # with y, score() keeps scikit-learn's meaning (accuracy); the optimal one is Phi(1) = 0.84
    assert fitted.score(Xt, yt) > 0.8
    np.testing.assert_array_equal(fitted.classes_, [0, 1])
    assert fitted.n_features_in_ == 4


def test_mlp_with_explicit_validation_reaches_optimal_auc(toy):
    X, y, Xv, yv, Xt, yt = toy
    model = MLPEnsemble(**SMALL, random_state=1).fit(X, y, X_val=Xv, y_val=yv)
    auc = roc_auc_score(yt, model.score(Xt))
    assert auc == pytest.approx(optimal_auc(1.0, 4), abs=0.03)
    # the standardisation comes from the training rows only
    np.testing.assert_allclose(model.mean_, X.mean(axis=0))
    np.testing.assert_allclose(model.std_, X.std(axis=0))


def test_hgb_with_explicit_validation_reaches_optimal_auc(toy):
    X, y, Xv, yv, Xt, yt = toy
    model = HGBEnsemble(**HGB_SMALL, random_state=0).fit(X, y, X_val=Xv, y_val=yv)
    auc = roc_auc_score(yt, model.score(Xt))
    assert auc > 0.7
    assert auc == pytest.approx(optimal_auc(1.0, 4), abs=0.03)


def test_mlp_null_auc_is_one_half():
    """Two samples of one distribution: the held-out AUC is 0.5 within 0.05 (~7 sigma)."""
    rng = np.random.default_rng(12)
    X, y = gaussians(1000, 1000, 0.0, rng)
    Xt, yt = gaussians(2000, 2000, 0.0, rng)
    scores = MLPEnsemble(**SMALL, random_state=2).fit(X, y).score(Xt)
    assert abs(roc_auc_score(yt, scores) - 0.5) < 0.05
    assert 5 * mann_whitney_sigma(2000, 2000) < 0.05


# --------------------------------------------------------------------------- training details


def test_mlp_validation_split_is_stratified_and_never_trained_on(toy, fitted):
    X, *_ = toy
    n_epochs = SMALL["n_epochs"]
    assert fitted.val_loss_.shape == (n_epochs,)
    assert fitted.train_loss_.shape == (n_epochs,)
    assert np.isfinite(fitted.val_loss_).all()
    # mean/std are those of 80% of the rows, not of all rows
    assert not np.allclose(fitted.mean_, X.mean(axis=0))
    # the training loss falls below its first value as the network learns
    assert fitted.train_loss_[-1] < fitted.train_loss_[0]


def test_mlp_best_epochs_are_argsort_of_validation_loss(fitted):
    k = SMALL["n_best"]
    np.testing.assert_array_equal(
        fitted.best_epochs_, np.argsort(fitted.val_loss_, kind="stable")[:k]
    )
    assert len(fitted.models_) == k
    assert len(set(fitted.best_epochs_.tolist())) == k


def test_mlp_models_are_the_best_epochs_weights(toy):
    """With an explicit validation set, each kept model's weighted BCE on it is the recorded
    validation loss of its epoch; predict_proba is the mean of their sigmoids."""
    X, y, Xv, yv, Xt, _ = toy
    model = MLPEnsemble(**SMALL, random_state=3).fit(X, y, X_val=Xv, y_val=yv)
    w = event_weights(yv, None, "balanced")
    z = torch.as_tensor(((Xv - model.mean_) / model.std_).astype(np.float32))
    zt = torch.as_tensor(((Xt - model.mean_) / model.std_).astype(np.float32))
    mean_p = np.zeros(len(Xt))
    with torch.no_grad():
        for epoch, net in zip(model.best_epochs_, model.models_, strict=True):
            p = torch.sigmoid(net(z).squeeze(-1)).double().numpy()
            loss = log_loss(yv, p, sample_weight=w)
            assert loss == pytest.approx(model.val_loss_[epoch], rel=1e-4)
            mean_p += torch.sigmoid(net(zt).squeeze(-1)).double().numpy()
    np.testing.assert_allclose(model.score(Xt), mean_p / len(model.models_), rtol=1e-6)


def test_mlp_deterministic_given_random_state_and_leaves_global_state(toy):
    X, y, _, _, Xt, _ = toy
    params = SMALL | {"n_epochs": 4, "n_best": 2}
    torch_state = torch.random.get_rng_state()
    numpy_state = np.random.get_state()[1].copy()  # noqa: NPY002 (the legacy global state)
    threads = torch.get_num_threads()
    a = MLPEnsemble(**params, random_state=7).fit(X, y).predict_proba(Xt)
    b = MLPEnsemble(**params, random_state=7).fit(X, y).predict_proba(Xt)
    c = MLPEnsemble(**params, random_state=8).fit(X, y).predict_proba(Xt)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert torch.equal(torch.random.get_rng_state(), torch_state)
    np.testing.assert_array_equal(np.random.get_state()[1], numpy_state)  # noqa: NPY002
    assert torch.get_num_threads() == threads


def test_mlp_sample_weight_honoured():
    """Zero weight on the label-1 rows with x < 0: the weighted label-1 density lives at x > 0.

    With balancing (label-1 total weight is half of label-0's, so it is doubled), the expected
    P(1) is 2/3 at x > 0 and 0 at x < 0; unweighted it would be 1/2 everywhere.
    """
    rng = np.random.default_rng(6)
    n = 2000
    X = rng.uniform(-1, 1, size=(2 * n, 1))
    y = np.r_[np.zeros(n, np.int64), np.ones(n, np.int64)]
    w = np.where((y == 1) & (X[:, 0] < 0), 0.0, 1.0)
    model = MLPEnsemble(**SMALL, random_state=0).fit(X, y, sample_weight=w)
    grid = np.linspace(-0.9, 0.9, 19).reshape(-1, 1)
    s = model.score(grid)
    assert s[grid[:, 0] < -0.2].max() < 0.2
    assert 0.55 < s[grid[:, 0] > 0.2].mean() < 0.78
    unweighted = MLPEnsemble(**SMALL, random_state=0).fit(X, y).score(grid)
    assert np.abs(unweighted - 0.5).max() < 0.1
    with pytest.raises(InputError, match="both classes need positive weight"):
        MLPEnsemble(**SMALL).fit(X, y, sample_weight=np.where(y == 1, 0.0, 1.0))


def test_mlp_is_a_clonable_sklearn_estimator():
    est = MLPEnsemble(hidden=(8,), n_epochs=3, n_best=2, random_state=4, device="cpu")
    params = est.get_params()
    assert "random_state" in params
    assert params["hidden"] == (8,)
    twin = clone(est)
    assert twin.get_params() == params
    assert not hasattr(twin, "models_")
    assert twin.set_params(random_state=9).random_state == 9
    assert est.random_state == 4


def test_mlp_save_load_roundtrip(tmp_path, toy, fitted):
    _, _, _, _, Xt, _ = toy
    path = tmp_path / "sub" / "mlp.pt"
    fitted.save(path)
    assert path.is_file()
    assert [p.name for p in path.parent.iterdir()] == ["mlp.pt"]  # no temp file left
    loaded = MLPEnsemble.load(path, device="cpu")
    np.testing.assert_array_equal(loaded.predict_proba(Xt), fitted.predict_proba(Xt))
    np.testing.assert_array_equal(loaded.best_epochs_, fitted.best_epochs_)
    np.testing.assert_array_equal(loaded.val_loss_, fitted.val_loss_)
    np.testing.assert_array_equal(loaded.train_loss_, fitted.train_loss_)
    np.testing.assert_array_equal(loaded.mean_, fitted.mean_)
    assert loaded.get_params() == fitted.get_params()


def test_mlp_load_rejects_bad_files(tmp_path, fitted):
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"this is not a torch file")
    with pytest.raises(CheckpointError, match=r"corrupt\.pt.*refit and save"):
        MLPEnsemble.load(corrupt)
    other = tmp_path / "other.pt"
    torch.save({"format": "something else", "weights": torch.zeros(3)}, other)
    with pytest.raises(CheckpointError, match="not a saved sideband MLPEnsemble"):
        MLPEnsemble.load(other)
    with pytest.raises(CheckpointError, match="no saved MLPEnsemble"):
        MLPEnsemble.load(tmp_path / "missing.pt")
    # a saved file whose weights do not fit its parameters
    good = tmp_path / "good.pt"
    fitted.save(good)
    payload = torch.load(good, weights_only=True)
    payload["params"]["hidden"] = [5]
    torch.save(payload, good)
    with pytest.raises(CheckpointError, match="does not match an MLPEnsemble"):
        MLPEnsemble.load(good)


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("X", "y", "match"),
    [
        (np.zeros((40, 2)), np.r_[np.zeros(20), np.full(20, 2)], "0 .*and 1"),
        (np.zeros((40, 2)), np.ones(40), "both"),
        (np.r_[[[np.nan, 0.0]], np.zeros((39, 2))], np.arange(40) % 2, "NaN"),
        (np.zeros(40), np.arange(40) % 2, "2-D"),
        (np.zeros((40, 2)), np.arange(39) % 2, "shape"),
        (np.zeros((4, 2)), np.array([0, 1, 0, 1]), "leaves none"),
    ],
)
def test_mlp_fit_rejects_bad_input(X, y, match):
    with pytest.raises(InputError, match=match):
        MLPEnsemble(**SMALL).fit(X, y)


def test_mlp_rejects_bad_validation_set_and_params(toy, fitted):
    X, y, Xv, yv, *_ = toy
    model = MLPEnsemble(**SMALL)
    with pytest.raises(InputError, match=r"X_val has 3 feature column.*X has 4"):
        model.fit(X, y, X_val=Xv[:, :3], y_val=yv)
    with pytest.raises(InputError, match="both X_val and y_val"):
        model.fit(X, y, X_val=Xv)
    with pytest.raises(InputError, match="y_val holds 0 label-0"):
        model.fit(X, y, X_val=Xv[yv == 1], y_val=yv[yv == 1])
    with pytest.raises(InputError, match="sample_weight_val"):
        model.fit(X, y, sample_weight_val=np.ones(len(yv)))
    with pytest.raises(InputError, match="n_best"):
        MLPEnsemble(n_epochs=3, n_best=5).fit(X, y)
    with pytest.raises(InputError, match="hidden"):
        MLPEnsemble(hidden=(8, 0)).fit(X, y)
    with pytest.raises(InputError, match="class_weight"):
        MLPEnsemble(class_weight="auto").fit(X, y)
    with pytest.raises(InputError, match="device"):
        MLPEnsemble(**SMALL | {"device": "tpu"}).fit(X, y)
    with pytest.raises(NotFittedError, match="fit"):
        MLPEnsemble().predict_proba(X)
    with pytest.raises(InputError, match="fitted on 4"):
        fitted.score(np.zeros((3, 3)))
    with pytest.raises(InputError, match="NaN"):
        fitted.score(np.array([[np.inf, 0.0, 0.0, 0.0]]))


# --------------------------------------------------------------------------- HGB explicit validation


def test_hgb_members_stop_early_on_the_explicit_validation_set():
    rng = np.random.default_rng(13)
    X, y = gaussians(600, 600, 0.0, rng, d=2)  # nothing to learn: stops early
    Xv, yv = gaussians(300, 100, 0.0, rng, d=2)
    model = HGBEnsemble(n_members=2, max_iter=200, n_threads=1, random_state=3)
    model.fit(X, y, X_val=Xv, y_val=yv)
    w_val = event_weights(yv, None, "balanced")  # the same class balancing as the training rows
    scores = []
    for member in model.members_:
        assert member.do_early_stopping_
        assert member.n_iter_ < 200
        # the recorded validation loss is the balanced log loss on X_val, not on own rows
        p = member.predict_proba(Xv)[:, 1]
        assert -member.validation_score_[-1] == pytest.approx(
            log_loss(yv, p, sample_weight=w_val), rel=1e-6
        )
        scores.append(member.predict_proba(X)[:, 1])
    # the members still differ by seed (each trains on its own random 80% of the rows)
    assert not np.array_equal(scores[0], scores[1])


def test_hgb_explicit_validation_errors():
    rng = np.random.default_rng(14)
    X, y = gaussians(200, 200, 1.0, rng, d=2)
    Xv, yv = gaussians(50, 50, 1.0, rng, d=2)
    with pytest.raises(InputError, match=r"X_val has 3 feature column.*X has 2"):
        HGBEnsemble(**HGB_SMALL).fit(X, y, X_val=np.zeros((4, 3)), y_val=[0, 1, 0, 1])
    with pytest.raises(InputError, match="early_stopping=False"):
        HGBEnsemble(**HGB_SMALL, early_stopping=False).fit(X, y, X_val=Xv, y_val=yv)
    with pytest.raises(InputError, match="both X_val and y_val"):
        HGBEnsemble(**HGB_SMALL).fit(X, y, y_val=yv)
    with pytest.raises(InputError, match="sample_weight_val has shape"):
        HGBEnsemble(**HGB_SMALL).fit(X, y, X_val=Xv, y_val=yv, sample_weight_val=np.ones(3))
    with pytest.raises(InputError, match="validation weight per class"):
        HGBEnsemble(**HGB_SMALL).fit(
            X, y, X_val=Xv, y_val=yv, sample_weight_val=np.where(yv == 0, 0.0, 1.0)
        )


@pytest.mark.gpu
def test_mlp_on_cuda(tmp_path, toy):
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    X, y, _, _, Xt, yt = toy
    model = MLPEnsemble(**SMALL | {"device": "cuda"}, random_state=0).fit(X, y)
    assert model.device_.type == "cuda"
    scores = model.score(Xt)
    assert isinstance(scores, np.ndarray)
    assert roc_auc_score(yt, scores) == pytest.approx(optimal_auc(1.0, 4), abs=0.03)
    model.save(tmp_path / "mlp.pt")
    cpu = MLPEnsemble.load(tmp_path / "mlp.pt", device="cpu")
    np.testing.assert_allclose(cpu.score(Xt), scores, atol=1e-5)
