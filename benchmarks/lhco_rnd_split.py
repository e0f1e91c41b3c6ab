"""The split of the real LHCO R&D signal region (CATHODE files) used by the evaluation benchmarks.

Files: ``../shared/data/lhco_rnd/cathode_sr/`` (CATHODE release; masses converted TeV -> GeV).

* data: ``innerdata_train.npy`` as released: 60,000 SR events, 59,605 QCD + 395 signal
  (S/B = 0.66%, the R&D value), label 1 for the IAD;
* background pool: the 61,747 QCD rows of ``innerdata_test.npy``. The headline benchmark
  (`idealized_ad_kfold`, `supervised_kfold`) cuts it into 5 folds: each model trains against 4
  (49,398 reference events) and scores the 5th, so all 61,747 serve as test background;
* test signal: the 27,264 events of ``innerdata_extrasig_val.npy``, dealt to the 5 fold models;
* fixed split (injection study, quicker): after a seeded shuffle (split seed 2026) the first
  31,747 pool rows are the reference and the other 30,000 the test background;
* supervised signal: ``innerdata_extrasig_train.npy`` (27,263, disjoint from extrasig_val);
* injection pool: ``innerdata_extrasig_train.npy``, injected into the 59,605 QCD events of
  the data file.

Features: (m_J1, Delta m_J, tau21_J1, tau21_J2), GeV.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sideband.evaluate import DEFAULT_FEATURES
from sideband.events import read_features

CATHODE_SR = (
    Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "lhco_rnd" / "cathode_sr"
)
SPLIT_SEED = 2026
N_TEST_BACKGROUND = 30_000


@dataclass(frozen=True)
class LhcoSplit:
    data: np.ndarray
    data_labels: np.ndarray
    reference: np.ndarray
    test_X: np.ndarray
    test_y: np.ndarray
    signal_train: np.ndarray
    background_pool: np.ndarray
    signal_test: np.ndarray

    def describe(self) -> dict[str, object]:
        return {
            "files": str(CATHODE_SR.resolve()),
            "split_seed": SPLIT_SEED,
            "features": list(DEFAULT_FEATURES),
            "data": "innerdata_train.npy",
            "data_events": len(self.data),
            "data_signal": int(self.data_labels.sum()),
            "background_pool": len(self.background_pool),
            "fixed_split_reference_background": len(self.reference),
            "fixed_split_test_background": int((self.test_y == 0).sum()),
            "test_signal": len(self.signal_test),
            "supervised_signal": len(self.signal_train),
        }


def load_split(folder: Path = CATHODE_SR) -> LhcoSplit:
    if not folder.is_dir():
        raise SystemExit(
            f"{folder} not found: these benchmarks need ../shared/data beside the repo"
        )
    f = DEFAULT_FEATURES
    train = read_features(folder / "innerdata_train.npy")
    test = read_features(folder / "innerdata_test.npy")
    qcd = test.x(f)[test.label == 0]
    qcd = qcd[np.random.default_rng(SPLIT_SEED).permutation(len(qcd))]
    sig_val = read_features(folder / "innerdata_extrasig_val.npy").x(f)
    test_bkg, reference = qcd[:N_TEST_BACKGROUND], qcd[N_TEST_BACKGROUND:]
    return LhcoSplit(
        data=train.x(f),
        data_labels=train.label.astype(np.int64),
        reference=reference,
        test_X=np.concatenate([test_bkg, sig_val]),
        test_y=np.r_[np.zeros(len(test_bkg), np.int64), np.ones(len(sig_val), np.int64)],
        signal_train=read_features(folder / "innerdata_extrasig_train.npy").x(f),
        background_pool=qcd,
        signal_test=sig_val,
    )
