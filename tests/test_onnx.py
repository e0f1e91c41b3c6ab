"""Tests of sideband.scoring.onnx_scorer: ONNX export of the anomaly scorer, onnxruntime scoring.

Tolerances (stated in the module docstring and docs/onnx.md):
- boosted trees: max |onnxruntime - predict_proba| <= 1e-12. The graph keeps scikit-learn's
  float64 thresholds and leaf values, so every event takes the same branches; only the order of
  float64 additions differs (measured: 2e-16 on 62,124 real SR events).
- MLP: max |difference| <= 1e-6 (float32 network as in torch; measured 1.2e-7).
The classifiers are trained on real LHCO R&D SR events (CATHODE files: background of
innerdata_train vs signal of innerdata_extrasig_train) and scored on innerdata_test.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

import sideband
from sideband.errors import InputError, NotFittedError
from sideband.events import read_features
from sideband.records import FeatureTable
from sideband.scoring import HGBEnsemble, score_kfold
from sideband.scoring.onnx_scorer import OnnxScorer, export_onnx

NAMES = ("mj1", "delta_mj", "tau21_j1", "tau21_j2")  # the CATHODE files have no delta_r
HGB_TOL = 1e-12
MLP_TOL = 1e-6


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"shared data file {path} is absent (../shared/data beside the repo)")
    return path


@pytest.fixture(scope="module")
def sr(shared_data):
    """(X_train, y_train, test table): 15,000 real SR background events of innerdata_train
    (label 0) and 5,000 signal events (label 1) for training; innerdata_test (62,124 events,
    GeV) for scoring."""
    cathode = shared_data / "lhco_rnd" / "cathode_sr"
    train = read_features(_need(cathode / "innerdata_train.npy"))
    sig = read_features(_need(cathode / "innerdata_extrasig_train.npy"))
    test = read_features(_need(cathode / "innerdata_test.npy"))
    bg = train.x(NAMES)[train.label == 0][:15000]
    X = np.concatenate([bg, sig.x(NAMES)[:5000]])
    y = np.r_[np.zeros(len(bg), np.int64), np.ones(5000, np.int64)]
    return X, y, test


@pytest.fixture(scope="module")
def hgb(sr, tmp_path_factory):
    """(fitted HGBEnsemble, path of its ONNX export)."""
    X, y, _ = sr
    model = HGBEnsemble(n_members=3, max_iter=50, random_state=1, n_threads=1).fit(X, y)
    path = export_onnx(model, tmp_path_factory.mktemp("onnx") / "hgb.onnx", feature_names=NAMES)
    return model, path


# --------------------------------------------------------------------------------------------
# round trips on real SR events
# --------------------------------------------------------------------------------------------
def test_hgb_onnxruntime_reproduces_predict_proba(sr, hgb):
    _, _, test = sr
    model, path = hgb
    scorer = OnnxScorer.load(path, n_threads=1)
    want = model.predict_proba(test.x(NAMES))[:, 1]
    got = scorer.score(test, batch_size=10000)  # several batches
    assert got.dtype == np.float64
    assert got.shape == (len(test),)
    assert np.max(np.abs(got - want)) <= HGB_TOL
    # the classifier is not trivial: signal scores higher than background in the test file
    assert got[test.label == 1].mean() > got[test.label == 0].mean() + 0.2
    # the same from a plain array with its column names and from a mapping
    as_array = scorer.score(test.x(NAMES), feature_names=NAMES)
    as_mapping = scorer.score({n: test.columns[n] for n in (*NAMES, "mjj")})
    np.testing.assert_array_equal(as_array, got)
    np.testing.assert_array_equal(as_mapping, got)


def test_plain_onnxruntime_session_gives_the_same_scores(sr, hgb):
    """What a C++ caller sees: the bare graph, float64 input named 'features'."""
    _, _, test = sr
    model, path = hgb
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = test.x(NAMES)[:2000]
    (score,) = session.run(["score"], {"features": x})
    assert np.max(np.abs(score - model.predict_proba(x)[:, 1])) <= HGB_TOL


def test_metadata_round_trips(hgb):
    _, path = hgb
    scorer = OnnxScorer.load(path)
    assert scorer.feature_names == NAMES
    assert scorer.units == ("GeV", "GeV", "", "")
    assert scorer.n_folds == 0
    props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert json.loads(props["sideband.feature_names"]) == list(NAMES)
    assert json.loads(props["sideband.units"]) == ["GeV", "GeV", "", ""]
    assert props["sideband.version"] == sideband.__version__
    assert props["sideband.model_kind"] == "HGBEnsemble"
    assert json.loads(props["sideband.n_members"]) == 3
    assert props["sideband.input_dtype"] == "float64"
    assert scorer.metadata == props


def test_mlp_onnxruntime_reproduces_predict_proba(sr, tmp_path, one_torch_thread):
    from sideband.scoring import MLPEnsemble

    X, y, test = sr
    model = MLPEnsemble(
        hidden=(32, 32), n_epochs=3, n_best=2, random_state=0, device="cpu", n_threads=1
    ).fit(X, y)
    path = export_onnx(model, tmp_path / "mlp.onnx", feature_names=list(NAMES))
    scorer = OnnxScorer.load(path, n_threads=1)
    got = scorer.score(test)
    want = model.predict_proba(test.x(NAMES))[:, 1]
    assert np.max(np.abs(got - want)) <= MLP_TOL
    assert scorer.metadata["sideband.model_kind"] == "MLPEnsemble"
    assert json.loads(scorer.metadata["sideband.n_members"]) == 2


def test_kfold_models_reproduce_out_of_fold_scores(sr, tmp_path):
    """Fold export: fold_scores[j, fold[j]] is the k-fold score of event j; score = mean."""
    _, _, test = sr
    data = test.x(NAMES)[:6000]
    template = test.x(NAMES)[test.label == 0][-6000:]
    result = score_kfold(
        data,
        template,
        classifier=HGBEnsemble(n_members=2, max_iter=30, n_threads=1),
        n_folds=3,
        seed=4,
    )
    path = export_onnx(result, tmp_path / "kfold.onnx", feature_names=NAMES)
    scorer = OnnxScorer.load(path, n_threads=1)
    assert scorer.n_folds == 3
    assert scorer.metadata["sideband.model_kind"] == "kfold[HGBEnsemble]"
    assert json.loads(scorer.metadata["sideband.n_members"]) == [2, 2, 2]
    per_fold = scorer.fold_scores(data, feature_names=NAMES)
    assert per_fold.shape == (len(data), 3)
    oof = per_fold[np.arange(len(data)), result.fold]
    assert np.max(np.abs(oof - result.scores)) <= HGB_TOL
    mean = scorer.score(data, feature_names=NAMES)
    assert np.max(np.abs(mean - result.predict(data))) <= HGB_TOL


# --------------------------------------------------------------------------------------------
# wrong order, names, units
# --------------------------------------------------------------------------------------------
def test_wrong_column_order_is_refused(sr, hgb):
    _, _, test = sr
    scorer = OnnxScorer.load(hgb[1])
    swapped = ["delta_mj", "mj1", "tau21_j1", "tau21_j2"]
    with pytest.raises(InputError, match=r"order .*reorder with X\[:, \[1, 0, 2, 3\]\]"):
        scorer.score(test.x(swapped), feature_names=swapped)
    with pytest.raises(InputError, match="plain array"):
        scorer.score(test.x(NAMES))
    with pytest.raises(InputError, match=r"missing \['tau21_j2'\]"):
        scorer.score(test.x(NAMES[:3]), feature_names=NAMES[:3])
    with pytest.raises(InputError, match=r"lacks feature\(s\) \['tau21_j1'\]"):
        scorer.score({n: test.columns[n] for n in NAMES if n != "tau21_j1"})
    # a mass column and tau21 swapped under the stored names: caught by the magnitude check
    lie = test.x(["tau21_j1", "delta_mj", "mj1", "tau21_j2"])
    with pytest.raises(InputError, match=r"'mj1' has median .*looks like TeV"):
        scorer.score(lie, feature_names=NAMES)


def test_wrong_units_are_refused(sr, hgb):
    _, _, test = sr
    scorer = OnnxScorer.load(hgb[1])
    x = test.x(NAMES)
    with pytest.raises(InputError, match=r"'mj1'.*'TeV'.*trained on 'GeV'.*by 1000"):
        scorer.score(x, feature_names=NAMES, units={"mj1": "TeV"})
    with pytest.raises(InputError, match=r"'delta_mj'.*'MeV'.*by 0\.001"):
        scorer.score(x, feature_names=NAMES, units=["GeV", "MeV", "", ""])
    # stated right: accepted and identical
    ok = scorer.score(x, feature_names=NAMES, units=["GeV", "GeV", "", ""])
    np.testing.assert_array_equal(ok, scorer.score(test))
    # TeV values although nobody said so: a table or mapping with masses / 1000
    tev = FeatureTable(
        {n: test.columns[n] / 1000 if n in ("mjj", "mj1", "delta_mj") else test.columns[n]
         for n in (*NAMES, "mjj")},
        test.event_id,
    )  # fmt: skip
    with pytest.raises(InputError, match="looks like TeV"):
        scorer.score(tev)
    # ... unless the check is switched off (then the scores are simply different)
    assert not np.allclose(scorer.score(tev, check_units=False), scorer.score(test))
    # a few events are not enough for the magnitude check: no false alarm on single events
    assert scorer.score(x[:1], feature_names=NAMES).shape == (1,)


def test_model_exported_in_other_units_refuses_a_gev_table(sr, hgb, tmp_path):
    _, _, test = sr
    model, _ = hgb
    path = export_onnx(
        model, tmp_path / "tev.onnx", feature_names=NAMES, units={"mj1": "TeV", "delta_mj": "TeV"}
    )
    scorer = OnnxScorer.load(path)
    assert scorer.units == ("TeV", "TeV", "", "")
    with pytest.raises(InputError, match=r"'mj1'.*FeatureTable.*trained on 'TeV'.*by 0\.001"):
        scorer.score(test)


# --------------------------------------------------------------------------------------------
# export and load errors
# --------------------------------------------------------------------------------------------
def test_export_errors(hgb, tmp_path):
    model, _ = hgb
    with pytest.raises(InputError, match=r"fitted on 4 feature\(s\) but feature_names lists 3"):
        export_onnx(model, tmp_path / "a.onnx", feature_names=NAMES[:3])
    with pytest.raises(InputError, match="no unit known for feature 'pt_j1'"):
        export_onnx(model, tmp_path / "a.onnx", feature_names=[*NAMES[:3], "pt_j1"])
    with pytest.raises(InputError, match="more than once"):
        export_onnx(model, tmp_path / "a.onnx", feature_names=["mj1", "mj1", "x", "y"])
    with pytest.raises(NotFittedError):
        export_onnx(HGBEnsemble(), tmp_path / "a.onnx", feature_names=NAMES)
    with pytest.raises(InputError, match="cannot convert dict"):
        export_onnx({}, tmp_path / "a.onnx", feature_names=NAMES)
    with pytest.raises(InputError, match="opset"):
        export_onnx(model, tmp_path / "a.onnx", feature_names=NAMES, opset=9)
    assert list(tmp_path.iterdir()) == []  # nothing half-written


def test_export_is_atomic_and_replaces(hgb, tmp_path):
    model, _ = hgb
    path = tmp_path / "sub" / "m.onnx"
    path.parent.mkdir()
    path.write_bytes(b"old")
    assert export_onnx(model, path, feature_names=NAMES) == path
    assert [p.name for p in path.parent.iterdir()] == ["m.onnx"]  # no temporary file left
    assert OnnxScorer.load(path).feature_names == NAMES


def test_load_errors(hgb, tmp_path):
    _, path = hgb
    with pytest.raises(InputError, match="does not exist"):
        OnnxScorer.load(tmp_path / "missing.onnx")
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(path.read_bytes()[:1000] + b"\x00garbage")
    with pytest.raises(InputError, match="not a readable ONNX model"):
        OnnxScorer.load(corrupt)
    # a valid ONNX model without sideband's metadata
    bare = onnx.load(str(path))
    del bare.metadata_props[:]
    plain = tmp_path / "plain.onnx"
    onnx.save_model(bare, str(plain))
    with pytest.raises(InputError, match="no sideband scorer metadata"):
        OnnxScorer.load(plain)
    # metadata that disagrees with the graph (5 names for a 4-column input)
    wrong = onnx.load(str(path))
    for p in wrong.metadata_props:
        if p.key == "sideband.feature_names":
            p.value = json.dumps([*NAMES, "delta_r"])
        if p.key == "sideband.units":
            p.value = json.dumps(["GeV", "GeV", "", "", ""])
    onnx.save_model(wrong, str(tmp_path / "wrong.onnx"))
    with pytest.raises(InputError, match="does not match the metadata"):
        OnnxScorer.load(tmp_path / "wrong.onnx")
    with pytest.raises(InputError, match="device"):
        OnnxScorer.load(path, device="tpu")
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        with pytest.raises(InputError, match="onnxruntime-gpu"):
            OnnxScorer.load(path, device="cuda")
    with pytest.raises(InputError, match="single model"):
        OnnxScorer.load(path).fold_scores({n: np.ones(3) for n in NAMES})
