"""CompiledTrees (HGB trees compiled to torch tensors) against scikit-learn's own predictions."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

from sideband.errors import InputError, NotFittedError
from sideband.scoring import HGBEnsemble
from sideband.scoring.compiled import CompiledTrees
from sideband.scoring.kfold import model_scores, score_by_fold

STRATEGIES = ("bitvector", "traversal")


def _toy(n: int, d: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Two overlapping classes with a non-linear boundary (so the trees are deep)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    logit = 1.5 * np.sin(2 * X[:, 0]) + X[:, 1] * X[:, 2] - 0.5 * X[:, 3] ** 2 + 0.5
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int64)
    return X, y


@pytest.fixture(scope="module")
def ensemble() -> HGBEnsemble:
    X, y = _toy(3000, 5, seed=1)
    return HGBEnsemble(n_members=3, max_iter=40, random_state=3, n_threads=1).fit(X, y)


@pytest.fixture(scope="module")
def threshold_rows(ensemble: HGBEnsemble) -> np.ndarray:
    """Rows whose entries sit exactly on split thresholds (x == threshold must go left)."""
    rng = np.random.default_rng(7)
    thr = [[] for _ in range(5)]
    for member in ensemble.members_:
        for (p,) in member._predictors:
            nodes = p.nodes[p.nodes["is_leaf"] == 0]
            for f, t in zip(nodes["feature_idx"], nodes["num_threshold"], strict=True):
                thr[int(f)].append(t)
    return np.column_stack([rng.choice(np.asarray(t), 500) for t in thr])


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_equals_sklearn_on_random_data(ensemble, threshold_rows, strategy):
    X = np.random.default_rng(11).normal(scale=1.5, size=(4000, 5))
    X = np.concatenate([X, threshold_rows, np.nextafter(threshold_rows, np.inf)])
    ref = ensemble.predict_proba(X)[:, 1]
    compiled = CompiledTrees.from_hgb(ensemble, device="cpu", strategy=strategy)
    got = compiled.score(X)
    assert compiled.strategy == strategy
    assert compiled.n_trees == sum(m.n_iter_ for m in ensemble.members_)
    assert got.dtype == np.float64
    assert got.shape == (len(X),)
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-12)
    # the scores vary (a constant would also "match" a constant model)
    assert got.std() > 0.05


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_equals_sklearn_on_trained_toy_ensemble(strategy):
    rng = np.random.default_rng(5)
    n = 2000
    y = np.r_[np.zeros(n), np.ones(n)].astype(np.int64)
    X = np.r_[rng.normal(0.0, 1.0, (n, 3)), rng.normal(0.7, 1.2, (n, 3))]
    ens = HGBEnsemble(n_members=4, max_iter=60, random_state=0, n_threads=1).fit(X, y)
    X_test = np.r_[rng.normal(0.0, 1.0, (1500, 3)), rng.normal(0.7, 1.2, (1500, 3))]
    compiled = CompiledTrees.from_hgb(ens, device="cpu", strategy=strategy)
    got = compiled.predict_proba(X_test)
    ref = ens.predict_proba(X_test)
    assert got.shape == (len(X_test), 2)
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-12)
    # drop-in for the k-fold code's scorer
    np.testing.assert_allclose(model_scores(compiled, X_test), ref[:, 1], rtol=0, atol=1e-12)
    # a classifier that learned something: the signal-like half scores higher
    assert got[1500:, 1].mean() > got[:1500, 1].mean() + 0.1


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_nan_follows_missing_go_to_left(strategy):
    X, y = _toy(3000, 4, seed=2)
    rng = np.random.default_rng(3)
    X_nan = X.copy()
    X_nan[rng.random(X.shape) < 0.15] = np.nan  # trained with NaN: learned directions
    with_nan = HistGradientBoostingClassifier(max_iter=30, random_state=0).fit(X_nan, y)
    without = HistGradientBoostingClassifier(max_iter=30, random_state=1).fit(X, y)
    members = [with_nan, without]
    go_left = np.concatenate(
        [p.nodes["missing_go_to_left"][p.nodes["is_leaf"] == 0] for (p,) in with_nan._predictors]
    )
    assert go_left.any()
    assert not go_left.all()  # both directions occur, so the test can fail
    X_test, _ = _toy(2000, 4, seed=4)
    X_test[rng.random(X_test.shape) < 0.3] = np.nan
    X_test[:50] = np.nan  # all-NaN rows
    ref = np.mean([m.predict_proba(X_test)[:, 1] for m in members], axis=0)
    got = CompiledTrees.from_hgb(members, device="cpu", strategy=strategy).score(X_test)
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-12)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_batch_size_does_not_change_results(ensemble, strategy):
    X = np.random.default_rng(12).normal(size=(1001, 5))
    compiled = CompiledTrees.from_hgb(ensemble, device="cpu", strategy=strategy)
    full = compiled.score(X, batch_size=5000)
    for bs in (1, 7, 256):
        np.testing.assert_allclose(compiled.score(X, batch_size=bs), full, rtol=0, atol=1e-15)
    # batches scored by worker threads: same numbers, torch's thread setting restored
    before = torch.get_num_threads()
    threaded = compiled.score(X, batch_size=100, n_threads=3)
    assert torch.get_num_threads() == before
    np.testing.assert_allclose(threaded, full, rtol=0, atol=1e-15)
    assert compiled.score(np.empty((0, 5))).shape == (0,)


def test_wide_trees_use_64_bit_masks_and_traversal_beyond():
    X, y = _toy(4000, 4, seed=8)
    X_test, _ = _toy(1000, 4, seed=9)
    wide = HGBEnsemble(n_members=2, max_iter=10, max_leaf_nodes=60, random_state=1).fit(X, y)
    leaves = max(p.get_n_leaf_nodes() for m in wide.members_ for (p,) in m._predictors)
    assert 32 < leaves <= 60
    compiled = CompiledTrees.from_hgb(wide, device="cpu")
    assert compiled.strategy == "bitvector"
    assert compiled._bitvector[0].width == 64
    np.testing.assert_allclose(
        compiled.score(X_test), wide.predict_proba(X_test)[:, 1], rtol=0, atol=1e-12
    )
    huge = HGBEnsemble(n_members=1, max_iter=3, max_leaf_nodes=100, random_state=1).fit(X, y)
    assert max(p.get_n_leaf_nodes() for (p,) in huge.members_[0]._predictors) > 64
    auto = CompiledTrees.from_hgb(huge, device="cpu")
    assert auto.strategy == "traversal"
    np.testing.assert_allclose(
        auto.score(X_test), huge.predict_proba(X_test)[:, 1], rtol=0, atol=1e-12
    )
    with pytest.raises(InputError, match="at most 64"):
        CompiledTrees.from_hgb(huge, device="cpu", strategy="bitvector")


def test_float32_is_close(ensemble):
    X = np.random.default_rng(13).normal(size=(2000, 5))
    got = CompiledTrees.from_hgb(ensemble, device="cpu", dtype=torch.float32).score(X)
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, ensemble.predict_proba(X)[:, 1], rtol=0, atol=1e-5)


def test_kfold_groups_match_fold_models():
    X, y = _toy(2000, 4, seed=6)
    models = [
        HGBEnsemble(n_members=2, max_iter=20, random_state=k, n_threads=1).fit(X[k::2], y[k::2])
        for k in range(2)
    ]
    X_test, _ = _toy(1500, 4, seed=10)
    compiled = CompiledTrees.from_kfold(models, device="cpu")
    assert compiled.n_groups == 2
    ref, fold = score_by_fold(models, X_test, seed=4)
    np.testing.assert_allclose(compiled.score(X_test, fold=fold), ref, rtol=0, atol=1e-12)
    mean = np.mean([m.predict_proba(X_test)[:, 1] for m in models], axis=0)
    np.testing.assert_allclose(compiled.score(X_test), mean, rtol=0, atol=1e-12)
    with pytest.raises(InputError, match="fold model"):
        compiled.score(X_test, fold=np.full(len(X_test), 2))


def test_refuses_categorical_multiclass_and_other_models():
    rng = np.random.default_rng(0)
    X = np.column_stack([rng.integers(0, 4, 600), rng.normal(size=600)])
    y = (X[:, 0] >= 2).astype(np.int64)
    cat = HistGradientBoostingClassifier(max_iter=5, categorical_features=[0]).fit(X, y)
    with pytest.raises(InputError, match="categorical"):
        CompiledTrees.from_hgb(cat, device="cpu")
    multi = HistGradientBoostingClassifier(max_iter=5).fit(X, rng.integers(0, 3, 600))
    with pytest.raises(InputError, match="binary"):
        CompiledTrees.from_hgb(multi, device="cpu")
    reg = HistGradientBoostingRegressor(max_iter=5).fit(X, X[:, 1])
    with pytest.raises(InputError, match="not a scikit-learn"):
        CompiledTrees.from_hgb([reg], device="cpu")
    with pytest.raises(NotFittedError):
        CompiledTrees.from_hgb(HGBEnsemble(), device="cpu")
    with pytest.raises(NotFittedError):
        CompiledTrees.from_hgb(HistGradientBoostingClassifier(), device="cpu")
    with pytest.raises(InputError, match="pass an HGBEnsemble"):
        CompiledTrees.from_hgb(object(), device="cpu")


def test_bad_inputs(ensemble):
    compiled = CompiledTrees.from_hgb(ensemble, device="cpu")
    with pytest.raises(InputError, match="expected \\(n_events, 5\\)"):
        compiled.score(np.zeros((3, 4)))
    with pytest.raises(InputError, match="batch_size"):
        compiled.score(np.zeros((3, 5)), batch_size=0)
    with pytest.raises(InputError, match="n_threads"):
        compiled.score(np.zeros((3, 5)), n_threads=0)
    with pytest.raises(InputError, match="strategy"):
        CompiledTrees.from_hgb(ensemble, device="cpu", strategy="gemm")
    with pytest.raises(InputError, match="dtype"):
        CompiledTrees.from_hgb(ensemble, device="cpu", dtype=torch.int32)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_cuda_equals_sklearn(ensemble, threshold_rows, strategy):
    X = np.concatenate([np.random.default_rng(14).normal(size=(3000, 5)), threshold_rows])
    X[:20, 0] = np.nan
    ref = np.mean([m.predict_proba(X)[:, 1] for m in ensemble.members_], axis=0)
    compiled = CompiledTrees.from_hgb(ensemble, device="cuda", strategy=strategy)
    np.testing.assert_allclose(compiled.score(X), ref, rtol=0, atol=1e-12)
