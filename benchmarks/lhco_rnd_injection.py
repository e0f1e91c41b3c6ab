"""Signal-injection study of the IAD on the real LHCO R&D signal region; resumable.

Usage: python benchmarks/lhco_rnd_injection.py [--n-signal 0 100 200 ...] [--seeds 0 1 2 3 4]
       [--classifier hgb] [--n-members 5] [--threads 2] [--out benchmarks/results]

N_sig signal events from innerdata_extrasig_train.npy are injected into the 59,605 QCD events of
innerdata_train.npy (split in `lhco_rnd_split.py`); each (N_sig, seed) is a full IAD run against the
background reference, scored on the fixed test set. Stopped halfway, rerunning the same command
resumes. Writes benchmarks/results/lhco_rnd_injection_<classifier>/injection_table.json and
sic_vs_nsig.png (median and 16-84% band of SIC at eps_B = 1e-3 over seeds).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from lhco_rnd_split import load_split

from sideband.evaluate import make_classifier
from sideband.evaluation import plot_injection
from sideband.studies import iad_injection_run, run_injection_study


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n-signal", type=int, nargs="+",
                        default=[0, 150, 300, 450, 600, 800, 1000, 1500])  # fmt: skip
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--classifier", choices=["hgb", "mlp"], default="hgb")
    parser.add_argument("--n-members", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()

    split = load_split()
    background = split.data[split.data_labels == 0]
    clf = make_classifier(args.classifier, n_members=args.n_members, n_threads=args.threads)
    run_one = iad_injection_run(background, split.signal_train, split.reference, split.test_X,
                                split.test_y, classifier=clf)  # fmt: skip
    folder = args.out / f"lhco_rnd_injection_{args.classifier}"
    settings = {"split": split.describe(), "classifier": args.classifier,
                "n_members": args.n_members, "protocol": "iad"}  # fmt: skip
    table = run_injection_study(run_one, n_signal=args.n_signal, seeds=args.seeds,
                                output_dir=folder, settings=settings)  # fmt: skip
    b = table.bands("sic_at_1e-03")
    plot_injection(b["n_signal"], b["median"], b["lo"], b["hi"], n_background=len(background),
                   label=f"IAD ({args.classifier.upper()}), fixed split",
                   path=folder / "sic_vs_nsig.png")  # fmt: skip
    for n, med, lo, hi in zip(b["n_signal"], b["median"], b["lo"], b["hi"], strict=True):
        print(f"N_sig {int(n):5d}  S/sqrt(B) {n / math.sqrt(len(background)):5.2f}  "
              f"SIC@1e-3 {med:6.2f} [{lo:6.2f}, {hi:6.2f}]")  # fmt: skip
    print(f"wrote {folder}")


if __name__ == "__main__":
    main()
