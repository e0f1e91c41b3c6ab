"""sideband's processors inside your own coffea analysis (NanoAOD-style input).

A user's processor, `DijetAnalysis`, calls sideband's `NanoAODDijetProcessor` on each chunk and
adds its own accumulators beside sideband's output: a cutflow dict and a histogram of the
leading jet's pT. coffea's Runner (NanoAODSchema; iterative, futures or Dask executor) merges
them all; `collect_features` picks sideband's part out of the merged output (your own keys are
skipped) and gives a `FeatureTable` with NanoAOD's ``run``, ``luminosityBlock``, ``event`` in
``table.ids``, which `write_features` writes to Parquet or ROOT.

Run on your own file (a NanoAOD/PFNano ``Events`` tree with ``FatJet``; ``--mode particles``
needs ``PFCands``, ``--point-clouds`` needs ``PFCands`` and ``FatJetPFCands``):

    python analysis/coffea_user_example.py --input nano.root --output features.parquet

Without ``--input`` it first writes a small NanoAOD-style demo file from the particles bundled in
``data/lhco_like_default_raw_small.h5`` (300 events; anti-kT R = 1.0 jets stored as ``FatJet``
with tau1, tau2 as sideband computes them, the particles as massless ``PFCands``, the
jet-candidate table ``FatJetPFCands``), so it runs on a fresh checkout:

    python analysis/coffea_user_example.py --output runs/coffea_example/features.parquet

With the demo input it also checks that both modes agree: the stored jets (``jets="FatJet"``)
and sideband's reclustering of the candidates (``particles="PFCands"``) give the same features
to float32 precision.

Masses and momenta in GeV.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import Any

import awkward as ak
import hist
import numpy as np
from coffea import processor
from coffea.nanoevents import NanoAODSchema

from sideband.events import write_features
from sideband.events.point_clouds import write_point_clouds
from sideband.features.processor import (
    NanoAODDijetProcessor,
    collect_features,
    collect_point_clouds,
)

log = logging.getLogger("coffea_user_example")

REPO = Path(__file__).resolve().parents[1]
BUNDLED_PARTICLES = REPO / "data" / "lhco_like_default_raw_small.h5"


class MinimalNanoAODSchema(NanoAODSchema):
    """NanoAODSchema without the warning for each absent cross-reference branch: a slimmed
    NanoAOD file (like the demo) has only the collections an analysis needs."""

    warn_missing_crossrefs = False


class DijetAnalysis(processor.ProcessorABC):
    """A user's own processor: sideband's dijet features plus the user's own accumulators.

    Output (merged by coffea over chunks and files): sideband's ``{dataset: acc}`` entries,
    ``"cutflow"`` (``{dataset: {step: events}}``), ``"leading_jet_pt"`` (a ``hist.Hist`` with
    a dataset axis) and ``"n_chunks"`` (an int).
    """

    def __init__(self, *, mode: str = "jets", point_clouds: int | None = None) -> None:
        if mode == "jets":
            self.sideband = NanoAODDijetProcessor(jets="FatJet", point_clouds=point_clouds)
        else:
            self.sideband = NanoAODDijetProcessor(particles="PFCands", point_clouds=point_clouds)

    def process(self, events: Any) -> dict[str, Any]:
        dataset = events.metadata["dataset"]
        out: dict[str, Any] = self.sideband.process(events)  # {dataset: sideband's acc}

        jets = events.FatJet
        two = ak.num(jets) >= 2
        lead = jets[two][:, :2]
        central = abs(lead[:, 0].eta - lead[:, 1].eta) < 1.3
        pt = (
            hist.Hist.new.StrCat([], growth=True, name="dataset")
            .Reg(40, 0, 4000, name="pt", label="leading FatJet $p_T$ [GeV]")
            .Double()
        )
        pt.fill(dataset=dataset, pt=ak.to_numpy(ak.max(jets.pt, axis=1)[ak.num(jets) > 0]))
        out["leading_jet_pt"] = pt
        out["cutflow"] = {
            dataset: {
                "events": len(events),
                ">= 2 FatJets": int(ak.sum(two)),
                "|delta eta| < 1.3": int(ak.sum(central)),
            }
        }
        out["n_chunks"] = 1
        return out

    def postprocess(self, accumulator: Any) -> Any:
        return accumulator


# --------------------------------------------------------------------------------------------
# demo input: the bundled particles as a NanoAOD-style file
# --------------------------------------------------------------------------------------------


def write_demo_nanoaod(path: Path, *, n_events: int = 300, r: float = 1.0) -> Path:
    """Write `n_events` of the bundled particle-level events as a NanoAOD-style ``Events`` tree.

    ``run`` = 1, ``luminosityBlock`` = 1 + entry // 100, ``event`` = 1 + entry, ``label``
    (1 signal, 0 QCD); ``PFCands`` (pt [GeV], eta, phi, mass = 0, charge = 0); ``FatJet``: the
    anti-kT R = `r` jets with pT > 20 GeV in decreasing pT (pt, eta, phi, mass [GeV], tau1,
    tau2 with beta = 1, R0 = 1, unnormalised measure, exclusive-kT axes, nConstituents);
    ``FatJetPFCands`` (jetIdx, pFCandsIdx).
    """
    import fastjet
    import uproot
    import vector

    from sideband.events import iter_particles

    chunk = next(iter(iter_particles(BUNDLED_PARTICLES, chunk_size=n_events, stop=n_events)))
    cands = chunk["particles"]
    counts = ak.to_numpy(ak.num(cands))
    pt, eta, phi = (ak.to_numpy(ak.flatten(cands[q])) for q in ("pt", "eta", "phi"))
    inputs = ak.unflatten(
        ak.zip(
            {
                "px": pt * np.cos(phi),
                "py": pt * np.sin(phi),
                "pz": pt * np.sinh(eta),
                "E": pt * np.cosh(eta),
            },
            with_name="Momentum4D",
            behavior=vector.backends.awkward.behavior,
        ),
        counts,
    )
    seq = fastjet.ClusterSequence(inputs, fastjet.JetDefinition(fastjet.antikt_algorithm, r))
    jets = seq.inclusive_jets(min_pt=20.0)
    index = seq.constituent_index(min_pt=20.0)
    constituents = seq.constituents(min_pt=20.0)
    order = ak.argsort(np.hypot(jets.px, jets.py), axis=1, ascending=False, stable=True)
    jets, index, constituents = jets[order], index[order], constituents[order]
    n_jets = ak.num(jets)
    sub = fastjet.ClusterSequence(
        ak.flatten(constituents, axis=1), fastjet.JetDefinition(fastjet.kt_algorithm, r)
    )
    tau = sub.njettiness(
        njets=[1, 2],
        measure_definition="UnnormalizedMeasure",
        axes_definition="KT_Axes",
        beta=1.0,
        R0=1.0,
    )
    j = vector.zip({"px": jets.px, "py": jets.py, "pz": jets.pz, "E": jets.E})
    n_cons = ak.num(index, axis=2)
    fatjet = {
        "pt": j.pt,
        "eta": j.eta,
        "phi": j.phi,
        "mass": np.maximum(j.mass, 0.0),
        "tau1": ak.unflatten(tau[:, 0], n_jets),
        "tau2": ak.unflatten(tau[:, 1], n_jets),
    }
    jet_idx = ak.flatten(ak.broadcast_arrays(ak.local_index(index, axis=1), index)[0], axis=2)
    n = len(chunk)
    data = {
        "run": np.ones(n, np.uint32),
        "luminosityBlock": (1 + np.arange(n) // 100).astype(np.uint32),
        "event": (1 + ak.to_numpy(chunk["event_id"])).astype(np.uint64),
        "label": ak.to_numpy(chunk["label"]).astype(np.int32),
        "FatJet": ak.zip(
            {
                **{q: ak.values_astype(v, np.float32) for q, v in fatjet.items()},
                "nConstituents": ak.values_astype(n_cons, np.int32),
            }
        ),
        "PFCands": ak.zip(
            {
                **{q: ak.values_astype(cands[q], np.float32) for q in ("pt", "eta", "phi")},
                "mass": ak.values_astype(cands["pt"] * 0.0, np.float32),
                "charge": ak.values_astype(cands["pt"] * 0, np.int32),
            }
        ),
        "FatJetPFCands": ak.zip(
            {
                "jetIdx": ak.values_astype(jet_idx, np.int32),
                "pFCandsIdx": ak.values_astype(ak.flatten(index, axis=2), np.int32),
            }
        ),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    with uproot.recreate(path) as fh:
        types = {k: (v.type if isinstance(v, ak.Array) else v.dtype) for k, v in data.items()}
        fh.mktree("Events", types).extend(data)
    log.info("wrote the demo NanoAOD-style file %s (%d events)", path, n)
    return path


# --------------------------------------------------------------------------------------------
# running
# --------------------------------------------------------------------------------------------


def make_executor(name: str, workers: int) -> tuple[Any, Any]:
    """(coffea executor, a Dask client to close or None)."""
    if name == "iterative":
        return processor.IterativeExecutor(status=False), None
    if name == "futures":
        return processor.FuturesExecutor(workers=workers, status=False), None
    from distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, dashboard_address=None)
    client = Client(cluster)
    return processor.DaskExecutor(client=client, status=False), client


def run_analysis(
    fileset: dict[str, list[str]],
    *,
    executor: str = "iterative",
    workers: int = 2,
    chunksize: int = 100,
    mode: str = "jets",
    point_clouds: int | None = None,
) -> dict[str, Any]:
    """Run `DijetAnalysis` over `fileset` with coffea's Runner; the merged output."""
    ex, client = make_executor(executor, workers)
    try:
        runner = processor.Runner(ex, chunksize=chunksize, schema=MinimalNanoAODSchema)
        return dict(
            runner(fileset, DijetAnalysis(mode=mode, point_clouds=point_clouds), treename="Events")
        )
    finally:
        if client is not None:
            client.close()
            client.cluster.close()


def say(text: str) -> None:
    """The script's report on stdout."""
    print(text)  # noqa: T201 - a script's output


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--input", nargs="+", help="NanoAOD-style ROOT file(s); default: demo")
    parser.add_argument("--output", required=True, help="feature file (.parquet or .root)")
    parser.add_argument("--dataset", default="data", help="dataset name in the fileset")
    parser.add_argument("--executor", choices=("iterative", "futures", "dask"), default="iterative")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--chunksize", type=int, default=100)
    parser.add_argument(
        "--mode",
        choices=("jets", "particles"),
        default="jets",
        help="jets: the stored FatJets; particles: recluster PFCands (anti-kT R=1.0)",
    )
    parser.add_argument(
        "--point-clouds",
        type=int,
        metavar="M",
        help="also write the two leading jets' point clouds (M slots per jet) beside --output",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    output = Path(args.output)
    demo = args.input is None
    files = (
        [str(write_demo_nanoaod(output.with_name(output.stem + "_demo_nanoaod.root")))]
        if demo
        else args.input
    )
    fileset = {args.dataset: files}

    start = time.perf_counter()
    out = run_analysis(
        fileset,
        executor=args.executor,
        workers=args.workers,
        chunksize=args.chunksize,
        mode=args.mode,
        point_clouds=args.point_clouds,
    )
    seconds = time.perf_counter() - start
    table = collect_features(out, fileset=fileset)[args.dataset]
    write_features(output, table)

    say(f"{args.executor} executor, {out['n_chunks']} chunk(s), {seconds:.1f} s")
    for step, count in out["cutflow"][args.dataset].items():
        say(f"  {step:<20} {count}")
    h = out["leading_jet_pt"][{"dataset": args.dataset}]
    mean_pt = np.average(h.axes[0].centers, weights=h.values())
    say(f"  leading-jet pT histogram: {h.sum():.0f} entries, mean {mean_pt:.0f} GeV")
    say(f"  sideband: {len(table)} events with two jets, ids {sorted(table.ids)} -> {output}")
    if args.point_clouds is not None:
        clouds = collect_point_clouds(out, fileset=fileset)[args.dataset]
        path = write_point_clouds(output.with_name(output.stem + "_clouds.parquet"), clouds)
        say(f"  point clouds {clouds.constituents.shape} -> {path}")
    if demo:  # the two modes on the demo file: stored jets vs reclustered candidates
        other = "particles" if args.mode == "jets" else "jets"
        check = collect_features(run_analysis(fileset, mode=other, chunksize=args.chunksize))
        ref = check[args.dataset]
        same = np.array_equal(ref.event_id, table.event_id)
        diff = float("inf")
        if same:
            diff = max(
                float(
                    np.max(np.abs(ref.columns[c] - table.columns[c]) / (1 + np.abs(ref.columns[c])))
                )
                for c in table.names
            )
        say(f"  {other} mode on the same file: same events {same}, largest difference {diff:.1e}")
        if not same or diff > 1e-4:  # float32 storage of the stored jets
            log.error("the two modes disagree")
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
