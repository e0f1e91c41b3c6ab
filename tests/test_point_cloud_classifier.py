"""Tests of sideband.scoring.point_cloud: the permutation-invariant point-cloud classifier."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from sideband.errors import CheckpointError, InputError, NotFittedError
from sideband.scoring.kfold import score_kfold
from sideband.scoring.point_cloud import (
    PointCloudClassifier,
    flatten_point_clouds,
    n_constituents_from_width,
    score_kfold_point_clouds,
    unflatten_point_clouds,
)

M = 16  # constituents per jet in the toys (the real tables have 279)
# Small and single-threaded: a busy 2-core machine makes torch's threads fight.
SMALL = {
    "hidden": 32,
    "heads": 4,
    "n_blocks": 1,
    "n_epochs": 4,
    "n_best": 2,
    "patience": None,
    "batch_size": 64,
    "learning_rate": 3e-3,
    "device": "cpu",
    "n_threads": 1,
}


def toy_clouds(
    n: int, rng: np.random.Generator, *, two_prong: np.ndarray | None = None, m: int = M
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Synthetic dijet point clouds (constituents (n, 2, m, 3), mask (n, 2, m), jets (n, 2, 5)).

    Every jet has 4..m constituents with exponential pT fractions (hardest first, zero padded).
    One-prong jets: Δη, Δφ ~ N(0, 0.1). Two-prong jets (rows where ``two_prong``): each
    constituent sits at Δη = ±0.2 (random sign) plus N(0, 0.07). The jet kinematics are drawn
    alike for both kinds, so only the constituents can separate them.
    """
    two = np.zeros(n, bool) if two_prong is None else np.asarray(two_prong, bool)
    counts = rng.integers(4, m + 1, size=(n, 2))
    mask = np.arange(m) < counts[..., None]
    pt = -np.sort(-rng.exponential(size=(n, 2, m)) * mask, axis=-1)
    pt /= pt.sum(axis=-1, keepdims=True)
    width = np.where(two, 0.07, 0.1)[:, None, None]
    sign = np.where(rng.random((n, 2, m)) < 0.5, 1.0, -1.0)
    deta = rng.normal(size=(n, 2, m)) * width + 0.2 * sign * two[:, None, None]
    dphi = rng.normal(size=(n, 2, m)) * width
    constituents = np.stack([pt, deta, dphi], axis=-1) * mask[..., None]
    jets = np.stack(
        [
            rng.normal(1500.0, 150.0, (n, 2)),
            rng.normal(0.0, 1.0, (n, 2)),
            rng.uniform(-np.pi, np.pi, (n, 2)),
            rng.normal(100.0, 20.0, (n, 2)).clip(5.0),
            counts,
        ],
        axis=-1,
    )
    return constituents.astype(np.float32), mask, jets


def toy_x(n: int, rng: np.random.Generator, two_prong: np.ndarray | None = None) -> np.ndarray:
    return flatten_point_clouds(*toy_clouds(n, rng, two_prong=two_prong))


@pytest.fixture(scope="module")
def fitted() -> tuple[PointCloudClassifier, np.ndarray, np.ndarray]:
    """A classifier trained on 1,000 toy events (half two-prong) and a held-out test set."""
    rng = np.random.default_rng(1)
    y = (rng.random(1000) < 0.5).astype(np.int64)
    clf = PointCloudClassifier(**SMALL, random_state=0).fit(toy_x(1000, rng, y == 1), y)
    y_test = np.repeat([0, 1], 400)
    return clf, toy_x(800, rng, y_test == 1), y_test


# ------------------------------------------------------------------------------ layout
def test_flatten_round_trip_and_width() -> None:
    c, mk, jets = toy_clouds(7, np.random.default_rng(0))
    X = flatten_point_clouds(c, mk, jets)
    assert X.dtype == np.float32
    assert X.shape == (7, 8 * M + 10)
    assert n_constituents_from_width(X.shape[1]) == M
    assert n_constituents_from_width(8 * 279 + 10) == 279
    c2, mk2, jets2 = unflatten_point_clouds(X)
    np.testing.assert_array_equal(c2, c)
    np.testing.assert_array_equal(mk2, mk)
    np.testing.assert_allclose(jets2, jets, rtol=1e-6)  # float32 storage of the jets


def test_bad_input_names_the_fix() -> None:
    c, mk, jets = toy_clouds(8, np.random.default_rng(0))
    with pytest.raises(InputError, match=r"\(N, 2, M, 3\)"):
        flatten_point_clouds(c[..., :2], mk, jets)
    with pytest.raises(InputError, match="mask must have shape"):
        flatten_point_clouds(c, mk[:, :, :-1], jets)
    with pytest.raises(InputError, match="8 M \\+ 10"):
        n_constituents_from_width(100)
    X = flatten_point_clouds(c, mk, jets)
    y = np.repeat([0, 1], 4)
    clf = PointCloudClassifier(**SMALL)
    with pytest.raises(InputError, match="8 M \\+ 10"):
        clf.fit(X[:, :-1], y)
    bad = X.copy()
    bad[2, 0] = np.nan
    with pytest.raises(InputError, match=r"row\(s\) \[2\]"):
        clf.fit(bad, y)
    bad = X.copy()
    bad[0, 6 * M] = 0.5  # a mask entry that is not 0/1
    with pytest.raises(InputError, match="0/1"):
        clf.fit(bad, y)
    with pytest.raises(InputError, match="jet_features"):
        PointCloudClassifier(**{**SMALL, "jet_features": ("log_pt", "phi")}).fit(X, y)
    with pytest.raises(InputError, match="divisible"):
        PointCloudClassifier(**{**SMALL, "hidden": 30}).fit(X, y)
    with pytest.raises(NotFittedError, match="not fitted"):
        clf.predict_proba(X)


# ------------------------------------------------------------------------------ invariance
def test_score_invariant_to_particle_order_jet_order_and_padding(fitted) -> None:
    clf, X, _ = fitted
    c, mk, jets = unflatten_point_clouds(X)
    c, mk, jets = c.copy(), mk.copy(), jets.copy()
    base = clf.decision_function(X)
    assert base.std() > 0.05  # a trained, non-constant score

    rng = np.random.default_rng(5)
    # permute the particle slots of every jet independently (padding slots included)
    perm = np.argsort(rng.random(mk.shape), axis=-1)
    c_p = np.take_along_axis(c, perm[..., None], axis=2)
    mk_p = np.take_along_axis(mk, perm, axis=2)
    permuted = clf.decision_function(flatten_point_clouds(c_p, mk_p, jets))
    np.testing.assert_allclose(permuted, base, atol=1e-5, rtol=0)

    swapped = clf.decision_function(flatten_point_clouds(c[:, ::-1], mk[:, ::-1], jets[:, ::-1]))
    np.testing.assert_allclose(swapped, base, atol=1e-5, rtol=0)

    garbage = c.copy()
    garbage[~mk] = rng.normal(0.0, 50.0, size=(int((~mk).sum()), 3))
    padded = clf.decision_function(flatten_point_clouds(garbage, mk, jets))
    np.testing.assert_allclose(padded, base, atol=1e-5, rtol=0)

    # the absolute azimuth does not matter either (only |Δφ| between the jets does)
    rotated = jets.copy()
    rotated[..., 2] = np.mod(rotated[..., 2] + 1.3 + np.pi, 2 * np.pi) - np.pi
    np.testing.assert_allclose(
        clf.decision_function(flatten_point_clouds(c, mk, rotated)), base, atol=1e-5, rtol=0
    )

    # ... but the scores do depend on the real constituents (the test above can fail)
    moved = c.copy()
    moved[..., 1] *= 3.0
    assert np.abs(clf.decision_function(flatten_point_clouds(moved, mk, jets)) - base).max() > 1e-2


def test_max_particles_keeps_the_invariances() -> None:
    """With max_particles the hardest constituents are picked by pT_rel, not by slot."""
    rng = np.random.default_rng(3)
    y = np.repeat([0, 1], 100)
    params = {**SMALL, "n_epochs": 1, "n_best": 1, "max_particles": 5, "random_state": 1}
    clf = PointCloudClassifier(**params).fit(toy_x(200, rng, y == 1), y)
    c, mk, jets = toy_clouds(100, rng)
    base = clf.decision_function(flatten_point_clouds(c, mk, jets))
    perm = np.argsort(rng.random(mk.shape), axis=-1)
    c_p = np.take_along_axis(c, perm[..., None], axis=2)
    mk_p = np.take_along_axis(mk, perm, axis=2)
    for variant in (
        (c_p, mk_p, jets),
        (c_p[:, ::-1], mk_p[:, ::-1], jets[:, ::-1]),
    ):
        np.testing.assert_allclose(
            clf.decision_function(flatten_point_clouds(*variant)), base, atol=1e-5, rtol=0
        )
    # constituents beyond the 5 hardest do not matter; the 5 hardest do
    soft = c.copy()
    soft[:, :, 5:, 1:] *= -1.0
    np.testing.assert_allclose(
        clf.decision_function(flatten_point_clouds(soft, mk, jets)), base, atol=1e-5, rtol=0
    )
    hard = c.copy()
    hard[:, :, :5, 1] += 0.3
    assert np.abs(clf.decision_function(flatten_point_clouds(hard, mk, jets)) - base).max() > 1e-3


def test_jets_without_constituents_score_finite(fitted) -> None:
    clf, X, _ = fitted
    c, mk, jets = (a.copy() for a in unflatten_point_clouds(X[:6]))
    mk[0, 1] = False  # one empty jet
    mk[1] = False  # two empty jets
    c[~mk] = 0.0
    s = clf.decision_function(flatten_point_clouds(c, mk, jets))
    assert np.isfinite(s).all()
    assert ((s > 0) & (s < 1)).all()


def test_scores_do_not_depend_on_batching(fitted) -> None:
    clf, X, _ = fitted
    full = clf.decision_function(X)
    one_by_one = np.concatenate([clf.decision_function(X[i : i + 1]) for i in range(20)])
    np.testing.assert_allclose(one_by_one, full[:20], atol=1e-5, rtol=0)


# ------------------------------------------------------------------------------ learning
def test_learns_two_prong_vs_one_prong(fitted) -> None:
    clf, X, y = fitted
    proba = clf.predict_proba(X)
    assert proba.shape == (len(X), 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert roc_auc_score(y, proba[:, 1]) > 0.9
    assert len(clf.models_) == SMALL["n_best"]
    assert clf.val_loss_.shape == (SMALL["n_epochs"],)
    # the n_best kept epochs are those of lowest validation loss
    np.testing.assert_array_equal(
        clf.best_epochs_, np.argsort(clf.val_loss_, kind="stable")[: SMALL["n_best"]]
    )


def test_background_only_kfold_auc_in_null_band() -> None:
    """Data and template from the same distribution: the out-of-fold AUC must be consistent
    with 0.5. Under the null the pooled out-of-fold AUC is a Mann-Whitney statistic with
    sigma = sqrt((n0 + n1 + 1) / (12 n0 n1)) = 0.0129 for n0 = n1 = 1000; we allow 4 sigma
    (0.052; a false alarm has probability 6e-5). Fold models differ, but each scores data and
    template events of its own fold alike, so that adds no bias under the null."""
    rng = np.random.default_rng(7)
    n = 1000
    data, template = toy_x(n, rng), toy_x(n, rng)
    result = score_kfold_point_clouds(
        data,
        template,
        classifier=PointCloudClassifier(**{**SMALL, "n_epochs": 3}),
        n_folds=3,
        seed=3,
    )
    y = np.r_[np.ones(n), np.zeros(n)]
    auc = roc_auc_score(y, np.r_[result.scores, result.template_scores])
    sigma = np.sqrt((2 * n + 1) / (12.0 * n * n))
    assert abs(auc - 0.5) < 4 * sigma, (auc, sigma)
    assert np.unique(result.scores).size > n // 2  # the scores are not a constant


# ------------------------------------------------------------------------------ k-fold
def test_kfold_every_event_scored_once_and_both_routes_agree() -> None:
    rng = np.random.default_rng(11)
    n_data, n_template = 90, 120
    data = toy_x(n_data, rng, two_prong=rng.random(n_data) < 0.5)
    template = toy_x(n_template, rng)
    clf = PointCloudClassifier(**{**SMALL, "n_epochs": 2, "n_best": 1, "batch_size": 32})
    mine = score_kfold_point_clouds(data, template, classifier=clf, n_folds=3, seed=4)
    generic = score_kfold(data, template, classifier=clf, n_folds=3, seed=4)
    for res in (mine, generic):
        assert res.scores.shape == (n_data,)
        assert res.template_scores.shape == (n_template,)
        assert np.isfinite(res.scores).all()
        assert np.isfinite(res.template_scores).all()
        assert ((res.scores > 0) & (res.scores < 1)).all()
        np.testing.assert_array_equal(np.bincount(res.fold, minlength=3), [30, 30, 30])
        assert res.n_folds == 3
        # event j was scored by the model of its fold, which never saw it
        for k, model in enumerate(res.models):
            rows = res.fold == k
            np.testing.assert_allclose(
                model.decision_function(data[rows]), res.scores[rows], atol=1e-6
            )
    np.testing.assert_array_equal(mine.fold, generic.fold)
    np.testing.assert_allclose(mine.scores, generic.scores, atol=1e-6)
    np.testing.assert_allclose(mine.template_scores, generic.template_scores, atol=1e-6)
    # events outside the k-fold: mean of the fold models
    assert mine.predict(template[:5]).shape == (5,)
    with pytest.raises(InputError, match="too few"):
        score_kfold_point_clouds(data[:4], template, classifier=clf, n_folds=3)


def test_rotate_validation_runs() -> None:
    rng = np.random.default_rng(12)
    data, template = toy_x(60, rng), toy_x(60, rng)
    clf = PointCloudClassifier(**{**SMALL, "n_epochs": 1, "n_best": 1, "batch_size": 16})
    res = score_kfold_point_clouds(
        data, template, classifier=clf, n_folds=3, seed=0, validation="rotate"
    )
    assert np.isfinite(res.scores).all()


# ------------------------------------------------------------------------------ persistence
def test_save_load_round_trip(fitted, tmp_path) -> None:
    clf, X, _ = fitted
    path = tmp_path / "pc.pt"
    clf.save(path)
    loaded = PointCloudClassifier.load(path, device="cpu")
    np.testing.assert_array_equal(loaded.decision_function(X), clf.decision_function(X))
    assert loaded.get_params()["jet_features"] == clf.get_params()["jet_features"]
    np.testing.assert_array_equal(loaded.best_epochs_, clf.best_epochs_)
    assert not list(tmp_path.glob("*.tmp"))  # the atomic write left no temporary file

    broken = tmp_path / "broken.pt"
    broken.write_bytes(path.read_bytes()[:200])
    with pytest.raises(CheckpointError, match="corrupt"):
        PointCloudClassifier.load(broken)
    with pytest.raises(CheckpointError, match="no saved"):
        PointCloudClassifier.load(tmp_path / "missing.pt")


def test_standardisation_uses_training_rows_and_real_constituents_only() -> None:
    rng = np.random.default_rng(4)
    y = np.repeat([0, 1], 50)
    c, mk, jets = toy_clouds(100, rng, two_prong=y == 1)
    X = flatten_point_clouds(c, mk, jets)
    X_val = toy_x(40, rng, np.repeat([False, True], 20))
    clf = PointCloudClassifier(**{**SMALL, "n_epochs": 1, "n_best": 1}).fit(
        X, y, X_val=X_val, y_val=np.repeat([0, 1], 20)
    )
    real = c[mk].astype(np.float64)
    expect = np.column_stack([np.log(real[:, 0]), real[:, 1], real[:, 2]])
    np.testing.assert_allclose(clf.part_mean_, expect.mean(axis=0), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(clf.part_std_, expect.std(axis=0), rtol=1e-4)
    log_m = np.log(jets[..., 3].astype(np.float32).astype(np.float64)).ravel()
    names = list(clf.jet_features)
    assert clf.jet_mean_[names.index("log_m")] == pytest.approx(log_m.mean(), rel=1e-6)
    assert clf.jet_std_[names.index("log_m")] == pytest.approx(log_m.std(), rel=1e-4)


def test_seeded_fits_are_reproducible() -> None:
    rng = np.random.default_rng(2)
    y = np.repeat([0, 1], 60)
    X = toy_x(120, rng, y == 1)
    params = {**SMALL, "n_epochs": 2, "n_best": 1, "batch_size": 32, "random_state": 9}
    a = PointCloudClassifier(**params).fit(X, y).decision_function(X)
    b = PointCloudClassifier(**params).fit(X, y).decision_function(X)
    np.testing.assert_array_equal(a, b)
