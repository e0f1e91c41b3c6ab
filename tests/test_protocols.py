"""Tests of the classifier protocols (IAD, supervised, CWoLa), the rotating k-fold, the
signal-injection study runner and `sideband evaluate`."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from click.testing import CliRunner
from sklearn.base import BaseEstimator, ClassifierMixin

from sideband.cli import main
from sideband.errors import InputError
from sideband.scoring import HGBEnsemble, score_kfold
from sideband.scoring.protocols import (
    cwola,
    fit_ensemble,
    idealized_ad,
    idealized_ad_kfold,
    supervised,
    supervised_kfold,
)
from sideband.studies import InjectionTable, inject_signal, run_injection_study

SMALL = {"n_members": 2, "max_iter": 40, "n_threads": 1}


def mann_whitney_sigma(n1: int, n2: int) -> float:
    return math.sqrt((n1 + n2 + 1) / (12.0 * n1 * n2))


class Spy(ClassifierMixin, BaseEstimator):
    """Records which rows (column 0 = row id) it trained and validated on; scores = column 1."""

    def __init__(self, random_state=None):
        self.random_state = random_state

    def fit(self, X, y, sample_weight=None, *, X_val=None, y_val=None):
        self.train_ids_ = set(X[:, 0].tolist())
        self.val_ids_ = None if X_val is None else set(X_val[:, 0].tolist())
        self.n_features_in_ = X.shape[1]
        self.classes_ = np.array([0, 1])
        return self

    def predict_proba(self, X):
        p = 1.0 / (1.0 + np.exp(-X[:, 1]))
        return np.column_stack([1 - p, p])


def with_ids(n: int, start: int, rng: np.random.Generator) -> np.ndarray:
    return np.column_stack([np.arange(start, start + n, dtype=np.float64), rng.normal(size=n)])


def gaussian_problem(rng, n_bkg, n_sig, shift, d=3):
    bkg = rng.normal(size=(n_bkg, d))
    sig = rng.normal(size=(n_sig, d)) + shift
    return bkg, sig


# ------------------------------------------------------------------ rotating folds


def test_score_kfold_rotate_trains_validates_and_tests_on_disjoint_folds():
    rng = np.random.default_rng(0)
    data, template = with_ids(60, 0, rng), with_ids(90, 1000, rng)
    res = score_kfold(data, template, classifier=Spy(), n_folds=4, seed=3, validation="rotate")
    for i, model in enumerate(res.models):
        test_ids = set(data[res.fold == i, 0]) | set(template[res.template_fold == i, 0])
        v = (i + 1) % 4
        val_ids = set(data[res.fold == v, 0]) | set(template[res.template_fold == v, 0])
        assert model.val_ids_ == val_ids
        assert not model.train_ids_ & (test_ids | val_ids)
        assert len(model.train_ids_) == 150 - len(test_ids) - len(val_ids)
    # every event scored by the model of its own fold
    expected = 1.0 / (1.0 + np.exp(-data[:, 1]))
    np.testing.assert_allclose(res.scores, expected)


def test_score_kfold_rotate_needs_three_folds_and_x_val():
    rng = np.random.default_rng(0)
    data, template = with_ids(30, 0, rng), with_ids(30, 100, rng)
    with pytest.raises(InputError, match=">= 3"):
        score_kfold(data, template, classifier=Spy(), n_folds=2, validation="rotate")
    with pytest.raises(InputError, match="'internal' or 'rotate'"):
        score_kfold(data, template, classifier=Spy(), validation="sideways")


def test_fit_ensemble_each_model_validates_on_its_own_fold():
    rng = np.random.default_rng(1)
    a, b = with_ids(50, 0, rng), with_ids(70, 500, rng)
    ens = fit_ensemble(a, b, classifier=Spy(), n_folds=5, seed=2)
    assert len(ens.models) == 5
    for i, m in enumerate(ens.models):
        val = set(a[ens.fold_1 == i, 0]) | set(b[ens.fold_0 == i, 0])
        assert m.val_ids_ == val
        assert not m.train_ids_ & val
    assert np.isfinite(ens.validation_scores_1).all()
    assert np.isfinite(ens.validation_scores_0).all()
    single = fit_ensemble(a, b, classifier=Spy(), n_folds=None)
    assert len(single.models) == 1
    assert single.models[0].val_ids_ is None


# ------------------------------------------------------------------ protocols


def test_supervised_reaches_the_optimal_auc():
    from scipy.stats import norm

    rng = np.random.default_rng(2)
    shift, d = 0.6, 3
    bkg, sig = gaussian_problem(rng, 3000, 3000, shift, d)
    tb, ts = gaussian_problem(rng, 3000, 3000, shift, d)
    test_X, test_y = np.r_[tb, ts], np.r_[np.zeros(3000), np.ones(3000)]
    res = supervised(sig, bkg, test_X, test_y, classifier=HGBEnsemble(**SMALL), seed=0)
    optimal = norm.cdf(shift * math.sqrt(d) / math.sqrt(2))
    assert res.metrics["auc"] == pytest.approx(optimal, abs=0.03)
    assert res.as_dict()["protocol"] == "supervised"
    assert res.n_label1 == 3000
    assert res.n_label0 == 3000


def test_iad_finds_injected_signal_and_nothing_without_it():
    rng = np.random.default_rng(3)
    bkg_data = rng.normal(size=(4000, 2))
    reference = rng.normal(size=(4000, 2))
    signal = rng.normal(size=(800, 2)) * 0.3 + 2.0  # a narrow cluster
    tb, ts = rng.normal(size=(3000, 2)), rng.normal(size=(3000, 2)) * 0.3 + 2.0
    test_X, test_y = np.r_[tb, ts], np.r_[np.zeros(3000), np.ones(3000)]
    clf = HGBEnsemble(**SMALL)
    with_sig = idealized_ad(np.r_[bkg_data, signal[:400]], reference, test_X, test_y,
                            classifier=clf, seed=1)  # fmt: skip
    assert with_sig.metrics["auc"] > 0.9
    # Background only: data and reference follow one distribution, so the classifier learns
    # noise only and cannot tell fresh background events apart from other fresh background
    # events labelled "signal": their AUC follows the Mann-Whitney null.
    without = idealized_ad(bkg_data, reference, np.r_[tb, rng.normal(size=(3000, 2))],
                           test_y, classifier=clf, seed=1)  # fmt: skip
    assert abs(without.metrics["auc"] - 0.5) < 4 * mann_whitney_sigma(3000, 3000)


def test_iad_with_rotating_folds_averages_k_models():
    rng = np.random.default_rng(4)
    bkg, sig = gaussian_problem(rng, 1500, 300, 1.5)
    ref = rng.normal(size=(1500, 3))
    tb, ts = gaussian_problem(rng, 1000, 1000, 1.5)
    res = idealized_ad(np.r_[bkg, sig], ref, np.r_[tb, ts], np.r_[np.zeros(1000), np.ones(1000)],
                       classifier=HGBEnsemble(**SMALL), n_folds=3, seed=0)  # fmt: skip
    assert len(res.ensemble.models) == 3
    manual = np.mean([m.predict_proba(np.r_[tb, ts])[:, 1] for m in res.ensemble.models], axis=0)
    np.testing.assert_allclose(res.scores, manual)
    assert res.metrics["auc"] > 0.7


def test_protocols_are_deterministic_given_a_seed():
    rng = np.random.default_rng(5)
    bkg, sig = gaussian_problem(rng, 800, 200, 1.0)
    tb, ts = gaussian_problem(rng, 500, 500, 1.0)
    args = (np.r_[bkg, sig], rng.normal(size=(800, 3)), np.r_[tb, ts],
            np.r_[np.zeros(500), np.ones(500)])  # fmt: skip
    a = idealized_ad(*args, classifier=HGBEnsemble(**SMALL), seed=7)
    b = idealized_ad(*args, classifier=HGBEnsemble(**SMALL), seed=7)
    c = idealized_ad(*args, classifier=HGBEnsemble(**SMALL), seed=8)
    np.testing.assert_array_equal(a.scores, b.scores)
    assert not np.array_equal(a.scores, c.scores)


def test_protocol_bad_input_gets_clear_errors():
    rng = np.random.default_rng(6)
    x1, x0 = rng.normal(size=(200, 3)), rng.normal(size=(200, 3))
    tX = rng.normal(size=(100, 3))
    ty = np.r_[np.zeros(50), np.ones(50)]
    clf = HGBEnsemble(**SMALL)
    with pytest.raises(InputError, match="0 signal"):
        idealized_ad(x1, x0, tX, np.zeros(100), classifier=clf)
    with pytest.raises(InputError, match="found \\[2"):
        idealized_ad(x1, x0, tX, np.where(ty == 1, 2, 0), classifier=clf)
    with pytest.raises(InputError, match="feature"):
        idealized_ad(x1, x0[:, :2], tX, ty, classifier=clf)
    with pytest.raises(InputError, match="feature"):
        idealized_ad(x1, x0, tX[:, :2], ty, classifier=clf)
    bad = x1.copy()
    bad[3, 1] = np.nan
    with pytest.raises(InputError, match="NaN"):
        idealized_ad(bad, x0, tX, ty, classifier=clf)
    with pytest.raises(InputError, match="disjoint"):
        idealized_ad(x1, x0, x1[:100], ty, classifier=clf)
    with pytest.raises(InputError, match="n_folds"):
        idealized_ad(x1, x0, tX, ty, classifier=clf, n_folds=1)


def test_kfold_iad_scores_each_pool_event_with_the_model_that_left_it_out():
    rng = np.random.default_rng(8)
    data = with_ids(80, 0, rng)
    pool = with_ids(100, 1000, rng)
    sig = with_ids(30, 5000, rng)
    res = idealized_ad_kfold(data, pool, sig, classifier=Spy(), n_folds=4, seed=1)
    assert len(res.ensemble) == 4
    assert res.labels.tolist() == [0] * 100 + [1] * 30
    # the Spy scores are sigmoid(column 1), so every event got exactly one score, in order
    np.testing.assert_allclose(res.scores, 1 / (1 + np.exp(-np.r_[pool[:, 1], sig[:, 1]])))
    seen_by = [set(e.models[0].train_ids_) for e in res.ensemble]
    for ids in seen_by:
        assert set(range(80)) <= ids  # all data events train every model
    # each pool event was in the reference of exactly 3 of the 4 models
    counts = [sum(i in ids for ids in seen_by) for i in range(1000, 1100)]
    assert set(counts) == {3}
    assert not any(i in ids for ids in seen_by for i in range(5000, 5030))


def test_kfold_iad_and_supervised_on_a_toy():
    from scipy.stats import norm

    rng = np.random.default_rng(9)
    shift, d = 0.8, 3
    pool = rng.normal(size=(4000, d))
    sig_train = rng.normal(size=(2000, d)) + shift
    sig_test = rng.normal(size=(2000, d)) + shift
    sup = supervised_kfold(sig_train, pool, sig_test, classifier=HGBEnsemble(**SMALL), n_folds=3)
    assert sup.metrics["auc"] == pytest.approx(norm.cdf(shift * math.sqrt(d / 2)), abs=0.03)
    assert sup.metrics["n_background"] == 4000
    data = np.r_[rng.normal(size=(4000, d)), sig_train[:400]]
    iad = idealized_ad_kfold(data, pool, sig_test, classifier=HGBEnsemble(**SMALL), n_folds=3)
    assert 0.6 < iad.metrics["auc"] < sup.metrics["auc"]
    with pytest.raises(InputError, match="disjoint"):
        idealized_ad_kfold(data, np.r_[pool, data[:500]], sig_test, classifier=Spy())
    with pytest.raises(InputError, match="n_folds"):
        idealized_ad_kfold(data, pool, sig_test, classifier=Spy(), n_folds=1)


def test_cwola_scores_every_sr_event_out_of_fold():
    rng = np.random.default_rng(7)
    sr_bkg, sig = gaussian_problem(rng, 2000, 400, 2.0)
    sb = rng.normal(size=(3000, 3))
    sr = np.r_[sr_bkg, sig]
    sr_y = np.r_[np.zeros(2000), np.ones(400)]
    res = cwola(sr, sb, sr_y=sr_y, classifier=HGBEnsemble(**SMALL), n_folds=4, seed=0)
    assert res.scores.shape == (2400,)
    assert np.isfinite(res.scores).all()
    assert res.metrics["auc"] > 0.85
    assert res.n_label1 == 2400
    assert res.n_label0 == 3000


# ------------------------------------------------------------------ injection study


def test_inject_signal_draws_without_replacement_and_checks_the_pool():
    bkg = np.zeros((100, 2))
    sig = np.arange(20, dtype=float).reshape(10, 2) + 1
    out = inject_signal(bkg, sig, 4, seed=0)
    assert out.shape == (104, 2)
    picked = out[out[:, 0] > 0]
    assert len(np.unique(picked[:, 0])) == 4
    np.testing.assert_array_equal(out, inject_signal(bkg, sig, 4, seed=0))
    with pytest.raises(InputError, match="pool of 10"):
        inject_signal(bkg, sig, 11, seed=0)


def test_injection_study_resumes_after_an_interruption(tmp_path):
    calls = []

    def run_one(n, seed):
        calls.append((n, seed))
        if len(calls) == 4:
            raise KeyboardInterrupt
        return {"sic_at_1e-03": n / 10 + seed, "auc": 0.5 + n / 1000}

    grid, seeds = [0, 10, 20], [0, 1]
    settings = {"split": "toy", "features": ("a", "b")}
    with pytest.raises(KeyboardInterrupt):
        run_injection_study(run_one, n_signal=grid, seeds=seeds, output_dir=tmp_path,
                            settings=settings, progress=False)  # fmt: skip
    saved = InjectionTable.from_json(tmp_path / "injection_table.json")
    assert len(saved.rows) == 3  # the three completed runs, nothing half-written
    calls.clear()
    table = run_injection_study(run_one, n_signal=grid, seeds=seeds, output_dir=tmp_path,
                                settings=settings, progress=False)  # fmt: skip
    assert calls == [(10, 1), (20, 0), (20, 1)]
    assert len(table.rows) == 6
    bands = table.bands("sic_at_1e-03")
    np.testing.assert_array_equal(bands["n_signal"], [0, 10, 20])
    np.testing.assert_allclose(bands["median"], [0.5, 1.5, 2.5])
    np.testing.assert_array_equal(bands["n_runs"], [2, 2, 2])
    obj = json.loads((tmp_path / "injection_table.json").read_text())
    assert obj["bands"]["sic_at_1e-03"]["median"] == pytest.approx([0.5, 1.5, 2.5])
    with pytest.raises(InputError, match="other settings"):
        run_injection_study(run_one, n_signal=grid, seeds=seeds, output_dir=tmp_path,
                            settings={"split": "other"}, progress=False)  # fmt: skip


def test_injection_table_nan_rows_are_left_out_of_the_band(tmp_path):
    table = run_injection_study(lambda n, s: {"sic_at_1e-03": math.nan if s == 0 else 2.0},
                                n_signal=[5], seeds=[0, 1, 2], output_dir=tmp_path,
                                progress=False)  # fmt: skip
    b = table.bands("sic_at_1e-03")
    assert b["n_runs"].tolist() == [2]
    assert b["median"].tolist() == [2.0]
    reread = InjectionTable.from_json(tmp_path / "injection_table.json")
    assert reread.bands("sic_at_1e-03")["median"].tolist() == [2.0]
    (tmp_path / "injection_table.json").write_text("{not json")
    with pytest.raises(InputError, match="not a readable injection table"):
        InjectionTable.from_json(tmp_path / "injection_table.json")


# ------------------------------------------------------------------ sideband evaluate


@pytest.fixture(scope="module")
def small_lhco_files(tmp_path_factory, shared_data):
    """Small CATHODE-format files cut from the real R&D SR: data, reference, test, signal."""
    src = shared_data / "lhco_rnd" / "cathode_sr"
    out = tmp_path_factory.mktemp("lhco")
    train = np.load(src / "innerdata_train.npy")
    test = np.load(src / "innerdata_test.npy")
    sig_val = np.load(src / "innerdata_extrasig_val.npy")
    sig_train = np.load(src / "innerdata_extrasig_train.npy")
    qcd = test[test[:, 5] == 0]
    files = {
        "data": train[:6000],
        "reference": qcd[:6000],
        "test": np.concatenate([qcd[6000:10000], sig_val[:2000]]),
        "signal": sig_train[:3000],
    }
    for name, arr in files.items():
        np.save(out / f"{name}.npy", arr)
    return out


def test_evaluate_cli_supervised_on_real_lhco_files(small_lhco_files, tmp_path):
    d = small_lhco_files
    result = CliRunner().invoke(main, [
        "evaluate", "--data", str(d / "signal.npy"), "--reference", str(d / "reference.npy"),
        "--test", str(d / "test.npy"), "--protocol", "supervised", "--n-members", "2",
        "--threads", "1", "-o", str(tmp_path / "ev"),
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    printed = json.loads(result.output)
    # W' -> XY jets are far from QCD in (m_J1, Delta m, tau21): a supervised classifier separates
    # them well even with 3k events per class.
    assert printed["auc"] > 0.95
    assert printed["sic_at_1e-02"] > 5
    for key in ("sic_at_1e-04", "sic_at_1e-03", "max_sic", "cutoff_rule"):
        assert key in printed
    assert printed["n_signal"] == 2000
    assert printed["n_background"] == 4000
    on_disk = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert on_disk["auc"] == pytest.approx(printed["auc"])
    prov = json.loads((tmp_path / "ev" / "provenance.json").read_text())
    assert prov["inputs"]["test"]["signal_rows"] == 2000
    assert "sha256" in prov["inputs"]["data"]
    for plot in ("roc.png", "sic.png", "scores.png"):
        assert (tmp_path / "ev" / plot).stat().st_size > 1000
    with np.load(tmp_path / "ev" / "scores.npz") as z:
        assert z["scores"].shape == (6000,)


def test_evaluate_cli_errors_are_one_line(small_lhco_files, tmp_path):
    d = small_lhco_files
    base = ["evaluate", "--reference", str(d / "reference.npy"), "--no-plots", "--n-members", "1",
            "--threads", "1", "-o", str(tmp_path / "ev")]  # fmt: skip
    # a test file without background
    r = CliRunner().invoke(main, [*base, "--data", str(d / "data.npy"),
                                  "--test", str(d / "signal.npy")])  # fmt: skip
    assert r.exit_code != 0
    assert "0 background" in r.output
    assert "Traceback" not in r.output
    # supervised with a data file that has no signal rows
    r = CliRunner().invoke(main, [*base, "--data", str(d / "reference.npy"), "--protocol",
                                  "supervised", "--test", str(d / "test.npy")])  # fmt: skip
    assert r.exit_code != 0
    assert "signal rows" in r.output
    # a feature the CATHODE format does not have
    r = CliRunner().invoke(main, [*base, "--data", str(d / "data.npy"), "--test",
                                  str(d / "test.npy"), "--features", "mj1,delta_r"])  # fmt: skip
    assert r.exit_code != 0
    assert "delta_r" in r.output
    r = CliRunner().invoke(main, [*base, "--data", str(d / "missing.npy"), "--test",
                                  str(d / "test.npy")])  # fmt: skip
    assert r.exit_code != 0
    assert "missing.npy" in r.output


def test_evaluate_cli_reference_folds_pool_the_background(small_lhco_files, tmp_path):
    d = small_lhco_files
    result = CliRunner().invoke(main, [
        "evaluate", "--data", str(d / "signal.npy"), "--reference", str(d / "reference.npy"),
        "--test", str(d / "test.npy"), "--protocol", "supervised", "--reference-folds", "3",
        "--n-members", "1", "--threads", "1", "--no-plots", "-o", str(tmp_path / "ev"),
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    printed = json.loads(result.output)
    # all 6,000 reference + 4,000 test background events are test background once
    assert printed["n_background"] == 10000
    assert printed["n_signal"] == 2000
    assert printed["n_train_label0"] == 6666  # two of three folds of the pool (3334 in fold 0)
    assert printed["auc"] > 0.95
    prov = json.loads((tmp_path / "ev" / "provenance.json").read_text())
    assert prov["reference_folds"] == 3


def test_injection_study_refuses_numbers_that_clash_with_its_columns(tmp_path):
    with pytest.raises(InputError, match="n_test_signal"):
        run_injection_study(lambda n, s: {"n_signal": 5, "auc": 0.5}, n_signal=[1], seeds=[0],
                            output_dir=tmp_path, progress=False)  # fmt: skip


def test_iad_injection_run_sensitivity_grows_with_the_injected_signal(tmp_path):
    from sideband.studies import iad_injection_run

    rng = np.random.default_rng(11)
    background, reference = rng.normal(size=(3000, 2)), rng.normal(size=(3000, 2))
    signal = rng.normal(size=(1000, 2)) * 0.3 + 1.5
    test_X = np.r_[rng.normal(size=(2000, 2)), rng.normal(size=(1000, 2)) * 0.3 + 1.5]
    test_y = np.r_[np.zeros(2000), np.ones(1000)]
    run_one = iad_injection_run(background, signal, reference, test_X, test_y,
                                classifier=HGBEnsemble(**SMALL))  # fmt: skip
    table = run_injection_study(run_one, n_signal=[0, 300], seeds=[0], output_dir=tmp_path,
                                progress=False)  # fmt: skip
    rows = {r["n_signal"]: r for r in table.rows}
    assert rows[300]["auc"] > rows[0]["auc"] + 0.2
    assert rows[300]["n_test_signal"] == 1000
    assert rows[300]["n_data_background"] == 3000
    assert rows[300]["s_over_sqrt_b"] == pytest.approx(300 / math.sqrt(3000))


def test_evaluate_cli_with_the_mlp(small_lhco_files, tmp_path):
    d = small_lhco_files
    result = CliRunner().invoke(main, [
        "evaluate", "--data", str(d / "signal.npy"), "--reference", str(d / "reference.npy"),
        "--test", str(d / "test.npy"), "--protocol", "supervised", "--classifier", "mlp",
        "--n-members", "3", "--threads", "1", "--no-plots", "-o", str(tmp_path / "ev"),
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["auc"] > 0.95


@pytest.mark.slow
def test_lhco_rnd_supervised_and_iad_reach_the_published_range(shared_data):
    """The headline benchmark at reduced cost (5-member ensembles, one seed): the real R&D
    SR, background pool 5-folded, as in benchmarks/lhco_rnd_evaluation.py."""
    from sideband.evaluate import DEFAULT_FEATURES as F
    from sideband.events import read_features

    src = shared_data / "lhco_rnd" / "cathode_sr"
    data = read_features(src / "innerdata_train.npy").x(F)
    test = read_features(src / "innerdata_test.npy")
    pool = test.x(F)[test.label == 0]
    sig_test = read_features(src / "innerdata_extrasig_val.npy").x(F)
    sig_train = read_features(src / "innerdata_extrasig_train.npy").x(F)
    clf = HGBEnsemble(n_members=5, n_threads=2)
    sup = supervised_kfold(sig_train, pool, sig_test, classifier=clf, seed=0)
    assert sup.metrics["sic_at_1e-03"] > 11.0
    assert sup.metrics["auc"] > 0.96
    iad = idealized_ad_kfold(data, pool, sig_test, classifier=clf, seed=0)
    assert iad.metrics["sic_at_1e-03"] > 7.0
    assert 0.84 < iad.metrics["auc"] < sup.metrics["auc"]
