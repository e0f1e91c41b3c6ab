"""EPiC-FM particle generator: equivariance, masking, learning on a toy, persistence, inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from sideband.background.point_cloud import EPiCVelocityNet, ParticleFlowMatching
from sideband.background.point_cloud import particles as particles_module
from sideband.background.point_cloud.epic import nearest_neighbours
from sideband.errors import CheckpointError, InputError, NotFittedError

RAW = (
    Path(__file__).resolve().parents[2]
    / "shared"
    / "data"
    / "lhco_like"
    / "events_lhco_like_raw.h5"
)
SMALL = {"hidden": 32, "global_dim": 8, "n_layers": 2, "batch_size": 64, "n_steps": 20}


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"shared data file {path} is absent (../shared/data beside the repo)")
    return path


def _net(seed: int = 0, n_neighbours: int = 0, neighbour_layers: int = 1) -> EPiCVelocityNet:
    torch.manual_seed(seed)
    return EPiCVelocityNet(
        3, 2, hidden=16, global_dim=4, n_layers=2, n_neighbours=n_neighbours,
        neighbour_layers=neighbour_layers,
    ).eval()  # fmt: skip


def _clouds(rng: np.random.Generator, n: int, m: int) -> tuple[np.ndarray, np.ndarray]:
    counts = rng.integers(1, m + 1, n)
    counts[0] = m  # one full cloud
    mask = np.arange(m)[None, :] < counts[:, None]
    x = rng.standard_normal((n, m, 3)) * mask[:, :, None]
    return x, mask


def _toy(n: int = 400, m: int = 12, seed: int = 0) -> dict[str, np.ndarray]:
    """Points ~ N(mu(c), sigma) with mu = (2c, -c, s): s ~ N(0, 0.7) is shared by the points of
    one cloud (so the within-cloud spread of feature 2, 0.3, needs the pooled global vector)."""
    rng = np.random.default_rng(seed)
    c = rng.uniform(-1, 1, (n, 1))
    counts = rng.integers(3, m + 1, n)
    mask = np.arange(m)[None, :] < counts[:, None]
    shift = rng.normal(0.0, 0.7, n)
    mu = np.stack([2 * c[:, 0], -c[:, 0], shift], axis=1)
    x = mu[:, None, :] + rng.standard_normal((n, m, 3)) * np.array([0.5, 0.3, 0.3])
    return {"points": np.where(mask[:, :, None], x, 0.0), "mask": mask, "cond": c}


def _toy_errors(sample: np.ndarray, toy: dict[str, np.ndarray]) -> dict[str, float]:
    """Deviations from the toy's truth: slopes of each feature on c (2, -1, 0), residual widths
    of features 0 and 1 (0.5, 0.3) and the within-cloud spread of feature 2 (0.3)."""
    mask, c = toy["mask"], toy["cond"][:, 0]
    real = sample[mask]
    cc = np.repeat(c, mask.sum(axis=1))
    out = {}
    for k, (slope_true, width_true) in enumerate(((2.0, 0.5), (-1.0, 0.3), (0.0, None))):
        slope, icpt = np.polyfit(cc, real[:, k], 1)
        out[f"slope{k}"] = abs(slope - slope_true)
        if width_true is not None:
            out[f"width{k}"] = abs((real[:, k] - slope * cc - icpt).std() / width_true - 1)
    f2 = np.where(mask, sample[:, :, 2], np.nan)
    within = np.sqrt(np.nanmean(np.nanvar(f2, axis=1, ddof=1)))
    out["within2"] = abs(within / 0.3 - 1)
    return out


TOLERANCES = {"slope0": 0.15, "slope1": 0.1, "slope2": 0.1, "width0": 0.1, "width1": 0.15,
              "within2": 0.35}  # fmt: skip


# ---------------------------------------------------------------------------------- network
@pytest.mark.parametrize(("n_neighbours", "layers"), [(0, 1), (3, 1), (3, 2)])
def test_velocity_net_is_permutation_equivariant(n_neighbours: int, layers: int) -> None:
    rng = np.random.default_rng(1)
    x, mask = _clouds(rng, 5, 9)
    net = _net(n_neighbours=n_neighbours, neighbour_layers=layers)
    xt, mt = torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(mask)
    t, c = torch.rand(5), torch.randn(5, 2)
    v = net(xt, t, c, mt)
    # permute all slots (points and mask together): the output permutes the same way
    perm = torch.as_tensor(rng.permutation(9))
    v_perm = net(xt[:, perm], t, c, mt[:, perm])
    torch.testing.assert_close(v_perm, v[:, perm], atol=1e-5, rtol=0)
    # permute only the real points of each cloud, keeping the first-n-slots layout
    xp, vp = xt.clone(), v.clone()
    for i, n in enumerate(mask.sum(axis=1)):
        p = torch.as_tensor(rng.permutation(int(n)))
        xp[i, :n], vp[i, :n] = xt[i, p], v[i, p]
    torch.testing.assert_close(net(xp, t, c, mt), vp, atol=1e-5, rtol=0)
    # the velocity depends on the other points (the EPiC pooling works) and on the context
    assert not torch.allclose(net(xt, t, c + 1, mt), v, atol=1e-3)
    x2 = xt.clone()
    x2[0, 1:] += 1.0
    assert not torch.allclose(net(x2, t, c, mt)[0, 0], v[0, 0], atol=1e-4)


@pytest.mark.parametrize(("n_neighbours", "layers"), [(0, 1), (3, 1), (3, 2)])
def test_padded_slots_never_influence_real_points(n_neighbours: int, layers: int) -> None:
    rng = np.random.default_rng(2)
    x, mask = _clouds(rng, 6, 8)
    net = _net(3, n_neighbours=n_neighbours, neighbour_layers=layers)
    xt, mt = torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(mask)
    t, c = torch.rand(6), torch.randn(6, 2)
    v = net(xt, t, c, mt)
    assert (v[~mt] == 0).all()
    garbage = xt.clone()
    n_pad = int((~mask).sum())
    garbage[~mt] = torch.as_tensor(rng.normal(0, 1e3, (n_pad, 3)), dtype=torch.float32)
    torch.testing.assert_close(net(garbage, t, c, mt), v, atol=1e-6, rtol=0)
    nan_pad = xt.clone()
    nan_pad[~mt] = float("nan")
    torch.testing.assert_close(net(nan_pad, t, c, mt), v, atol=1e-6, rtol=0)
    # more padding slots at the end change nothing either
    wide = torch.cat([xt, torch.randn(6, 5, 3)], dim=1)
    wide_mask = torch.cat([mt, torch.zeros(6, 5, dtype=torch.bool)], dim=1)
    v_wide = net(wide, t, c, wide_mask)
    torch.testing.assert_close(v_wide[:, :8], v, atol=1e-6, rtol=0)
    assert (v_wide[:, 8:] == 0).all()


def test_nearest_neighbours_match_brute_force_and_resolve_small_distances() -> None:
    rng = np.random.default_rng(4)
    x, mask = _clouds(rng, 7, 6)
    mask[1, 2:] = False  # a cloud of 2 real points has 1 neighbour per point
    pos = torch.as_tensor(x[..., 1:], dtype=torch.float32)
    index, valid, edge = nearest_neighbours(pos, torch.as_tensor(mask), 3)
    assert index.shape == valid.shape == (7, 6, 3)
    assert edge.shape == (7, 6, 3, 3)
    for i in range(7):
        n = int(mask[i].sum())
        for a in range(6):
            if a >= n:
                assert not valid[i, a].any()
                continue
            d = np.hypot(*(x[i, :n, 1:] - x[i, a, 1:]).T)
            d[a] = np.inf
            expect = np.argsort(d)[: min(3, n - 1)]
            assert valid[i, a].sum() == len(expect)
            np.testing.assert_array_equal(index[i, a, : len(expect)].numpy(), expect)
            np.testing.assert_allclose(
                edge[i, a, : len(expect), 2].numpy(), np.log(d[expect]), rtol=0, atol=1e-5
            )
    assert (edge[~valid] == 0).all()
    # two points 1e-3 apart far from the origin: the difference keeps the distance (cdist's
    # |a|^2 + |b|^2 - 2ab would lose it in float32)
    far = torch.tensor([[[30.0, 40.0], [30.0006, 40.0008]]])
    _, _, e = nearest_neighbours(far, torch.ones(1, 2, dtype=torch.bool), 1)
    assert float(e[0, 0, 0, 2]) == pytest.approx(np.log(1e-3), abs=0.05)
    np.testing.assert_allclose(e[0, 0, 0, :2].numpy(), [0.6, 0.8], atol=0.05)


def test_neighbour_messages_see_a_close_point_the_pooling_does_not() -> None:
    """Moving one point by 1e-3 towards its nearest neighbour changes that neighbour's velocity
    far more with neighbour layers than without (where it enters only through the pooled mean)."""
    rng = np.random.default_rng(5)
    x = torch.as_tensor(rng.standard_normal((1, 12, 3)), dtype=torch.float32)
    x[0, 1, 1:] = x[0, 0, 1:] + 2e-3
    mask = torch.ones(1, 12, dtype=torch.bool)
    t, c = torch.full((1,), 0.05), torch.zeros(1, 2)
    moved = x.clone()
    moved[0, 1, 1:] = x[0, 0, 1:] + 1e-3
    change = {}
    for k in (0, 3):
        net = _net(6, n_neighbours=k)
        with torch.no_grad():
            change[k] = float((net(moved, t, c, mask) - net(x, t, c, mask))[0, 0].abs().max())
    assert change[3] > 20 * change[0]


# ---------------------------------------------------------------------------------- estimator
@pytest.fixture(scope="module")
def toy() -> dict[str, np.ndarray]:
    return _toy()


@pytest.fixture(scope="module")
def trained(toy: dict[str, np.ndarray]) -> ParticleFlowMatching:
    model = ParticleFlowMatching(**SMALL, epochs=40, patience=None, device="cpu", n_threads=1)
    return model.fit(toy["points"], toy["mask"], toy["cond"])


def test_learns_conditional_toy_and_untrained_fails(
    toy: dict[str, np.ndarray], trained: ParticleFlowMatching
) -> None:
    errors = _toy_errors(trained.sample(toy["cond"], toy["mask"], seed=1), toy)
    bad = {k: round(v, 3) for k, v in errors.items() if v > TOLERANCES[k]}
    assert not bad, f"trained model misses the toy truth: {bad} (all: {errors})"
    assert trained.history_.val_loss[-1] < 0.7 * trained.history_.val_loss[0]
    # the same checks fail for a barely trained model (one epoch at a tiny learning rate)
    untrained = ParticleFlowMatching(**SMALL, epochs=1, learning_rate=1e-7, device="cpu",
                                     n_threads=1).fit(toy["points"], toy["mask"], toy["cond"])  # fmt: skip
    errors0 = _toy_errors(untrained.sample(toy["cond"], toy["mask"], seed=1), toy)
    failed = [k for k, v in errors0.items() if v > TOLERANCES[k]]
    assert {"slope0", "slope1", "within2"} <= set(failed), errors0


def test_sample_shape_padding_seeds_and_batching(
    toy: dict[str, np.ndarray], trained: ParticleFlowMatching, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = np.random.default_rng(5)
    counts = rng.integers(1, 16, 50)
    mask = np.arange(20)[None, :] < counts[:, None]  # more slots than in training: allowed
    cond = rng.uniform(-1, 1, (50, 1))
    s = trained.sample(cond, mask, seed=3)
    assert s.shape == (50, 20, 3)
    assert s.dtype == np.float32
    assert (s[~mask] == 0).all()
    assert np.isfinite(s).all()
    assert (s[mask] != 0).all()
    np.testing.assert_array_equal(trained.sample(cond, mask, seed=3), s)
    np.testing.assert_array_equal(trained.sample(cond, mask), trained.sample(cond, mask))
    assert not np.allclose(trained.sample(cond, mask, seed=4), s)
    # tiny batches (many network calls, different grouping) give the same clouds
    monkeypatch.setitem(particles_module._POINTS_PER_CALL, "cpu", 7)
    np.testing.assert_allclose(trained.sample(cond, mask, seed=3), s, atol=1e-5)


def test_save_load_round_trip(trained: ParticleFlowMatching, tmp_path: Path) -> None:
    path = tmp_path / "pfm.pt"
    trained.save(path)
    loaded = ParticleFlowMatching.load(path, device="cpu")
    assert loaded.get_params()["hidden"] == trained.hidden
    np.testing.assert_array_equal(loaded.point_std_, trained.point_std_)
    np.testing.assert_array_equal(loaded.history_.val_loss, trained.history_.val_loss)
    cond, mask = np.array([[0.3], [-0.5]]), np.arange(12)[None, :] < np.array([[5], [12]])
    np.testing.assert_array_equal(
        loaded.sample(cond, mask, seed=9), trained.sample(cond, mask, seed=9)
    )
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(path.read_bytes()[:200])
    with pytest.raises(CheckpointError, match="corrupt"):
        ParticleFlowMatching.load(corrupt)
    with pytest.raises(CheckpointError, match="fit one"):
        ParticleFlowMatching.load(tmp_path / "missing.pt")
    foreign = tmp_path / "foreign.pt"
    torch.save({"format": "something else"}, foreign)
    with pytest.raises(CheckpointError, match="not a saved sideband"):
        ParticleFlowMatching.load(foreign)


def test_checkpoint_resumes(tmp_path: Path) -> None:
    toy = _toy(n=60, m=6, seed=3)
    args = (toy["points"], toy["mask"], toy["cond"])
    kw = {**SMALL, "hidden": 8, "batch_size": 16, "patience": None, "device": "cpu"}
    straight = ParticleFlowMatching(**kw, epochs=3).fit(*args)
    ParticleFlowMatching(**kw, epochs=2, checkpoint_dir=tmp_path).fit(*args)
    assert (tmp_path / "fit_loop.pt").is_file()
    resumed = ParticleFlowMatching(**kw, epochs=3, checkpoint_dir=tmp_path).fit(*args)
    # epochs 0-1 come from the checkpoint, epoch 2 is trained: identical to an uninterrupted run
    np.testing.assert_allclose(resumed.history_.train_loss, straight.history_.train_loss, rtol=1e-6)
    np.testing.assert_allclose(resumed.history_.val_loss, straight.history_.val_loss, rtol=1e-6)
    with pytest.raises(CheckpointError, match="different model"):
        ParticleFlowMatching(**{**kw, "hidden": 12}, epochs=3, checkpoint_dir=tmp_path).fit(*args)
    # other training times (time_exponent) give other validation times: not resumed
    with pytest.raises(CheckpointError, match="different"):
        ParticleFlowMatching(**kw, epochs=3, time_exponent=2.0, checkpoint_dir=tmp_path).fit(*args)


def test_time_exponent_draws_training_times_near_the_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    toy = _toy(n=200, m=6, seed=6)
    args = (toy["points"], toy["mask"], toy["cond"])
    kw = {**SMALL, "hidden": 8, "batch_size": 16, "patience": None, "device": "cpu", "epochs": 2}
    seen: list[torch.Tensor] = []
    loss = particles_module.point_cfm_loss

    def spy(net, x0, mask, cond, t, eps):
        if net.training:
            seen.append(t.detach().clone())
        return loss(net, x0, mask, cond, t, eps)

    monkeypatch.setattr(particles_module, "point_cfm_loss", spy)
    medians = {}
    for p in (1.0, 2.0):
        seen.clear()
        model = ParticleFlowMatching(**kw, time_exponent=p).fit(*args)
        medians[p] = float(torch.cat(seen).median())
    # median of u ** p for u uniform: 0.5 ** p
    assert medians[1.0] == pytest.approx(0.5, abs=0.06)
    assert medians[2.0] == pytest.approx(0.25, abs=0.06)
    model.save(tmp_path / "t2.pt")
    assert ParticleFlowMatching.load(tmp_path / "t2.pt", device="cpu").time_exponent == 2.0
    for bad in (0.0, -1.0, 50.0, True, "2"):
        with pytest.raises(InputError, match="time_exponent must be"):
            ParticleFlowMatching(**kw, time_exponent=bad).fit(*args)


def test_log_features_give_positive_values(tmp_path: Path) -> None:
    toy = _toy(n=60, m=6, seed=5)
    pts = toy["points"].copy()
    pts[..., 0] = np.where(toy["mask"], np.exp(pts[..., 0]), 0.0)
    model = ParticleFlowMatching(**SMALL, epochs=2, log_features=(0,), device="cpu")
    model.fit(pts, toy["mask"], toy["cond"])
    s = model.sample(toy["cond"], toy["mask"], seed=0)
    assert (s[toy["mask"]][:, 0] > 0).all()
    assert (s[~toy["mask"]] == 0).all()
    model.save(tmp_path / "m.pt")
    loaded = ParticleFlowMatching.load(tmp_path / "m.pt", device="cpu")
    np.testing.assert_array_equal(loaded.sample(toy["cond"], toy["mask"], seed=0), s)
    pts[0, 0, 0] = -1.0
    with pytest.raises(InputError, match="> 0 at every real point"):
        model.fit(pts, toy["mask"], toy["cond"])


def test_disk_plane_map_is_a_bijection_of_the_cone() -> None:
    rng = np.random.default_rng(7)
    r = 0.999 * np.sqrt(rng.uniform(0, 1, 5000))
    phi = rng.uniform(-np.pi, np.pi, 5000)
    xy = np.column_stack([r * np.cos(phi), r * np.sin(phi)]) * 0.8
    xy[0] = 0.0  # the centre maps to the centre
    uv, pulled = particles_module.to_disk_plane(xy, 0.8)
    assert not pulled.any()
    back = particles_module.from_disk_plane(torch.as_tensor(uv), 0.8).numpy()
    np.testing.assert_allclose(back, xy, atol=1e-12)
    # radial: atanh(r / R), direction kept; near the centre the identity / R
    np.testing.assert_allclose(np.hypot(*uv.T), np.arctanh(np.hypot(*xy.T) / 0.8), rtol=1e-10)
    np.testing.assert_allclose(uv[1:] / np.hypot(*uv[1:].T)[:, None],
                               xy[1:] / np.hypot(*xy[1:].T)[:, None], atol=1e-9)  # fmt: skip
    # outside points are pulled in to (1 - 1e-3) R, keeping their direction
    far = np.array([[0.0, 1.2], [0.9, 0.0], [0.3, 0.4]])
    uv_far, pulled_far = particles_module.to_disk_plane(far, 0.8)
    assert pulled_far.tolist() == [True, True, False]
    back_far = particles_module.from_disk_plane(torch.as_tensor(uv_far), 0.8).numpy()
    np.testing.assert_allclose(np.hypot(*back_far[:2].T), 0.8 * 0.999, rtol=1e-9)
    np.testing.assert_allclose(back_far[0], [0.0, 0.8 * 0.999], atol=1e-12)
    # any point of the plane maps back into the cone (onto its edge where tanh rounds to 1)
    wide = torch.as_tensor(rng.standard_normal((1000, 2)) * 50)
    assert (
        torch.linalg.vector_norm(particles_module.from_disk_plane(wide, 0.8), dim=1) <= 0.8 + 1e-12
    ).all()


def test_cone_radius_keeps_generated_points_inside_the_cone(tmp_path: Path) -> None:
    toy = _toy(n=80, m=6, seed=6)
    pts = toy["points"].copy()
    # (Delta eta, Delta phi) in the unit disk, with some points near and one beyond the edge
    pts[..., 1:] = np.tanh(pts[..., 1:]) * 0.7
    pts[0, 0, 1:] = (1.3, 0.0)
    model = ParticleFlowMatching(**SMALL, epochs=2, cone_radius=1.0, device="cpu")
    model.fit(pts, toy["mask"], toy["cond"])
    s = model.sample(toy["cond"], toy["mask"], seed=0)
    r = np.hypot(s[..., 1], s[..., 2])[toy["mask"]]
    assert (r <= 1.0 + 1e-6).all()
    assert np.isfinite(s).all()
    assert (s[~toy["mask"]] == 0).all()
    plain = ParticleFlowMatching(**SMALL, epochs=2, device="cpu").fit(pts, toy["mask"], toy["cond"])
    assert (np.hypot(*plain.sample(toy["cond"], toy["mask"], seed=0)[..., 1:].T) > 1.0).any()
    model.save(tmp_path / "m.pt")
    loaded = ParticleFlowMatching.load(tmp_path / "m.pt", device="cpu")
    assert loaded.cone_radius == 1.0
    np.testing.assert_array_equal(loaded.sample(toy["cond"], toy["mask"], seed=0), s)
    for bad, match in (({"cone_radius": -1.0}, "cone_radius must be"),
                       ({"cone_radius": 1.0, "log_features": (1,)}, "drop them from log_features")):  # fmt: skip
        with pytest.raises(InputError, match=match):
            ParticleFlowMatching(**SMALL, epochs=1, **bad).fit(pts, toy["mask"], toy["cond"])
    with pytest.raises(InputError, match="cone_radius needs"):
        ParticleFlowMatching(**SMALL, epochs=1, cone_radius=1.0).fit(
            pts[..., :2], toy["mask"], toy["cond"]
        )


def _pairs(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Clouds of 4 collinear pairs: centres ~ N(0, 1) in (features 1, 2), each partner 0.02
    away in a random direction (like a π⁰'s photons in a jet); feature 0 ~ N(0, 1)."""
    rng = np.random.default_rng(seed)
    centre = rng.standard_normal((n, 4, 2))
    angle = rng.uniform(0, 2 * np.pi, (n, 4))
    partner = centre + 0.02 * np.stack([np.cos(angle), np.sin(angle)], axis=-1)
    points = np.concatenate([rng.standard_normal((n, 8, 1)), np.r_["1", centre, partner]], -1)
    return points, np.ones((n, 8), bool), rng.uniform(-1, 1, (n, 1))


def _median_nearest_distance(points: np.ndarray) -> float:
    xy = points[..., 1:]
    d = np.linalg.norm(xy[:, :, None] - xy[:, None], axis=-1)
    d[:, np.arange(d.shape[1]), np.arange(d.shape[1])] = np.inf
    return float(np.median(d.min(axis=-1)))


def test_neighbour_layer_learns_collinear_pairs_plain_epic_does_not(tmp_path: Path) -> None:
    points, mask, cond = _pairs(1500, 0)
    assert _median_nearest_distance(points) == pytest.approx(0.02)
    found = {}
    for k in (0, 4):
        model = ParticleFlowMatching(**SMALL, epochs=40, patience=None, n_neighbours=k,
                                     device="cpu", n_threads=1)  # fmt: skip
        model.fit(points, mask, cond)
        found[k] = _median_nearest_distance(model.sample(cond[:400], mask[:400], seed=1))
    # measured: plain EPiC 0.63 (the pairs are lost), with 4 neighbours 0.17
    assert found[0] > 0.4
    assert found[4] < 0.3 * found[0]
    model.save(tmp_path / "nn.pt")
    loaded = ParticleFlowMatching.load(tmp_path / "nn.pt", device="cpu")
    assert loaded.n_neighbours == 4
    np.testing.assert_array_equal(
        loaded.sample(cond[:50], mask[:50], seed=2), model.sample(cond[:50], mask[:50], seed=2)
    )
    for bad in (-1, 1.5, True):
        with pytest.raises(InputError, match="n_neighbours must be"):
            ParticleFlowMatching(**SMALL, n_neighbours=bad).fit(points[:20], mask[:20], cond[:20])


def test_further_neighbour_layers_sit_between_the_epic_layers(tmp_path: Path) -> None:
    one, two = _net(0, n_neighbours=3), _net(0, n_neighbours=3, neighbour_layers=2)
    assert len(one.more_neighbours) == 0
    assert len(two.more_neighbours) == 1
    assert two._neighbours_before == {1: 0}  # before the second of 2 EPiC layers
    four = EPiCVelocityNet(3, 2, hidden=8, global_dim=4, n_layers=4, n_neighbours=3,
                           neighbour_layers=3)  # fmt: skip
    assert four._neighbours_before == {1: 0, 2: 1}  # spread over 4 EPiC layers
    # the first layer keeps its name (models saved with one layer load); the second is used
    assert set(one.state_dict()) < set(two.state_dict())
    rng = np.random.default_rng(3)
    x, mask = _clouds(rng, 4, 7)
    xt, mt, t, c = (
        torch.as_tensor(x, dtype=torch.float32),
        torch.as_tensor(mask),
        torch.rand(4),
        torch.randn(4, 2),
    )
    v = two(xt, t, c, mt)
    with torch.no_grad():
        two.more_neighbours[0].out.weight.mul_(3.0)
    assert not torch.allclose(two(xt, t, c, mt), v, atol=1e-4)
    with pytest.raises(ValueError, match=r"neighbour_layers must be in 1\.\.n_layers"):
        _net(0, n_neighbours=3, neighbour_layers=3)
    points, pmask, cond = _pairs(40, 1)
    model = ParticleFlowMatching(**SMALL, epochs=1, patience=None, n_neighbours=2,
                                 neighbour_layers=2, device="cpu", n_threads=1)  # fmt: skip
    model.fit(points, pmask, cond)
    model.save(tmp_path / "nn2.pt")
    loaded = ParticleFlowMatching.load(tmp_path / "nn2.pt", device="cpu")
    assert loaded.neighbour_layers == 2
    np.testing.assert_array_equal(
        loaded.sample(cond[:5], pmask[:5], seed=2), model.sample(cond[:5], pmask[:5], seed=2)
    )
    for bad in (0, 99, 1.5, True):
        with pytest.raises(InputError, match="neighbour_layers must be"):
            ParticleFlowMatching(**SMALL, n_neighbours=2, neighbour_layers=bad).fit(
                points[:20], pmask[:20], cond[:20]
            )


# ---------------------------------------------------------------------------------- bad input
def _bad_inputs() -> list[tuple[str, dict[str, object], str]]:
    toy = _toy(n=30, m=5, seed=4)
    p, m, c = toy["points"], toy["mask"], toy["cond"]
    nan_real = p.copy()
    nan_real[0, 0, 1] = np.nan
    empty = m.copy()
    empty[3] = False
    gap = m.copy()
    gap[2, :] = [True, False, True, False, False]
    nan_c = c.copy()
    nan_c[1, 0] = np.inf
    return [
        ("nan at a real point", {"points": nan_real}, "NaN/inf value"),
        ("empty cloud", {"mask": empty}, "no real point"),
        ("mask with a gap", {"mask": gap}, "first n slots"),
        ("3-d mask", {"mask": m[:, None]}, "mask must be 2-D"),
        ("points of another M", {"points": p[:, :4]}, "points must have shape"),
        ("1-d cond", {"cond": c[:, 0]}, "reshape"),
        ("cond with inf", {"cond": nan_c}, "cond holds"),
        ("cond of other N", {"cond": c[:-1]}, "one row per cloud"),
        ("non-boolean mask", {"mask": m * 2}, "boolean"),
        ("too few clouds", {"points": p[:5], "mask": m[:5], "cond": c[:5]}, "at least 10"),
    ]


@pytest.mark.parametrize(
    ("case", "change", "match"), _bad_inputs(), ids=lambda v: v if isinstance(v, str) else ""
)
def test_bad_inputs_raise(case: str, change: dict[str, object], match: str) -> None:
    toy = _toy(n=30, m=5, seed=4)
    args = {**toy, **change}
    model = ParticleFlowMatching(**SMALL, epochs=1, device="cpu")
    with pytest.raises(InputError, match=match):
        model.fit(args["points"], args["mask"], args["cond"])


def test_bad_params_and_sampling_inputs(trained: ParticleFlowMatching) -> None:
    toy = _toy(n=30, m=5, seed=4)
    with pytest.raises(InputError, match="hidden must be a positive integer"):
        ParticleFlowMatching(hidden=0).fit(toy["points"], toy["mask"], toy["cond"])
    with pytest.raises(InputError, match="val_fraction"):
        ParticleFlowMatching(val_fraction=1.5).fit(toy["points"], toy["mask"], toy["cond"])
    with pytest.raises(NotFittedError, match="not fitted"):
        ParticleFlowMatching().sample(toy["cond"], toy["mask"])
    with pytest.raises(InputError, match="fitted with 1"):
        trained.sample(np.zeros((30, 2)), toy["mask"])
    empty = toy["mask"].copy()
    empty[0] = False
    with pytest.raises(InputError, match="no real point"):
        trained.sample(toy["cond"], empty)


# ---------------------------------------------------------------------------------- real-ish data
@pytest.mark.slow
def test_lhco_like_jets_train_and_sample(tmp_path: Path) -> None:
    """A short training on the LHCO-like jets: samples have the right multiplicities, positive
    pT_rel summing to about one, and the leading-constituent pT_rel distribution of the data."""
    from sideband.events import read_point_clouds
    from sideband.features import extract_features

    extract_features(str(_need(RAW)), point_cloud_dir=tmp_path, max_events=1500, progress=False)
    table = read_point_clouds(tmp_path)
    points = table.constituents.reshape(-1, *table.constituents.shape[2:])
    mask = table.mask.reshape(-1, table.mask.shape[2])
    cond = table.jets.reshape(-1, table.jets.shape[2])[:, :4]
    keep = mask.any(axis=1)
    points, mask, cond = points[keep], mask[keep], cond[keep]
    model = ParticleFlowMatching(hidden=64, global_dim=16, n_layers=3, epochs=15, batch_size=128,
                                 n_steps=25, device="cpu", patience=None)  # fmt: skip
    model.fit(points, mask, cond)
    assert model.history_.val_loss.min() < 0.8 * model.history_.val_loss[0]
    s = model.sample(cond[:500], mask[:500], seed=0)
    assert (s[~mask[:500]] == 0).all()
    pt_sum = s[:, :, 0].sum(axis=1)
    assert abs(np.median(pt_sum) - np.median(points[:500, :, 0].sum(axis=1))) < 0.15
    lead_true, lead_gen = points[:500, 0, 0], s[:, :, 0].max(axis=1)
    assert abs(np.median(lead_gen) - np.median(lead_true)) < 0.1
