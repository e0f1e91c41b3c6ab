"""EPiC layers and the permutation-equivariant velocity network of EPiC-FM.

EPiC (equivariant point cloud) layers (Buhmann et al., EPiC-GAN, arXiv:2301.08128) keep a
per-point ("local") representation (B, M, H) and a per-cloud ("global") vector (B, G). Each layer

1. pools the local features over the real points (mask true): mean and sum (the sum scaled by
   ``sum_scale`` so that it stays O(1) for clouds of a few hundred points);
2. updates the global vector: g <- act(g + W2 act(W1 [mean, sum, g, c]));
3. updates every point: h_i <- act(h_i + W4 act(W3 [h_i, g, c])).

``c`` is the context: the time embedding of the flow-matching time t and the conditioning
vector (the jet's kinematics), "added to all MLPs" as in EPiC-FM (arXiv:2307.06836) and the
full-phase-space study (arXiv:2310.06897, Sec. III B). The per-point update sees only the point
itself, the global vector and the context, and the pooling only the real points: the network is
permutation equivariant, and padded slots never influence real points (their values are ignored,
even NaN). The velocity at padded slots is exactly zero.

Pooling couples the points only through cloud-wide sums, so an EPiC network places each point
well in the jet but hardly relative to one other point: at particle level the two hardest
constituents of a jet are often a collinear pair (a π⁰'s photons, ΔR of a few 10⁻³), which
plain EPiC-FM smears out. `NeighbourLayer` (optional, ``n_neighbours > 0``) adds what an
EdgeConv (DGCNN, arXiv:1801.07829) layer does: every point receives messages from its k nearest
real points in (Δη, Δφ), built from their features and the displacement, including its log
length, so that the network resolves distances far below the cloud's width.
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = [
    "EPiCLayer",
    "EPiCVelocityNet",
    "NeighbourLayer",
    "PointCloudLinear",
    "masked_pool",
    "nearest_neighbours",
    "time_embedding",
]

#: Floor of the neighbour distance in the log and direction features (standardised units).
_DISTANCE_FLOOR = 1e-4


def time_embedding(t: torch.Tensor, n_frequencies: int) -> torch.Tensor:
    """Sinusoidal features of t (B,) in [0, 1] -> (B, 1 + 2 K): t, cos(π k t), sin(π k t), k = 1..K.

    K = ``n_frequencies``; the cosine features are EPiC-FM's cosine encoding (Leigh et al.,
    PC-JeDi, arXiv:2303.05376), the sines make the map from t injective.
    """
    t = t.reshape(-1, 1)
    k = math.pi * torch.arange(1, n_frequencies + 1, dtype=t.dtype, device=t.device)
    return torch.cat([t, torch.cos(t * k), torch.sin(t * k)], dim=1)


def masked_pool(
    h: torch.Tensor, mask: torch.Tensor, sum_scale: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and scaled sum of ``h`` (B, M, H) over the points where ``mask`` (B, M) is true.

    Padded slots are excluded with `torch.where` (not a product), so NaN there cannot leak.
    Returns two (B, H) tensors; a cloud without real points pools to zeros.
    """
    m = mask.unsqueeze(-1)
    total = torch.where(m, h, torch.zeros((), dtype=h.dtype, device=h.device)).sum(dim=1)
    n = mask.sum(dim=1, keepdim=True).clamp(min=1).to(h.dtype)
    return total / n, total * sum_scale


class PointCloudLinear(nn.Module):
    """Linear map of [point features, cloud features] without building the concatenation.

    ``forward(h (B, M, P), g (B, Q)) -> (B, M, out)`` equals ``Linear(P + Q, out)`` applied to
    ``cat([h, g broadcast over M])``, but the cloud part is computed once per cloud (the
    context and global vector are the same for all M points), which saves memory and time.
    """

    def __init__(self, point_dim: int, cloud_dim: int, out_dim: int) -> None:
        super().__init__()
        self.point = nn.Linear(point_dim, out_dim)
        self.cloud = nn.Linear(cloud_dim, out_dim, bias=False)

    def forward(self, h: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        return self.point(h) + self.cloud(g).unsqueeze(1)


class EPiCLayer(nn.Module):
    """One EPiC layer with context: (local (B, M, H), global (B, G), context (B, C), mask (B, M))
    -> (local, global), residual in both; padded slots of the output local are zero."""

    def __init__(
        self,
        hidden: int,
        global_dim: int,
        context_dim: int,
        *,
        sum_scale: float = 1e-2,
        negative_slope: float = 0.01,
    ) -> None:
        super().__init__()
        self.sum_scale = float(sum_scale)
        self.act = nn.LeakyReLU(negative_slope)
        self.global_in = nn.Linear(2 * hidden + global_dim + context_dim, hidden)
        self.global_out = nn.Linear(hidden, global_dim)
        self.local_in = PointCloudLinear(hidden, global_dim + context_dim, hidden)
        self.local_out = nn.Linear(hidden, hidden)

    def forward(
        self, h: torch.Tensor, g: torch.Tensor, c: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        mean, total = masked_pool(h, mask, self.sum_scale)
        g1 = self.act(self.global_in(torch.cat([mean, total, g, c], dim=1)))
        g = self.act(self.global_out(g1) + g)
        h1 = self.act(self.local_in(h, torch.cat([g, c], dim=1)))
        h = self.act(self.local_out(h1) + h)
        return torch.where(
            mask.unsqueeze(-1), h, torch.zeros((), dtype=h.dtype, device=h.device)
        ), g


def nearest_neighbours(
    pos: torch.Tensor, mask: torch.Tensor, k: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The ``k`` nearest other real points of every point, by distance in ``pos`` (B, M, D).

    Returns ``index`` (B, M, k) long (slots of the neighbours, nearest first), ``valid``
    (B, M, k) bool (false where a cloud has fewer than k + 1 real points, and at padded slots)
    and the edge features (B, M, k, D + 1): the displacement to the neighbour divided by its
    length, and the log of the length (floored at 1e-4). Distances are taken as differences
    (not the |a|² + |b|² - 2ab of `torch.cdist`, which loses distances far below |a|).
    """
    b, m, _ = pos.shape
    k = min(int(k), m - 1)
    if k < 1:
        empty = torch.zeros((b, m, 0), dtype=torch.long, device=pos.device)
        return empty, empty.to(torch.bool), pos.new_zeros((b, m, 0, pos.shape[-1] + 1))
    pair = mask.unsqueeze(1) & mask.unsqueeze(2)
    pair &= ~torch.eye(m, dtype=torch.bool, device=pos.device)
    d2 = sum((p.unsqueeze(2) - p.unsqueeze(1)).square() for p in pos.unbind(-1))
    d2 = torch.where(pair, d2, torch.full((), float("inf"), dtype=pos.dtype, device=pos.device))
    d2_k, index = torch.topk(d2, k, dim=-1, largest=False, sorted=True)
    valid = torch.isfinite(d2_k)
    others = torch.gather(pos, 1, index.reshape(b, m * k, 1).expand(-1, -1, pos.shape[-1]))
    delta = others.reshape(b, m, k, -1) - pos.unsqueeze(2)
    length = delta.square().sum(-1, keepdim=True).sqrt().clamp(min=_DISTANCE_FLOOR)
    edge = torch.cat([delta / length, length.log()], dim=-1)
    edge = torch.where(
        valid.unsqueeze(-1), edge, torch.zeros((), dtype=pos.dtype, device=pos.device)
    )
    return index, valid, edge


class NeighbourLayer(nn.Module):
    """Messages from the k nearest neighbours: (local (B, M, H), index, valid, edge, mask) ->
    local, with h_i <- act(h_i + W_o mean_j act(W_s h_i + W_n h_j + W_e e_ij)) over the valid
    neighbours j of i (`nearest_neighbours`); messages have ``width`` E features (the
    (B, M, k, E) messages dominate the cost); residual, zero at padded slots."""

    def __init__(
        self, hidden: int, edge_dim: int, *, width: int = 32, negative_slope: float = 0.01
    ) -> None:
        super().__init__()
        self.act = nn.LeakyReLU(negative_slope)
        self.self_in = nn.Linear(hidden, width)
        self.other_in = nn.Linear(hidden, width, bias=False)
        self.edge_in = nn.Parameter(torch.randn(edge_dim, width) / math.sqrt(edge_dim))
        self.out = nn.Linear(width, hidden)

    def forward(
        self,
        h: torch.Tensor,
        index: torch.Tensor,
        valid: torch.Tensor,
        edge: torch.Tensor,
        mask: torch.Tensor,
    ) -> torch.Tensor:
        b, m, _ = h.shape
        k = index.shape[-1]
        if k == 0:
            return h
        # index_select on the flattened clouds is much faster on CPU than gather with an
        # expanded index (and so is its backward)
        offset = (torch.arange(b, device=h.device) * m).view(b, 1, 1)
        other = self.other_in(h).reshape(b * m, -1).index_select(0, (index + offset).reshape(-1))
        msg = self.act(
            self.self_in(h).unsqueeze(2) + other.reshape(b, m, k, -1) + edge @ self.edge_in
        )
        # mean over the valid neighbours; messages of invalid ones are finite (padded h and
        # edge features are zero), so weights of zero remove them
        w = valid.to(h.dtype)
        w = w / w.sum(-1, keepdim=True).clamp(min=1)
        h = self.act(h + self.out((msg * w.unsqueeze(-1)).sum(2)))
        return torch.where(mask.unsqueeze(-1), h, torch.zeros((), dtype=h.dtype, device=h.device))


class EPiCVelocityNet(nn.Module):
    """EPiC-FM velocity field v(x, t, cond) of one jet's constituents.

    ``forward(x (B, M, F), t (B,), cond (B, C), mask (B, M)) -> (B, M, F)``, zero at padded
    slots. The points are projected to ``hidden`` dimensions (two residual per-point layers that
    see the context), the global vector starts from the masked mean and scaled sum of that
    projection and the context, then ``n_layers`` `EPiCLayer` and a per-point linear output
    (which also sees the global vector and the context).

    Parameters
    ----------
    n_features
        F, features per point (3: pT_rel, Δη, Δφ).
    n_cond
        C, conditioning features (e.g. the jet's pT, η, φ, m, standardised).
    hidden, global_dim, n_layers
        Per-point width H, global vector size G, number of EPiC layers.
    time_frequencies
        K of `time_embedding`.
    sum_scale
        Factor on the sum pooling (EPiC: 1e-2).
    n_neighbours
        k of a `NeighbourLayer` between the input projection and the EPiC layers, by distance
        in the features ``neighbour_features``; 0 (the default): plain EPiC-FM.
    neighbour_layers
        How many `NeighbourLayer` (same k and neighbours, own weights): the first before the
        EPiC layers, the others spread evenly between them (2 with 4 EPiC layers: before the
        first and before the third).
    neighbour_width
        E, features per message of the `NeighbourLayer`.
    neighbour_features
        Point features whose distance picks the neighbours; None: (1, 2) (Δη, Δφ) when there
        are 3 or more features, else all.
    """

    def __init__(
        self,
        n_features: int = 3,
        n_cond: int = 4,
        *,
        hidden: int = 128,
        global_dim: int = 32,
        n_layers: int = 6,
        time_frequencies: int = 8,
        sum_scale: float = 1e-2,
        negative_slope: float = 0.01,
        n_neighbours: int = 0,
        neighbour_width: int = 32,
        neighbour_features: tuple[int, ...] | None = None,
        neighbour_layers: int = 1,
    ) -> None:
        super().__init__()
        self.n_features = int(n_features)
        self.n_neighbours = int(n_neighbours)
        if int(neighbour_layers) < 1 or int(neighbour_layers) > max(int(n_layers), 1):
            msg = f"neighbour_layers must be in 1..n_layers ({n_layers}); got {neighbour_layers}"
            raise ValueError(msg)
        self.neighbour_layers = int(neighbour_layers)
        if neighbour_features is None:
            neighbour_features = (1, 2) if self.n_features >= 3 else tuple(range(self.n_features))
        self.neighbour_features = tuple(int(k) for k in neighbour_features)
        self.n_cond = int(n_cond)
        self.time_frequencies = int(time_frequencies)
        self.sum_scale = float(sum_scale)
        ctx = 1 + 2 * self.time_frequencies + self.n_cond
        self.act = nn.LeakyReLU(negative_slope)
        self.local_proj_in = PointCloudLinear(n_features, ctx, hidden)
        self.local_proj_out = PointCloudLinear(hidden, ctx, hidden)
        self.global_proj_in = nn.Linear(2 * hidden + ctx, hidden)
        self.global_proj_out = nn.Linear(hidden, global_dim)
        self.layers = nn.ModuleList(
            EPiCLayer(hidden, global_dim, ctx, sum_scale=sum_scale, negative_slope=negative_slope)
            for _ in range(n_layers)
        )
        self.output = PointCloudLinear(hidden, global_dim + ctx, n_features)
        edge_dim = len(self.neighbour_features) + 1

        def neighbour_layer() -> NeighbourLayer:
            return NeighbourLayer(
                hidden, edge_dim, width=neighbour_width, negative_slope=negative_slope
            )

        # the first keeps its own name so that models saved with one layer still load
        self.neighbours = neighbour_layer() if self.n_neighbours > 0 else None
        n_more = self.neighbour_layers - 1 if self.n_neighbours > 0 else 0
        self.more_neighbours = nn.ModuleList(neighbour_layer() for _ in range(n_more))
        # {EPiC layer index: index in more_neighbours of the layer that runs before it}
        self._neighbours_before = {
            (i * n_layers) // self.neighbour_layers: i - 1 for i in range(1, n_more + 1)
        }

    def forward(
        self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        mask = mask.to(torch.bool)
        zero = torch.zeros((), dtype=x.dtype, device=x.device)
        m3 = mask.unsqueeze(-1)
        x = torch.where(m3, x, zero)
        c = torch.cat([time_embedding(t.to(x.dtype), self.time_frequencies), cond], dim=1)
        h = self.act(self.local_proj_in(x, c))
        h = self.act(self.local_proj_out(h, c) + h)
        h = torch.where(m3, h, zero)
        mean, total = masked_pool(h, mask, self.sum_scale)
        g = self.act(self.global_proj_in(torch.cat([mean, total, c], dim=1)))
        g = self.act(self.global_proj_out(g))
        if self.neighbours is not None:
            pos = x[..., list(self.neighbour_features)]
            graph = nearest_neighbours(pos, mask, self.n_neighbours)
            h = self.neighbours(h, *graph, mask)
        for i, layer in enumerate(self.layers):
            if i in self._neighbours_before:
                h = self.more_neighbours[self._neighbours_before[i]](h, *graph, mask)
            h, g = layer(h, g, c, mask)
        v = self.output(h, torch.cat([g, c], dim=1))
        return torch.where(m3, v, zero)
