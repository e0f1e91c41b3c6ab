"""Stage 4: anomaly scores of signal-region events, k-folded so no event is scored by a model
that trained on it.

`HGBEnsemble` is the default data-vs-template classifier; `score_kfold` trains one per fold and
returns a `KFoldResult`; `efficiency_threshold` turns a selection efficiency into a score cut.
"""

from __future__ import annotations

from sideband.scoring.classifiers import HGBEnsemble
from sideband.scoring.kfold import KFoldResult, efficiency_threshold, score_kfold

__all__ = ["HGBEnsemble", "KFoldResult", "efficiency_threshold", "score_kfold"]


def __dir__() -> list[str]:
    return __all__
