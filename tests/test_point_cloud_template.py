"""Tests of the full-phase-space template: jet encoding and the two-model template."""

from __future__ import annotations

import numpy as np
import pytest

from sideband.background.point_cloud.jets import (
    JET_MODEL_FEATURES,
    decode_jets,
    dijet_mass,
    encode_jets,
)
from sideband.errors import InputError


def _jets(n: int, rng: np.random.Generator) -> np.ndarray:
    jets = np.empty((n, 2, 5))
    jets[:, :, 0] = rng.uniform(800, 2000, (n, 2))
    jets[:, :, 1] = rng.uniform(-2, 2, (n, 2))
    jets[:, 0, 2] = rng.uniform(-np.pi, np.pi, n)
    jets[:, 1, 2] = (jets[:, 0, 2] + np.pi + rng.normal(0, 0.2, n) + np.pi) % (2 * np.pi) - np.pi
    jets[:, :, 3] = rng.uniform(0, 500, (n, 2))
    jets[:, :, 4] = rng.integers(1, 200, (n, 2))
    jets[:, :, 0] = np.sort(jets[:, :, 0], axis=1)[:, ::-1]  # pT order, as in a PointCloudTable
    return jets


def test_jet_encoding_round_trip_up_to_the_symmetries():
    rng = np.random.default_rng(1)
    jets = _jets(500, rng)
    x = encode_jets(jets, rng)
    assert x.shape == (500, len(JET_MODEL_FEATURES))
    # dequantised multiplicities: n <= x < n + 1
    assert (x[:, 3] >= jets[:, 0, 4]).all()
    assert (x[:, 3] < jets[:, 0, 4] + 1).all()
    back = decode_jets(x, rng)
    for i in (0, 1, 3, 4):  # pT, eta, m, n exactly (up to float round-off)
        np.testing.assert_allclose(back[:, :, i], jets[:, :, i], rtol=1e-9, atol=1e-9)
    dphi_true = np.abs((jets[:, 1, 2] - jets[:, 0, 2] + np.pi) % (2 * np.pi) - np.pi)
    dphi_back = np.abs((back[:, 1, 2] - back[:, 0, 2] + np.pi) % (2 * np.pi) - np.pi)
    np.testing.assert_allclose(dphi_back, dphi_true, atol=1e-9)
    # the rotation and reflection about the beam keep m_JJ
    np.testing.assert_allclose(dijet_mass(back), dijet_mass(jets), rtol=1e-9)
    # phi_1 is redrawn uniformly
    assert abs(np.mean(back[:, 0, 2])) < 0.3
    assert np.std(back[:, 0, 2]) == pytest.approx(np.pi / np.sqrt(3), rel=0.1)


def test_decode_floors_multiplicity_and_clips_angles():
    rng = np.random.default_rng(2)
    x = encode_jets(_jets(10, rng), rng)
    x[:, 3] = [-3, 0.2, 0.99, 1.0, 5.5, 278.9, 279.0, 300, 1000, 2.0]
    x[:, 8] = np.linspace(-30.0, 800.0, 10)  # log(pi - |Delta phi|): from back to back to 0
    x[:, 4] = np.linspace(-30.0, 800.0, 10)  # log(log(pT_1 / pT_2)): from equal pT to pT_2 ~ 0
    jets = decode_jets(x, rng)
    assert np.isfinite(jets).all()
    assert jets[:, 0, 4].tolist() == [1, 1, 1, 1, 5, 278, 279, 300, 1000, 2]
    dphi = np.abs((jets[:, 1, 2] - jets[:, 0, 2] + np.pi) % (2 * np.pi) - np.pi)
    np.testing.assert_allclose(dphi[0], np.pi, atol=1e-9)
    np.testing.assert_allclose(dphi[1:], 0.0, atol=1e-9)
    # the ordering holds for any generated value: pT_2 <= pT_1 (equal at the edge)
    assert (jets[:, 1, 0] <= jets[:, 0, 0]).all()
    np.testing.assert_allclose(jets[0, 1, 0], jets[0, 0, 0], rtol=1e-12)
    # ... and pT_2 never drops below pT_1 / 1000 (the particle model conditions on log pT)
    np.testing.assert_allclose(jets[-1, 1, 0], jets[-1, 0, 0] / 1000, rtol=1e-9)


def test_encoding_needs_pt_order_and_keeps_the_back_to_back_edge():
    rng = np.random.default_rng(3)
    jets = _jets(50, rng)
    swapped = jets.copy()
    swapped[3] = swapped[3, ::-1]
    with pytest.raises(InputError, match="pT order"):
        encode_jets(swapped, rng)
    # equal pT and exactly back to back encode to finite values that decode to the edge
    jets[:5, 1, 0] = jets[:5, 0, 0]
    jets[:5, 1, 2] = (jets[:5, 0, 2] + 2 * np.pi) % (2 * np.pi) - np.pi
    x = encode_jets(jets, rng)
    assert np.isfinite(x).all()
    back = decode_jets(x, rng)
    np.testing.assert_allclose(back[:5, 1, 0], jets[:5, 0, 0], rtol=1e-5)


def test_dijet_mass_matches_the_feature_code(tmp_path):
    from sideband.features.substructure import dijet_features

    rng = np.random.default_rng(3)
    jets = _jets(50, rng)
    pt, eta, phi, m = (jets[:, :, i] for i in range(4))
    cols = {}
    for k in (1, 2):
        cols[f"pxj{k}"] = pt[:, k - 1] * np.cos(phi[:, k - 1])
        cols[f"pyj{k}"] = pt[:, k - 1] * np.sin(phi[:, k - 1])
        cols[f"pzj{k}"] = pt[:, k - 1] * np.sinh(eta[:, k - 1])
        cols[f"mj{k}"] = m[:, k - 1]
        cols[f"tau1j{k}"] = np.ones(50)
        cols[f"tau2j{k}"] = np.ones(50)
    np.testing.assert_allclose(dijet_mass(jets), dijet_features(cols)["mjj"], rtol=1e-10)


def test_jet_encoding_rejects_bad_jets():
    rng = np.random.default_rng(4)
    jets = _jets(5, rng)
    bad = jets.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(InputError, match="NaN"):
        encode_jets(bad, rng)
    with pytest.raises(InputError, match="shape"):
        encode_jets(jets[:, 0], rng)
    bad = jets.copy()
    bad[1, 1, 4] = 0
    with pytest.raises(InputError, match="constituent"):
        encode_jets(bad, rng)


def _toy_table(n: int, m: int, seed: int):
    """Toy dijet events: jets of 2-20 constituents with Gaussian (Δη, Δφ), pT_rel summing to 1."""
    from sideband.records import PointCloudTable

    rng = np.random.default_rng(seed)
    jets = _jets(n, rng)
    jets[:, :, 4] = rng.integers(2, 21, (n, 2))
    mask = np.arange(m)[None, None, :] < jets[:, :, 4:5]
    cons = np.zeros((n, 2, m, 3), dtype=np.float32)
    raw = rng.exponential(1.0, (n, 2, m)) * mask
    raw = -np.sort(-raw, axis=-1)
    cons[..., 0] = raw / raw.sum(-1, keepdims=True)
    cons[..., 1] = rng.normal(0, 0.2, (n, 2, m)) * mask
    cons[..., 2] = rng.normal(0, 0.2, (n, 2, m)) * mask
    mjj = dijet_mass(jets)
    return PointCloudTable(cons, mask, jets, mjj, np.arange(n))


def test_point_cloud_template_fits_samples_saves_and_resumes(tmp_path):
    from sideband.background.point_cloud.template import PointCloudTemplate

    table = _toy_table(300, 24, seed=5)
    small = {
        "jet_model": {"epochs": 3, "hidden_features": 32, "n_blocks": 2, "batch_size": 64},
        "particle_model": {"epochs": 2, "hidden": 16, "global_dim": 8, "n_layers": 2,
                           "n_steps": 4, "batch_size": 64},
        "device": "cpu",
        "seed": 3,
    }  # fmt: skip
    template = PointCloudTemplate(**small, checkpoint_dir=tmp_path / "ck").fit(table)
    assert template.max_constituents_ == 24
    masses = np.quantile(table.mjj, [0.4, 0.5, 0.6, 0.45, 0.55])
    out = template.sample(masses, seed=11)
    assert out.constituents.shape == (5, 2, 24, 3)
    np.testing.assert_array_equal(out.mjj, masses)
    # the mask holds the generated multiplicity (at most M), first slots; zeros elsewhere
    np.testing.assert_array_equal(out.mask.sum(-1), np.minimum(out.jets[:, :, 4], 24))
    assert (out.constituents[~out.mask] == 0).all()
    assert np.isfinite(out.constituents).all()
    assert np.isfinite(template.mjj_consistency(out)).all()
    # save/load: the same sample for the same seed
    template.save(tmp_path / "pc.pt")
    back = PointCloudTemplate.load(tmp_path / "pc.pt", device="cpu")
    again = back.sample(masses, seed=11)
    np.testing.assert_array_equal(again.constituents, out.constituents)
    np.testing.assert_array_equal(again.jets, out.jets)
    # a second fit with the same checkpoints resumes both models: same result
    resumed = PointCloudTemplate(**small, checkpoint_dir=tmp_path / "ck").fit(table)
    np.testing.assert_array_equal(resumed.sample(masses, seed=11).constituents, out.constituents)
    with pytest.raises(InputError, match="PointCloudTable"):
        PointCloudTemplate().fit(table.constituents)
    with pytest.raises(InputError, match="only 50"):
        PointCloudTemplate().fit(table.select(np.arange(50)))


def _tiny_clouds(m: int):
    from pathlib import Path

    from sideband.events import iter_particles
    from sideband.features import jet_point_clouds

    tiny = (
        Path(__file__).parents[1].parent
        / "shared/data/lhco_rnd/raw_tiny/events_anomalydetection_tiny.h5"
    )
    if not tiny.exists():
        pytest.skip(f"shared data file {tiny} is absent (../shared/data beside the repo)")
    parts = next(iter(iter_particles(tiny, chunk_size=40))).particles
    return jet_point_clouds(parts, max_constituents=m)


def test_close_jets_makes_each_jet_the_sum_of_its_constituents():
    from sideband.background.point_cloud.template import close_jets

    pc = _tiny_clouds(400)  # every constituent fits
    points, mask, jets = pc["constituents"], pc["mask"], pc["jets"]
    # data already closes: close_jets changes it only at float32 precision
    same_points, same_jets = close_jets(points, mask, jets)
    np.testing.assert_allclose(same_jets, jets, rtol=2e-6, atol=2e-5)
    np.testing.assert_allclose(same_points, points, atol=2e-5)
    # a "generated" cloud that does not add up to its jet: after close_jets it does
    bent = points.copy()
    bent[..., 0] *= 1.2
    bent[..., 1] += 0.05 * mask
    closed, new_jets = close_jets(bent, mask, jets)
    c = closed.astype(np.float64)
    sx = (c[..., 0] * np.cos(c[..., 2]) * mask).sum(-1)
    sy = (c[..., 0] * np.sin(c[..., 2]) * mask).sum(-1)
    np.testing.assert_allclose(np.hypot(sx, sy), 1.0, atol=1e-5)
    np.testing.assert_allclose(new_jets[..., 0], 1.2 * jets[..., 0], rtol=1e-5)
    # shifting every constituent's eta moves a massive jet's eta by about the same
    np.testing.assert_allclose(new_jets[..., 1], jets[..., 1] + 0.05, atol=0.01)
    np.testing.assert_array_equal(new_jets[..., 4], jets[..., 4])
    assert (closed[~mask] == 0).all()
    # jets with more constituents than slots keep the jet model's kinematics
    few = _tiny_clouds(10)
    kept_points, kept_jets = close_jets(few["constituents"], few["mask"], few["jets"])
    np.testing.assert_array_equal(kept_jets, few["jets"])
    np.testing.assert_array_equal(kept_points, few["constituents"])


def test_close_clouds_moves_generated_clouds_onto_their_jets():
    from sideband.background.point_cloud.template import close_clouds, cloud_closure

    pc = _tiny_clouds(400)  # every constituent fits
    points, mask, jets = pc["constituents"], pc["mask"], pc["jets"]
    closure = cloud_closure(points, mask, jets)
    np.testing.assert_allclose(closure[..., [0, 2, 3]], np.broadcast_to([1.0, 0, 0], (40, 2, 3)),
                               atol=2e-5)  # fmt: skip
    # data already closes: unchanged up to float32 precision
    np.testing.assert_allclose(close_clouds(points, mask, jets), points, atol=3e-5)
    # a "generated" cloud off its jet: too much pT, shifted, too wide, too much mass
    bent = points.copy()
    bent[..., 0] *= 1.2
    bent[..., 1] += 0.05
    bent[..., 2] -= 0.03
    bent[..., 1:] *= 1.3
    bent[~mask] = 0.0
    off = cloud_closure(bent, mask, jets)
    assert np.abs(off[..., 0] - 1).max() > 0.15
    assert np.abs(off[..., 1] - 1).max() > 0.2
    assert np.abs(off[..., 2]).max() > 0.04
    closed = close_clouds(bent, mask, jets)
    after = cloud_closure(closed, mask, jets)
    np.testing.assert_allclose(after[..., 0], 1.0, atol=1e-5)  # pT
    np.testing.assert_allclose(after[..., 1][jets[..., 3] > 20], 1.0, atol=0.06)  # mass: a few %
    np.testing.assert_allclose(after[..., 2:], 0.0, atol=5e-5)  # direction (float32 output)
    assert (closed[~mask] == 0).all()
    np.testing.assert_array_equal(closed[..., 0] > 0, mask)
    # permutation equivariant: permuting the real points permutes the output
    rng = np.random.default_rng(0)
    perm = bent.copy()
    order = {}
    for i in range(len(perm)):
        for j in range(2):
            n = int(mask[i, j].sum())
            order[i, j] = rng.permutation(n)
            perm[i, j, :n] = bent[i, j, order[i, j]]
    closed_perm = close_clouds(perm, mask, jets)
    for (i, j), p in order.items():
        np.testing.assert_allclose(closed_perm[i, j, : len(p)], closed[i, j, p], atol=1e-5)
    # widening a cloud keeps its points inside the cone (up to the last pass's small shift) ...
    narrow = points.copy()
    narrow[..., 1:] *= 0.7
    widened = close_clouds(narrow, mask, jets, cone_radius=1.0)
    big = jets[..., 3] > 50
    # (the power map's gamma is estimated from the mean distance: a few % left after 8 passes)
    np.testing.assert_allclose(cloud_closure(widened, mask, jets)[..., 1][big], 1.0, atol=0.05)
    r_before = np.hypot(points[..., 1], points[..., 2])[mask]
    r_after = np.hypot(widened[..., 1], widened[..., 2])[mask]
    assert r_after.max() < max(r_before.max(), 1.0) + 0.02
    # ... where a uniform scaling pushes points out of it
    uniform = close_clouds(narrow, mask, jets, cone_radius=None)
    np.testing.assert_allclose(cloud_closure(uniform, mask, jets)[..., 1][big], 1.0, atol=5e-3)
    assert (np.hypot(uniform[..., 1], uniform[..., 2])[mask] > 1.05).sum() > (r_after > 1.05).sum()


def test_truncated_clouds_get_the_closure_of_similar_training_jets():
    from sideband.background.point_cloud.template import (
        TruncationFractions,
        close_clouds,
        cloud_closure,
    )

    pc = _tiny_clouds(20)  # most jets have more than 20 constituents
    points, mask, jets = pc["constituents"], pc["mask"], pc["jets"]
    truncated = jets[..., 4] > 20
    assert truncated.mean() > 0.8
    own = cloud_closure(points, mask, jets)
    assert (own[..., 0][truncated] < 1).all()
    # with the data's own targets close_clouds leaves the data as it is
    np.testing.assert_allclose(close_clouds(points, mask, jets, truncated=own), points, atol=3e-5)
    # without targets a truncated cloud is left as generated
    bent = points * np.float32(0.9)
    kept = close_clouds(bent, mask, jets)
    np.testing.assert_array_equal(kept[truncated], bent[truncated])
    # given targets, it takes them
    target = np.broadcast_to([0.95, 0.9, 0.01, -0.02], (*jets.shape[:2], 4))
    after = cloud_closure(close_clouds(bent, mask, jets, truncated=target), mask, jets)
    np.testing.assert_allclose(after[truncated][:, [0, 2, 3]],
                               np.broadcast_to([0.95, 0.01, -0.02], (truncated.sum(), 3)),
                               atol=2e-4)  # fmt: skip
    # the mass where the angular scale needed lies within the allowed [0.5, 2]
    reachable = truncated & (jets[..., 3] > 50) & (np.abs(np.log(0.9 / own[..., 1])) < 0.5)
    assert reachable.sum() > 10
    np.testing.assert_allclose(after[reachable][:, 1], 0.9, atol=0.05)  # widening: a few %
    # the table: n, m / pT and the four closure columns of the truncated training clouds
    tf = TruncationFractions(k=3).fit(points, mask, jets, np.random.default_rng(0))
    assert tf.table_.shape == (truncated.sum(), 6)
    assert (np.diff(tf.table_[:, 0]) >= 0).all()
    m_over_pt = jets[..., 3][truncated] / jets[..., 0][truncated]
    np.testing.assert_allclose(np.sort(tf.table_[:, 1]), np.sort(m_over_pt))
    query = np.zeros((2, 2, 5))
    query[..., 4] = [[25, 400], [60, 80]]
    query[..., 0] = 1000.0
    query[..., 3] = [[50.0, 300.0], [100.0, 20.0]]
    drawn = tf.draw(query, np.random.default_rng(1))
    assert drawn.shape == (2, 2, 4)
    # each draw is one training jet's row, among the k nearest in (log n, m / pT)
    keys = np.column_stack([np.log(tf.table_[:, 0]), tf.table_[:, 1]])
    scale = keys.std(axis=0)
    for row, q in zip(drawn.reshape(-1, 4), query.reshape(-1, 5), strict=True):
        hit = np.flatnonzero((tf.table_[:, 2:] == row).all(axis=1))
        assert hit.size >= 1
        d = np.hypot(*((keys - [np.log(q[4]), q[3] / q[0]]) / scale).T)
        assert d[hit].min() <= np.sort(d)[2] + 1e-12
    # the mass fraction follows the width at fixed n: wide jets (large m / pT) keep more of it
    wide, narrow = query.copy(), query.copy()
    wide[..., 3], narrow[..., 3] = 400.0, 30.0
    wide[..., 4] = narrow[..., 4] = 60
    many = TruncationFractions(k=5).fit(points, mask, jets, np.random.default_rng(0))
    f_wide = many.draw(np.repeat(wide[None], 50, 0), np.random.default_rng(2))[..., 1].mean()
    f_narrow = many.draw(np.repeat(narrow[None], 50, 0), np.random.default_rng(2))[..., 1].mean()
    assert f_wide > f_narrow
    # the search index is built once per table, and again when the table is replaced
    tree = tf._index[1]
    tf.draw(query, np.random.default_rng(3))
    assert tf._index[1] is tree
    tf.table_ = (
        TruncationFractions()
        .fit(points[::2], mask[::2], jets[::2], np.random.default_rng(0))
        .table_
    )
    again = tf.draw(query, np.random.default_rng(4)).reshape(-1, 4)
    assert tf._index[1] is not tree
    assert all((tf.table_[:, 2:] == row).all(axis=1).any() for row in again)
    # no truncated training cloud: NaN targets (close_clouds then leaves them as generated)
    tf.table_ = tf.table_[:0]
    assert np.isnan(tf.draw(query, np.random.default_rng(0))).all()


def test_fold_into_cone_mirrors_points_beyond_the_radius():
    from sideband.background.point_cloud.template import fold_into_cone

    pts = np.zeros((1, 2, 5, 3), dtype=np.float32)
    pts[0, 0, :, 0] = [0.5, 0.2, 0.1, 0.1, 0.1]
    pts[0, 0, :, 1:] = [[0.1, 0.0], [0.0, 1.05], [0.6, -0.8], [-3.0, 0.0], [0.0, 0.0]]
    pts[0, 1, 0] = (1.0, 1.2, 0.0)  # beyond R but padding: left alone
    mask = np.zeros((1, 2, 5), dtype=bool)
    mask[0, 0, :4] = True
    out = fold_into_cone(pts, mask, 1.0)
    r = np.hypot(out[..., 1], out[..., 2])
    np.testing.assert_allclose(r[0, 0, :4], [0.1, 0.95, 1.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(out[0, 0, 1, 1:], [0.0, 0.95], atol=1e-6)  # direction kept
    np.testing.assert_array_equal(out[..., 0], pts[..., 0])
    np.testing.assert_array_equal(out[0, 1], pts[0, 1])
    assert out.dtype == pts.dtype
    np.testing.assert_allclose(pts[0, 0, 1, 1:], [0.0, 1.05], rtol=1e-6)  # input unchanged
