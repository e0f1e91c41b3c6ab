"""sideband's coffea processors inside a user's own coffea Runner on NanoAOD-style files
(NanoAODSchema): stored FatJets and reclustered PFCands, event identifiers, merging with a
user's own accumulators, iterative and futures executors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import awkward as ak
import hist
import numpy as np
import pytest
import uproot

from sideband.errors import ConfigError, InputError
from sideband.events import iter_fatjet_constituents, read_features, write_features
from sideband.features.processor import (
    DijetFeatureProcessor,
    NanoAODDijetProcessor,
    collect_features,
    collect_point_clouds,
)
from sideband.records import EVENT_IDENTIFIERS, FEATURE_COLUMNS

coffea_processor = pytest.importorskip("coffea.processor")
nanoevents = pytest.importorskip("coffea.nanoevents")

# A NanoAOD-style file with only the collections an analysis needs lacks most of NanoAOD's
# cross-reference branches; coffea warns once per missing one (real NanoAOD files have them).
pytestmark = pytest.mark.filterwarnings("ignore:Missing cross-reference index:RuntimeWarning")


# --------------------------------------------------------------------------------------------
# a NanoAOD-style file that coffea's NanoAODSchema accepts
# (tests/test_events_root.py's write_nano has no run / luminosityBlock, which NanoAODSchema needs)
# --------------------------------------------------------------------------------------------


def write_nanoaod(path: Path, n: int, seed: int, *, labelled: bool = True, run: int = 1) -> Path:
    """``Events`` with run, luminosityBlock, event, label (optional), FatJet (pt, eta, phi,
    mass, tau1..3, nConstituents), PFCands (pt, eta, phi, mass, charge, puppiWeight) and the
    PFNano association FatJetPFCands (jetIdx, pFCandsIdx), its rows shuffled (not grouped by
    jet). Each jet is a spray of candidates around its axis, plus soft candidates everywhere."""
    rng = np.random.default_rng(seed)
    fj: dict[str, list[list[float]]] = {
        q: [] for q in ("pt", "eta", "phi", "mass", "tau1", "tau2", "tau3", "nConstituents")
    }
    pf: dict[str, list[list[float]]] = {
        q: [] for q in ("pt", "eta", "phi", "mass", "charge", "puppiWeight")
    }
    links: dict[str, list[list[int]]] = {"jetIdx": [], "pFCandsIdx": []}
    for _ in range(n):
        n_jets = int(rng.choice([0, 1, 2, 2, 3, 3]))
        jets = {q: [] for q in fj}
        cands = {q: [] for q in pf}
        pairs: list[tuple[int, int]] = []
        for j in range(n_jets):
            pt, eta, phi = rng.uniform(300, 1800), rng.uniform(-2, 2), rng.uniform(-np.pi, np.pi)
            k = int(rng.integers(3, 25))
            first = len(cands["pt"])
            for _ in range(k):
                cands["pt"].append(float(pt * rng.dirichlet(np.ones(k))[0] + 0.5))
                cands["eta"].append(float(eta + rng.normal(0, 0.15)))
                cands["phi"].append(
                    float((phi + rng.normal(0, 0.15) + np.pi) % (2 * np.pi) - np.pi)
                )
            pairs += [(j, first + i) for i in range(k)]
            tau1 = rng.uniform(50, 200)
            for q, v in (
                ("pt", pt),
                ("eta", eta),
                ("phi", phi),
                ("mass", rng.uniform(10, 300)),
                ("tau1", tau1),
                ("tau2", tau1 * rng.uniform(0.2, 0.9)),
                ("tau3", tau1 * rng.uniform(0.1, 0.5)),
                ("nConstituents", k),
            ):
                jets[q].append(float(v))
        for _ in range(int(rng.integers(0, 15))):  # soft candidates outside the jets
            cands["pt"].append(float(rng.exponential(5.0) + 0.2))
            cands["eta"].append(float(rng.uniform(-2.5, 2.5)))
            cands["phi"].append(float(rng.uniform(-np.pi, np.pi)))
        m = len(cands["pt"])
        cands["mass"] = [float(x) for x in rng.choice([0.0, 0.13957], m)]
        cands["charge"] = [float(x) for x in rng.choice([-1, 0, 1], m)]
        cands["puppiWeight"] = [float(x) for x in rng.uniform(0.5, 1.0, m)]
        perm = rng.permutation(len(pairs))
        links["jetIdx"].append([pairs[i][0] for i in perm])
        links["pFCandsIdx"].append([pairs[i][1] for i in perm])
        for q, values in fj.items():
            values.append(jets[q])
        for q, values in pf.items():
            values.append(cands[q])
    int_fields = {"nConstituents": np.int32, "charge": np.int32}
    data: dict[str, Any] = {
        "run": np.full(n, run, np.uint32),
        "luminosityBlock": (np.arange(n) // 7 + 1).astype(np.uint32),
        "event": np.arange(5_000_000_000, 5_000_000_000 + 3 * n, 3, dtype=np.uint64),
        "FatJet": ak.zip(
            {q: ak.values_astype(ak.Array(v), int_fields.get(q, np.float32)) for q, v in fj.items()}
        ),
        "PFCands": ak.zip(
            {q: ak.values_astype(ak.Array(v), int_fields.get(q, np.float32)) for q, v in pf.items()}
        ),
        "FatJetPFCands": ak.zip(
            {q: ak.values_astype(ak.Array(v), np.int32) for q, v in links.items()}
        ),
    }
    if labelled:
        data["label"] = rng.integers(0, 2, n).astype(np.int32)
    with uproot.recreate(path) as fh:
        types = {k: (v.type if isinstance(v, ak.Array) else v.dtype) for k, v in data.items()}
        fh.mktree("Events", types).extend(data)
        fh.mktree("Runs", {"run": np.uint32}).extend({"run": np.array([run], np.uint32)})
    return path


@pytest.fixture(scope="module")
def nano_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_nanoaod(tmp_path_factory.mktemp("nano") / "nano.root", 120, seed=3)


def run(
    fileset: dict[str, Any],
    proc: Any,
    *,
    executor: str = "iterative",
    schema: Any = None,
    chunksize: int = 37,
) -> Any:
    """coffea's Runner as a user would call it (retries off: see LIBRARY_NOTES)."""
    from coffea.nanoevents import NanoAODSchema

    if executor == "iterative":
        ex = coffea_processor.IterativeExecutor(status=False, retries=0)
    else:
        ex = coffea_processor.FuturesExecutor(workers=2, status=False, retries=0)
    runner = coffea_processor.Runner(
        ex, chunksize=chunksize, schema=schema or NanoAODSchema, format="root"
    )
    return runner(fileset, proc, treename="Events")


def test_fatjet_mode_matches_uproot_reader(nano_file: Path) -> None:
    out = run({"sig": [str(nano_file)]}, NanoAODDijetProcessor(jets="FatJet"))
    table = collect_features(out)["sig"]
    ref = read_features(nano_file, jets="nanoaod")  # uproot path, event_id = `event`
    assert 20 < len(table) == len(ref) < 120  # some events have fewer than two FatJets
    for name in FEATURE_COLUMNS:
        np.testing.assert_array_equal(table.columns[name], ref.columns[name], err_msg=name)
    # event_id: the entry number; NanoAOD's identifiers in ids, as the uproot reader has them
    n_fatjet = uproot.open(nano_file)["Events"]["nFatJet"].array(library="np")
    np.testing.assert_array_equal(table.event_id, np.flatnonzero(n_fatjet >= 2))
    assert sorted(table.ids) == sorted(EVENT_IDENTIFIERS)
    np.testing.assert_array_equal(table.ids["event"], ref.event_id)
    for name in EVENT_IDENTIFIERS:
        np.testing.assert_array_equal(table.ids[name], ref.ids[name])
    np.testing.assert_array_equal(table.label, ref.label)
    acc = out["sig"]
    assert acc["n_events"] == 120
    assert acc["n_fewer_than_two_jets"] == 120 - len(table)
    ranges = sorted((c["entrystart"], c["entrystop"]) for c in acc["chunks"])
    assert len(ranges) >= 3  # chunks of <= 37 entries (coffea balances them)
    assert [r[0] for r in ranges[1:]] == [r[1] for r in ranges[:-1]]
    assert ranges[-1][1] == 120


def test_particles_mode_matches_flat_branch_processor(nano_file: Path) -> None:
    from coffea.nanoevents import BaseSchema

    fileset = {"d": [str(nano_file)]}
    nano = collect_features(run(fileset, NanoAODDijetProcessor(particles="PFCands")))["d"]
    flat_proc = DijetFeatureProcessor(
        pt_branch="PFCands_pt",
        eta_branch="PFCands_eta",
        phi_branch="PFCands_phi",
        mass_branch="PFCands_mass",
    )
    flat = collect_features(run(fileset, flat_proc, schema=BaseSchema))["d"]
    assert len(nano) > 50
    np.testing.assert_array_equal(nano.event_id, flat.event_id)
    for name in FEATURE_COLUMNS:
        np.testing.assert_array_equal(nano.columns[name], flat.columns[name], err_msg=name)
    for name in EVENT_IDENTIFIERS:  # the flat processor keeps them too (BaseSchema fields)
        np.testing.assert_array_equal(nano.ids[name], flat.ids[name])
    # PUPPI-weighted candidates change the jets
    weighted = collect_features(
        run(fileset, NanoAODDijetProcessor(particles="PFCands", weight="puppiWeight"))
    )["d"]
    assert not np.allclose(weighted.columns["mjj"][:10], nano.columns["mjj"][:10])


def test_fatjet_point_clouds_follow_the_association_table(nano_file: Path) -> None:
    m = 16
    out = run({"d": [str(nano_file)]}, NanoAODDijetProcessor(jets="FatJet", point_clouds=m))
    clouds = collect_point_clouds(out)["d"]
    table = collect_features(out)["d"]
    np.testing.assert_array_equal(clouds.event_id, table.event_id)
    np.testing.assert_allclose(clouds.mjj, table.mjj, rtol=1e-9)
    reference = next(iter(iter_fatjet_constituents(nano_file, chunk_size=1000)))
    assert len(reference) == 120
    for row, entry in enumerate(table.event_id[:25]):
        for k in range(2):
            jet = reference["jets"][entry][k]
            cons = jet["constituents"]
            pt = np.asarray(cons["pt"], dtype=np.float64)
            order = np.argsort(-pt, kind="stable")[:m]
            got = clouds.constituents[row, k][clouds.mask[row, k]]
            assert clouds.jets[row, k, 4] == len(pt)  # multiplicity before truncation
            assert len(got) == min(m, len(pt))
            np.testing.assert_allclose(got[:, 0], pt[order] / jet["pt"], rtol=1e-5)
            deta = np.asarray(cons["eta"])[order] - jet["eta"]
            np.testing.assert_allclose(got[:, 1], deta, atol=1e-5)
            dphi = (np.asarray(cons["phi"])[order] - jet["phi"] + np.pi) % (2 * np.pi) - np.pi
            np.testing.assert_allclose(got[:, 2], dphi, atol=1e-5)
            np.testing.assert_allclose(
                clouds.jets[row, k, :4],
                [jet["pt"], jet["eta"], jet["phi"], jet["mass"]],
                rtol=1e-6,
                atol=1e-6,
            )


def test_pfnano_schema_gives_the_same_output(nano_file: Path) -> None:
    from coffea.nanoevents import PFNanoAODSchema

    proc = NanoAODDijetProcessor(jets="FatJet", point_clouds=8)
    nano = run({"d": [str(nano_file)]}, proc)
    pfnano = run({"d": [str(nano_file)]}, proc, schema=PFNanoAODSchema)
    a, b = collect_features(nano)["d"], collect_features(pfnano)["d"]
    for name in FEATURE_COLUMNS:
        np.testing.assert_array_equal(a.columns[name], b.columns[name])
    ca, cb = collect_point_clouds(nano)["d"], collect_point_clouds(pfnano)["d"]
    np.testing.assert_array_equal(ca.constituents, cb.constituents)
    assert ca.mask.sum() > 100


def test_ids_round_trip_and_stay_unique_over_files(tmp_path: Path) -> None:
    a = write_nanoaod(tmp_path / "a.root", 40, seed=5, run=11)
    b = write_nanoaod(tmp_path / "b.root", 30, seed=6, run=12)
    # b first in the fileset: its entries come first in the id numbering
    fileset = {"data": {"files": {str(b): "Events", str(a): "Events"}}}
    out = run(fileset, NanoAODDijetProcessor(), chunksize=16)
    table = collect_features(out, fileset=fileset)["data"]
    ref_a, ref_b = read_features(a, jets="nanoaod"), read_features(b, jets="nanoaod")
    assert len(table) == len(ref_a) + len(ref_b)
    assert len(np.unique(table.event_id)) == len(table)
    from_b = table.ids["run"] == 12
    assert from_b.sum() == len(ref_b)
    assert table.event_id[from_b].max() < 30 <= table.event_id[~from_b].min()
    np.testing.assert_array_equal(table.ids["event"][~from_b], ref_a.ids["event"])
    np.testing.assert_array_equal(table.columns["mjj"][~from_b], ref_a.mjj)
    # without the fileset: files by name (a before b)
    by_name = collect_features(out)["data"]
    assert by_name.event_id[by_name.ids["run"] == 11].max() < 40
    # written and read back with the identifiers
    for suffix in (".parquet", ".root"):
        back = read_features(write_features(tmp_path / f"f{suffix}", table))
        np.testing.assert_array_equal(back.event_id, table.event_id)
        for name in EVENT_IDENTIFIERS:
            np.testing.assert_array_equal(back.ids[name], table.ids[name], err_msg=suffix)


def test_missing_collections_name_the_option(nano_file: Path) -> None:
    from coffea.nanoevents import NanoAODSchema, NanoEventsFactory

    events = NanoEventsFactory.from_root(
        {str(nano_file): "Events"},
        schemaclass=NanoAODSchema,
        metadata={"dataset": "d", "filename": str(nano_file)},
        mode="virtual",
    ).events()
    with pytest.raises(InputError, match=r"no collection 'FatJetAK15'.*set jets=.*'FatJet'"):
        NanoAODDijetProcessor(jets="FatJetAK15").process(events)
    with pytest.raises(InputError, match=r"no collection 'PFCand'.*set particles=.*'PFCands'"):
        NanoAODDijetProcessor(particles="PFCand").process(events)
    with pytest.raises(InputError, match=r"no collection 'FatJetCands'.*set link="):
        NanoAODDijetProcessor(link="FatJetCands", point_clouds=8).process(events)
    with pytest.raises(InputError, match=r"'PFCands' has no field\(s\) \['w'\].*particles="):
        NanoAODDijetProcessor(particles="PFCands", weight="w").process(events)
    with pytest.raises(InputError, match="pt_branch"):  # the flat processor on NanoAOD events
        DijetFeatureProcessor().process(events)
    flat = NanoEventsFactory.from_root(
        {str(nano_file): "Events"}, schemaclass=nanoevents.BaseSchema, mode="virtual"
    ).events()
    with pytest.raises(InputError, match="read the file with coffea's NanoAODSchema"):
        NanoAODDijetProcessor().process(flat)
    # through a user's Runner the message survives coffea's wrapping
    with pytest.raises(Exception, match="no collection 'FatJetAK15'"):
        run({"d": [str(nano_file)]}, NanoAODDijetProcessor(jets="FatJetAK15"))


def test_option_errors() -> None:
    with pytest.raises(ConfigError, match="give one"):
        NanoAODDijetProcessor(jets="FatJet", particles="PFCands")
    with pytest.raises(ConfigError, match="r set with jets='FatJet'"):
        NanoAODDijetProcessor(jets="FatJet", r=0.8)
    with pytest.raises(InputError, match="N-subjettiness axes"):
        NanoAODDijetProcessor(particles="PFCands", axes="kt")
    assert NanoAODDijetProcessor().mode == "jets"
    assert NanoAODDijetProcessor(particles="PFCands").mode == "particles"
    with pytest.raises(InputError, match="no sideband feature accumulator"):
        collect_features({"cutflow": {"all": 3}})


# --------------------------------------------------------------------------------------------
# a user's own processor around sideband's (module level: loky workers import it from here)
# --------------------------------------------------------------------------------------------


class UserAnalysis(coffea_processor.ProcessorABC):  # type: ignore[misc]
    """A user's processor: its own jet-pT histogram and cutflow, plus sideband's features."""

    def __init__(self) -> None:
        self.sideband = NanoAODDijetProcessor(jets="FatJet", point_clouds=8)

    def process(self, events: Any) -> dict[str, Any]:
        dataset = events.metadata["dataset"]
        out: dict[str, Any] = self.sideband.process(events)
        jets = events.FatJet
        h = hist.Hist.new.Reg(20, 0, 2000, name="pt", label="leading FatJet pT [GeV]").Double()
        h.fill(pt=ak.to_numpy(ak.max(jets.pt, axis=1)[ak.num(jets) > 0]))
        out["leading_pt"] = h
        out["cutflow"] = {
            dataset: {"all": len(events), ">= 2 FatJets": int(ak.sum(ak.num(jets) >= 2))}
        }
        out["files"] = {events.metadata["filename"]}
        return out

    def postprocess(self, accumulator: Any) -> Any:
        return accumulator


def test_user_processor_merges_and_executors_agree(tmp_path: Path, nano_file: Path) -> None:
    other = write_nanoaod(tmp_path / "other.root", 50, seed=9, labelled=False)
    fileset = {"sig": [str(nano_file)], "bkg": [str(other)]}
    outs = {
        ex: run(fileset, UserAnalysis(), executor=ex, chunksize=25)
        for ex in ("iterative", "futures")
    }
    for out in outs.values():
        assert out["cutflow"]["sig"]["all"] == out["sig"]["n_events"] == 120
        assert out["cutflow"]["bkg"][">= 2 FatJets"] == 50 - out["bkg"]["n_fewer_than_two_jets"]
        assert out["leading_pt"].sum() > 0
        assert out["files"] == {str(nano_file), str(other)}
    it, fut = outs["iterative"], outs["futures"]
    assert it["cutflow"] == fut["cutflow"]
    assert it["leading_pt"] == fut["leading_pt"]
    tables = {ex: collect_features(out) for ex, out in outs.items()}
    assert sorted(tables["iterative"]) == ["bkg", "sig"]  # the user's keys are skipped
    assert tables["iterative"]["bkg"].label is None
    for ds in ("sig", "bkg"):
        a, b = tables["iterative"][ds], tables["futures"][ds]
        np.testing.assert_array_equal(a.event_id, b.event_id)
        for name in FEATURE_COLUMNS:
            np.testing.assert_array_equal(a.columns[name], b.columns[name])
        for name in EVENT_IDENTIFIERS:
            np.testing.assert_array_equal(a.ids[name], b.ids[name])
        assert it[ds]["mjj_hist"] == fut[ds]["mjj_hist"]
        ca, cb = collect_point_clouds(it)[ds], collect_point_clouds(fut)[ds]
        np.testing.assert_array_equal(ca.constituents, cb.constituents)
        np.testing.assert_array_equal(ca.event_id, a.event_id)


def test_worked_example_runs_on_the_bundled_data(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import importlib.util

    script = Path(__file__).resolve().parents[1] / "analysis" / "coffea_user_example.py"
    spec = importlib.util.spec_from_file_location("coffea_user_example", script)
    assert spec is not None
    assert spec.loader is not None
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    output = tmp_path / "features.parquet"
    assert example.main(["--output", str(output), "--point-clouds", "8"]) == 0  # demo input
    table = read_features(output)
    assert len(table) == 300  # the bundled raw events all have two jets
    assert sorted(table.ids) == sorted(EVENT_IDENTIFIERS)
    np.testing.assert_array_equal(table.ids["event"], table.event_id + 1)
    assert table.label is not None
    assert table.label.sum() > 0
    report = capsys.readouterr().out
    assert "|delta eta| < 1.3" in report
    assert "particles mode on the same file: same events True" in report


def test_sideband_features_keeps_the_nanoaod_identifiers(tmp_path: Path) -> None:
    from sideband.features import extract_features

    path = write_nanoaod(tmp_path / "nano.root", 60, seed=8, run=7)
    table = extract_features(path, branches="nanoaod", chunk_size=25, progress=False)
    assert sorted(table.ids) == sorted(EVENT_IDENTIFIERS)
    with uproot.open(path) as fh:
        stored = fh["Events"].arrays(list(EVENT_IDENTIFIERS), library="np")
    # the nanoaod preset takes `event` as event_id; every row carries its own run/lumi/event
    row = {int(e): i for i, e in enumerate(stored["event"])}
    entries = np.array([row[int(e)] for e in table.ids["event"]])
    np.testing.assert_array_equal(table.event_id, table.ids["event"])
    for name in EVENT_IDENTIFIERS:
        np.testing.assert_array_equal(table.ids[name], stored[name][entries])
