"""Tests of sideband.scoring: the HGB ensemble and the k-folded scoring."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.metrics import roc_auc_score

from sideband.errors import InputError, NotFittedError
from sideband.scoring import HGBEnsemble, KFoldResult, efficiency_threshold, score_kfold

DATA = Path(__file__).parents[1].parent / "shared" / "data"

# HGB's OpenMP threads oversubscribe a busy 2-core machine (30x slower); one thread is fastest.
SMALL = {"n_members": 2, "max_iter": 30, "n_threads": 1}


def mann_whitney_sigma(n1: int, n2: int) -> float:
    """Standard deviation of the AUC of a score independent of the label (no ties)."""
    return float(np.sqrt((n1 + n2 + 1) / (12.0 * n1 * n2)))


def gaussians(n0: int, n1: int, shift: float, rng: np.random.Generator, d: int = 2):
    X0 = rng.normal(size=(n0, d))
    X1 = rng.normal(size=(n1, d))
    X1[:, 0] += shift
    return np.r_[X0, X1], np.r_[np.zeros(n0, np.int64), np.ones(n1, np.int64)]


# --------------------------------------------------------------------------- HGBEnsemble


def test_hgb_learns_separable_problem():
    rng = np.random.default_rng(1)
    X, y = gaussians(800, 800, 4.0, rng)
    Xt, yt = gaussians(1000, 1000, 4.0, rng)
    model = HGBEnsemble(**SMALL, random_state=0).fit(X, y)
    assert len(model.members_) == 2
    assert model.n_features_in_ == 2
    np.testing.assert_array_equal(model.classes_, [0, 1])
    proba = model.predict_proba(Xt)
    assert proba.shape == (2000, 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_array_equal(model.score(Xt), proba[:, 1])
    np.testing.assert_array_equal(model.decision_function(Xt), proba[:, 1])
    assert roc_auc_score(yt, model.score(Xt)) > 0.95
    # with y, score() keeps scikit-learn's meaning (accuracy)
    assert model.score(Xt, yt) > 0.9


def test_hgb_members_stop_early_on_held_out_rows():
    rng = np.random.default_rng(2)
    X, y = gaussians(500, 500, 0.0, rng)  # nothing to learn: validation loss stops improving
    model = HGBEnsemble(n_members=2, max_iter=200, n_threads=1, random_state=3).fit(X, y)
    for member in model.members_:
        assert member.do_early_stopping_
        assert member.n_iter_ < 200
        assert member.validation_fraction == pytest.approx(0.2)


def test_hgb_deterministic_given_random_state():
    rng = np.random.default_rng(3)
    X, y = gaussians(400, 400, 1.0, rng)
    Xt, _ = gaussians(200, 200, 1.0, rng)
    a = HGBEnsemble(**SMALL, random_state=7).fit(X, y).score(Xt)
    b = HGBEnsemble(**SMALL, random_state=7).fit(X, y).score(Xt)
    c = HGBEnsemble(**SMALL, random_state=8).fit(X, y).score(Xt)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    # the members differ from each other (own seeds, own validation splits)
    m = HGBEnsemble(**SMALL, random_state=7).fit(X, y)
    s0, s1 = (mem.predict_proba(Xt)[:, 1] for mem in m.members_)
    assert not np.array_equal(s0, s1)


def test_hgb_null_auc_within_mann_whitney_band():
    """Two samples of one distribution: the AUC on fresh events is 0.5 within 3 sigma."""
    rng = np.random.default_rng(4)
    X, y = gaussians(1500, 1500, 0.0, rng, d=3)
    Xt, yt = gaussians(2000, 2000, 0.0, rng, d=3)
    scores = HGBEnsemble(**SMALL, random_state=1).fit(X, y).score(Xt)
    sigma = mann_whitney_sigma(2000, 2000)
    assert abs(roc_auc_score(yt, scores) - 0.5) < 3 * sigma


def test_hgb_balances_oversampled_template():
    """Template (label 0) oversampled 4x vs data, same distribution: balanced P(1) ~ 0.5."""
    rng = np.random.default_rng(5)
    X, y = gaussians(2000, 500, 0.0, rng, d=1)
    Xt = rng.normal(size=(500, 1))
    balanced = HGBEnsemble(**SMALL, random_state=0).fit(X, y).score(Xt)
    raw = HGBEnsemble(**SMALL, class_weight=None, random_state=0).fit(X, y).score(Xt)
    assert abs(balanced.mean() - 0.5) < 0.05
    assert abs(raw.mean() - 0.2) < 0.05


def test_hgb_sample_weight_honoured():
    """Zero weight on the label-1 rows with x < 0: the weighted label-1 density lives at x > 0.

    With balancing (label-1 total weight is half of label-0's, so it is doubled), the expected
    P(1) is 2/3 at x > 0 and 0 at x < 0; unweighted it would be 1/2 everywhere.
    """
    rng = np.random.default_rng(6)
    n = 3000
    X = rng.uniform(-1, 1, size=(2 * n, 1))
    y = np.r_[np.zeros(n, np.int64), np.ones(n, np.int64)]
    w = np.where((y == 1) & (X[:, 0] < 0), 0.0, 1.0)
    model = HGBEnsemble(**SMALL, random_state=0).fit(X, y, sample_weight=w)
    grid = np.linspace(-0.9, 0.9, 19).reshape(-1, 1)
    s = model.score(grid)
    assert s[grid[:, 0] < -0.1].max() < 0.15
    assert 0.55 < s[grid[:, 0] > 0.1].mean() < 0.78


def test_hgb_is_a_clonable_sklearn_estimator():
    est = HGBEnsemble(n_members=3, max_iter=10, random_state=4)
    twin = clone(est)
    assert twin.get_params() == est.get_params()
    assert not hasattr(twin, "members_")
    assert twin.set_params(random_state=9).random_state == 9


@pytest.mark.parametrize(
    ("X", "y", "match"),
    [
        (np.zeros((4, 2)), np.array([0, 1, 2, 1]), "0 .*and 1"),
        (np.zeros((4, 2)), np.array([0.0, 1.0, 0.5, 1.0]), "0 .*and 1"),
        (np.zeros((4, 2)), np.array([1, 1, 1, 1]), "both"),
        (
            np.array([[0.0, np.nan], [1.0, 1.0], [2.0, 2.0], [3.0, 3.0]]),
            np.array([0, 1, 0, 1]),
            "NaN",
        ),
        (np.zeros(4), np.array([0, 1, 0, 1]), "2-D"),
        (np.zeros((4, 2)), np.array([0, 1, 0]), "shape"),
    ],
)
def test_hgb_fit_rejects_bad_input(X, y, match):
    with pytest.raises(InputError, match=match):
        HGBEnsemble(**SMALL).fit(X, y)


def test_hgb_predict_errors():
    rng = np.random.default_rng(7)
    X, y = gaussians(200, 200, 1.0, rng)
    with pytest.raises(NotFittedError, match="fit"):
        HGBEnsemble().predict_proba(X)
    model = HGBEnsemble(n_members=1, max_iter=5, n_threads=1, random_state=0).fit(X, y)
    with pytest.raises(InputError, match="fitted on 2"):
        model.score(np.zeros((3, 3)))
    with pytest.raises(InputError, match="NaN"):
        model.score(np.array([[np.inf, 0.0]]))
    with pytest.raises(InputError, match="sample_weight"):
        HGBEnsemble(**SMALL).fit(X, y, sample_weight=np.ones(3))
    with pytest.raises(InputError, match="n_members"):
        HGBEnsemble(n_members=0).fit(X, y)


# --------------------------------------------------------------------------- score_kfold


class Recorder(ClassifierMixin, BaseEstimator):
    """Records the rows (by the id in column 0) it trains on and scores; scores = its own tag."""

    def __init__(self, random_state=None):
        self.random_state = random_state

    def fit(self, X, y):
        self.trained_ids_ = {int(i): int(lab) for i, lab in zip(X[:, 0], y, strict=True)}
        self.scored_ids_ = []
        self.classes_ = np.array([0, 1])
        self.n_features_in_ = X.shape[1]
        self.tag_ = (self.random_state % 1000 + 1) / 1002.0
        return self

    def predict_proba(self, X):
        self.scored_ids_.extend(int(i) for i in X[:, 0])
        p = np.full(len(X), self.tag_)
        return np.column_stack([1 - p, p])


def ids_features(n: int, offset: int, rng: np.random.Generator) -> np.ndarray:
    return np.column_stack([np.arange(offset, offset + n), rng.normal(size=n)])


def test_kfold_each_event_scored_once_by_a_model_that_never_saw_it():
    rng = np.random.default_rng(8)
    n_data, n_tmpl, k = 103, 257, 5
    data = ids_features(n_data, 0, rng)
    tmpl = ids_features(n_tmpl, 10_000, rng)
    res = score_kfold(data, tmpl, classifier=Recorder(), n_folds=k, seed=3)
    assert isinstance(res, KFoldResult)
    assert res.n_folds == k
    assert res.scores.shape == (n_data,)
    assert res.template_scores.shape == (n_tmpl,)
    # each fold model has its own seed
    assert len({m.random_state for m in res.models}) == k
    # every data and template row is scored exactly once, across all models
    scored = np.concatenate([m.scored_ids_ for m in res.models])
    np.testing.assert_array_equal(
        np.sort(scored), np.r_[np.arange(n_data), 10_000 + np.arange(n_tmpl)]
    )
    for ids, fold, scores, label in (
        (np.arange(n_data), res.fold, res.scores, 1),
        (10_000 + np.arange(n_tmpl), res.template_fold, res.template_scores, 0),
    ):
        for j, f in zip(ids, fold, strict=True):
            scorer = res.models[f]
            assert int(j) not in scorer.trained_ids_
            assert int(j) in scorer.scored_ids_
            # every other model trained on it, with the right label
            for i, m in enumerate(res.models):
                if i != f:
                    assert m.trained_ids_[int(j)] == label
        np.testing.assert_array_equal(scores, [res.models[f].tag_ for f in fold])


def test_kfold_folds_balanced_and_deterministic():
    rng = np.random.default_rng(9)
    data, tmpl = ids_features(103, 0, rng), ids_features(257, 10_000, rng)
    a = score_kfold(data, tmpl, classifier=Recorder(), n_folds=4, seed=1)
    b = score_kfold(data, tmpl, classifier=Recorder(), n_folds=4, seed=1)
    c = score_kfold(data, tmpl, classifier=Recorder(), n_folds=4, seed=2)
    for fold in (a.fold, a.template_fold):
        counts = np.bincount(fold, minlength=4)
        assert counts.max() - counts.min() <= 1
    np.testing.assert_array_equal(a.fold, b.fold)
    np.testing.assert_array_equal(a.template_fold, b.template_fold)
    np.testing.assert_array_equal(a.scores, b.scores)
    assert not np.array_equal(a.fold, c.fold)
    # the folds are a random deal, not contiguous blocks
    assert not np.array_equal(a.fold, np.sort(a.fold))


def test_kfold_predict_is_mean_over_fold_models():
    rng = np.random.default_rng(10)
    data, tmpl = ids_features(50, 0, rng), ids_features(60, 10_000, rng)
    res = score_kfold(data, tmpl, classifier=Recorder(), n_folds=3, seed=0)
    out = res.predict(ids_features(7, 50_000, rng))
    assert out.shape == (7,)
    np.testing.assert_allclose(out, np.mean([m.tag_ for m in res.models]))
    with pytest.raises(InputError, match="fitted on 2"):
        res.predict(np.zeros((2, 3)))


class Crashing(Recorder):
    """A Recorder whose fit raises once ``FITS["left"]`` fits have run (a killed job)."""

    def fit(self, X, y):
        if FITS["left"] == 0:
            raise KeyboardInterrupt
        FITS["left"] -= 1
        FITS["done"] += 1
        return super().fit(X, y)


FITS = {"left": -1, "done": 0}


def test_kfold_checkpoints_resume_a_killed_run(tmp_path, monkeypatch):
    rng = np.random.default_rng(12)
    data, tmpl = ids_features(60, 0, rng), ids_features(90, 10_000, rng)
    full = score_kfold(data, tmpl, classifier=Crashing(), n_folds=4, seed=5)
    ck = tmp_path / "scoring"
    monkeypatch.setitem(FITS, "left", 2)
    with pytest.raises(KeyboardInterrupt):
        score_kfold(data, tmpl, classifier=Crashing(), n_folds=4, seed=5, checkpoint_dir=ck)
    assert sorted(p.name for p in ck.iterdir()) == ["fold_0_of_4.pkl", "fold_1_of_4.pkl"]
    monkeypatch.setitem(FITS, "left", -1)
    monkeypatch.setitem(FITS, "done", 0)
    resumed = score_kfold(data, tmpl, classifier=Crashing(), n_folds=4, seed=5, checkpoint_dir=ck)
    assert FITS["done"] == 2  # only folds 2 and 3 were trained
    np.testing.assert_array_equal(resumed.scores, full.scores)
    np.testing.assert_array_equal(resumed.template_scores, full.template_scores)
    assert [m.tag_ for m in resumed.models] == [m.tag_ for m in full.models]
    # a finished run is read back without training
    monkeypatch.setitem(FITS, "left", 0)
    again = score_kfold(data, tmpl, classifier=Crashing(), n_folds=4, seed=5, checkpoint_dir=ck)
    np.testing.assert_array_equal(again.scores, full.scores)


def test_kfold_checkpoints_of_another_run_or_corrupt_are_refused(tmp_path):
    from sideband.errors import CheckpointError

    rng = np.random.default_rng(13)
    data, tmpl = ids_features(40, 0, rng), ids_features(50, 10_000, rng)
    ck = tmp_path / "scoring"
    score_kfold(data, tmpl, classifier=Recorder(), n_folds=3, seed=1, checkpoint_dir=ck)
    with pytest.raises(CheckpointError, match=r"another run \(differing: \['seed'\]\)"):
        score_kfold(data, tmpl, classifier=Recorder(), n_folds=3, seed=2, checkpoint_dir=ck)
    # a template that differs (sampled anew, e.g. on another device): the folds are retrained
    # and their files overwritten, the result is that of a fresh run
    other = tmpl.copy()
    other[:, 1] += 1e-9
    before = {p.name: p.read_bytes() for p in ck.iterdir()}
    stale = score_kfold(data, other, classifier=Recorder(), n_folds=3, seed=1, checkpoint_dir=ck)
    assert all(p.read_bytes() != before[p.name] for p in ck.iterdir())  # all three rewritten
    fresh = score_kfold(data, other, classifier=Recorder(), n_folds=3, seed=1)
    np.testing.assert_array_equal(stale.template_scores, fresh.template_scores)
    stamps = sorted((p.name, p.stat().st_mtime_ns) for p in ck.iterdir())
    again = score_kfold(data, other, classifier=Recorder(), n_folds=3, seed=1, checkpoint_dir=ck)
    assert sorted((p.name, p.stat().st_mtime_ns) for p in ck.iterdir()) == stamps  # read back
    np.testing.assert_array_equal(again.scores, fresh.scores)
    (ck / "fold_0_of_3.pkl").write_bytes(b"not a pickle")
    with pytest.raises(CheckpointError, match=r"corrupt: delete .*fold_0_of_3\.pkl"):
        score_kfold(data, tmpl, classifier=Recorder(), n_folds=3, seed=1, checkpoint_dir=ck)
    # no temporary files are left behind
    assert all(p.suffix == ".pkl" for p in ck.iterdir())


def test_kfold_with_hgb_finds_injected_signal():
    """Data = background + a signal cluster, template = background: the out-of-fold data scores
    rank the signal above the background; the template scores look like data background."""
    rng = np.random.default_rng(11)
    bkg_data = rng.normal(size=(1200, 2))
    sig = rng.normal(loc=(2.5, 2.5), scale=0.3, size=(150, 2))
    data = np.r_[bkg_data, sig]
    is_sig = np.r_[np.zeros(1200), np.ones(150)]
    tmpl = rng.normal(size=(2400, 2))
    clf = HGBEnsemble(n_members=1, max_iter=30, n_threads=1)
    res = score_kfold(data, tmpl, classifier=clf, n_folds=3, seed=5)
    assert np.isfinite(res.scores).all()
    assert np.isfinite(res.template_scores).all()
    assert roc_auc_score(is_sig, res.scores) > 0.9
    # background in data vs template: same distribution, out-of-fold -> AUC near 0.5
    y = np.r_[np.ones(1200), np.zeros(2400)]
    s = np.r_[res.scores[:1200], res.template_scores]
    assert abs(roc_auc_score(y, s) - 0.5) < 4 * mann_whitney_sigma(1200, 2400)
    # sideband-like events (never trained on) get a mean score
    assert res.predict(sig[:5]).min() > np.median(res.scores[:1200])


def test_kfold_rejects_bad_input():
    rng = np.random.default_rng(12)
    data, tmpl = rng.normal(size=(40, 2)), rng.normal(size=(40, 2))
    with pytest.raises(InputError, match="feature"):
        score_kfold(data, tmpl[:, :1], classifier=Recorder())
    with pytest.raises(InputError, match="n_folds"):
        score_kfold(data, tmpl, classifier=Recorder(), n_folds=1)
    with pytest.raises(InputError, match="too few"):
        score_kfold(data[:5], tmpl, classifier=Recorder(), n_folds=5)
    bad = data.copy()
    bad[3, 1] = np.nan
    with pytest.raises(InputError, match="NaN"):
        score_kfold(bad, tmpl, classifier=Recorder())


# --------------------------------------------------------------------------- thresholds


@pytest.mark.parametrize("efficiency", [1.0, 0.5, 0.2, 0.1, 0.013, 0.001])
def test_efficiency_threshold_keeps_fraction(efficiency):
    s = np.random.default_rng(13).normal(size=1000)
    t = efficiency_threshold(s, efficiency)
    k = round(efficiency * 1000)
    assert int((s > t).sum()) == k
    assert int((s >= t).sum()) == k


def test_efficiency_threshold_errors():
    s = np.arange(10.0)
    for eff in (0.0, -0.1, 1.5):
        with pytest.raises(InputError, match="efficiency"):
            efficiency_threshold(s, eff)
    with pytest.raises(InputError, match="NaN"):
        efficiency_threshold(np.array([1.0, np.nan]), 0.5)
    with pytest.raises(InputError, match="non-empty"):
        efficiency_threshold(np.array([]), 0.5)


# --------------------------------------------------------------------------- real data


@pytest.mark.slow
def test_idealized_anomaly_detection_on_lhco_rnd():
    """IAD on the R&D SR: k-folded HGB, SR data (395 signal in 60k) vs pure-background reference.
    The out-of-fold score must enrich the signal (SIC at eps_B = 1e-2 well above 1)."""
    from sideband.evaluation import auc, sic_at

    folder = DATA / "lhco_rnd" / "cathode_sr"
    if not folder.is_dir():
        pytest.skip(f"{folder} not found (shared LHCO R&D data absent)")
    data = np.load(folder / "innerdata_train.npy")
    ref = np.load(folder / "innerdata_test.npy")
    ref = ref[ref[:, -1] == 0]
    feats = slice(1, 5)  # mj1, delta_mj, tau21_j1, tau21_j2
    clf = HGBEnsemble(n_members=3, max_iter=100, n_threads=1)
    res = score_kfold(data[:, feats], ref[:, feats], classifier=clf, n_folds=5, seed=0)
    labels = data[:, -1].astype(int)
    assert auc(labels, res.scores) > 0.7
    assert sic_at(labels, res.scores, 1e-2) > 2.0
