"""Fast scoring of many events with fitted HGB ensembles: the trees compiled into torch tensors.

`CompiledTrees` turns the trees of scikit-learn ``HistGradientBoostingClassifier`` members (an
`HGBEnsemble`, a list of members, or the fold models of a `KFoldResult`) into tensors and scores
events in batches on the CPU or a CUDA device, giving the same P(label 1) as scikit-learn (the
tree decisions are exact; only the order of the float64 sum of leaf values differs, ~1e-15).
This is the idea of hummingbird-ml's tensor compilation, built here on torch alone. Two
strategies:

``"bitvector"`` (default when every tree has at most 64 leaves; HGB's default is 31)
    QuickScorer-style (Lucchese et al., SIGIR 2015): number the leaves of a tree from left to
    right; an internal node whose test ``x <= threshold`` fails rules out the leaves of its left
    subtree, and the exit leaf is the leftmost leaf not ruled out by any failing node. Each
    member's thresholds on feature ``f`` are few (its histogram bin edges), so an event is
    first reduced to its rank among them (``searchsorted``), and a precomputed table gives, for
    each rank and tree, the 32- or 64-bit mask of leaves still allowed by the nodes on ``f``. The
    exit leaf of every tree is then the lowest set bit of the AND of ``d`` table rows: ``d``
    row copies and a few element-wise operations per (event, tree), whatever the tree depth.
``"traversal"``
    Padded node tensors (feature, threshold, children, value) of all trees, and a gather-based
    walk of every (event, tree) pair for the trees' depth in steps (trees grouped by depth, so
    shallow trees stop early): hummingbird's "tree traversal". Any number of leaves.

NaN inputs follow each node's ``missing_go_to_left`` as in scikit-learn (sideband's own inputs
are finite). Categorical splits are refused.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from sideband.background.training import resolve_device
from sideband.errors import InputError
from sideband.scoring.hgb_trees import HGBMember, HGBTree, hgb_members, read_member

__all__ = ["CompiledTrees"]

logger = logging.getLogger(__name__)

#: elements per (events x trees) working tensor for the automatic batch size
_TARGET_ELEMENTS = {"cpu": 1 << 19, "cuda": 1 << 26}
STRATEGIES = ("auto", "bitvector", "traversal")


def _members_of(obj: Any, where: str) -> tuple[list[HGBMember], int]:
    """Members and feature count of an HGBEnsemble, one HGB classifier or a list of them."""
    models = hgb_members(obj, where)
    if models is None:
        if not isinstance(obj, Sequence) or isinstance(obj, str | bytes):
            msg = (
                f"{where} is a {type(obj).__name__}; pass an HGBEnsemble, a fitted "
                "HistGradientBoostingClassifier or a list of them"
            )
            raise InputError(msg)
        models = list(obj)
    if not models:
        msg = f"{where} holds no fitted members; pass a fitted HGBEnsemble"
        raise InputError(msg)
    members = [read_member(m, f"{where} member {k}") for k, m in enumerate(models)]
    n_features = {int(m.n_features_in_) for m in models}
    if len(n_features) != 1:
        msg = f"{where}: members were fitted on different feature counts {sorted(n_features)}"
        raise InputError(msg)
    return members, n_features.pop()


# ------------------------------------------------------------------------------------------------
# bitvector (QuickScorer) compilation
# ------------------------------------------------------------------------------------------------

#: de Bruijn multipliers: for a power of two 2**k in a W-bit two's-complement integer,
#: ((2**k * C) >> (W - log2 W)) & (W - 1) is a distinct slot for every k < W (wrapping multiply).
_DE_BRUIJN = {32: (0x077CB531, 27), 64: (0x03F79D71B4CA8B09, 58)}
_MAX_LEAVES = 64


def _slots(width: int, device: torch.device) -> np.ndarray:
    """Slot of leaf k (bit 2**k of a ``width``-bit mask) under the de Bruijn hash, k < width.

    Computed with the same torch operations, on the same device, as `_raw_bitvector`, so a
    device whose integer multiply did not wrap around would fail here instead of scoring wrong.
    """
    mult, shift = _DE_BRUIJN[width]
    int_dtype = torch.int32 if width == 32 else torch.int64
    powers = torch.ones(width, dtype=torch.int64) << torch.arange(width)
    if width == 32:  # 2**31 as the int32 sign bit (two's complement), as in the masks
        powers = torch.where(powers >= 2**31, powers - 2**32, powers)
    low = powers.to(device=device, dtype=int_dtype)
    slots = low.bitwise_and(-low).mul_(mult).bitwise_right_shift_(shift).bitwise_and_(width - 1)
    out = slots.to(torch.int64).cpu().numpy()
    if len(np.unique(out)) != width:  # pragma: no cover - arithmetic fact
        msg = f"the de Bruijn leaf hash is not injective on {device}; use strategy='traversal'"
        raise RuntimeError(msg)
    return out


def _leaf_order(tree: HGBTree) -> tuple[np.ndarray, np.ndarray]:
    """(leaf node ids left to right; per node the [first, last + 1) leaf positions under it)."""
    n = len(tree.feature)
    order: list[int] = []
    span = np.zeros((n, 2), dtype=np.int64)
    stack: list[tuple[int, bool]] = [(0, False)]
    while stack:
        node, done = stack.pop()
        if tree.is_leaf[node]:
            span[node] = (len(order), len(order) + 1)
            order.append(node)
        elif done:
            span[node] = (span[tree.left[node], 0], span[tree.right[node], 1])
        else:
            stack += [(node, True), (int(tree.right[node]), False), (int(tree.left[node]), False)]
    return np.asarray(order, dtype=np.int64), span


@dataclass
class _BitvectorMember:
    """Tensors of one member with ``T`` trees and masks of ``W`` (32 or 64) bits.

    ``rank_map`` (d * (G + 2),) int64: group rank ``r`` of feature ``f`` (index ``f * (G + 2) +
    r``, ``r = G + 1`` for NaN) -> row of ``table``; ``table`` (d * (R + 2), T) int32/int64: for
    feature ``f`` and member rank ``r`` (number of the member's thresholds on ``f`` below x; row
    ``f * (R + 2) + R + 1`` for NaN) the AND of the masks of the tree's nodes on ``f`` that send
    x right; ``values`` (W, T) leaf values by de Bruijn slot."""

    rank_map: torch.Tensor
    table: torch.Tensor
    values: torch.Tensor
    baseline: float
    positive_is_second: bool
    n_trees: int


@dataclass
class _BitvectorGroup:
    """``edges`` (d, G) float64: the sorted thresholds of all the group's members per feature,
    padded with +inf; x's group rank on ``f`` is the number of edges below it."""

    edges: torch.Tensor
    members: list[_BitvectorMember]
    width: int


def _compile_bitvector_member(
    member: HGBMember,
    group_edges: list[np.ndarray],
    n_group: int,
    width: int,
    device: torch.device,
    dtype: torch.dtype,
) -> _BitvectorMember:
    d = len(group_edges)
    own: list[np.ndarray] = []
    for f in range(d):
        thr = [t.threshold[(~t.is_leaf) & (t.feature == f)] for t in member.trees]
        own.append(np.unique(np.concatenate(thr)) if thr else np.empty(0))
    n_r = max(len(e) for e in own)
    rows = n_r + 2
    group_rows = n_group + 2
    rank_map = np.zeros((d, group_rows), dtype=np.int64)
    for f in range(d):
        in_member = np.isin(group_edges[f], own[f])
        # member rank of an x with group rank r = member edges among the first r group edges
        rank_map[f, : len(in_member) + 1] = np.concatenate([[0], np.cumsum(in_member)])
        rank_map[f, group_rows - 1] = rows - 1  # NaN
        rank_map[f] += f * rows
    n_t = len(member.trees)
    table = np.full((d, rows, n_t), -1, dtype=np.int64)
    values = np.zeros((width, n_t), dtype=np.float64)
    slots = _slots(width, device)
    for t, tree in enumerate(member.trees):
        leaves, span = _leaf_order(tree)
        values[slots[: len(leaves)], t] = tree.value[leaves]
        for node in np.flatnonzero(~tree.is_leaf):
            f = int(tree.feature[node])
            lo, hi = span[tree.left[node]]
            # 0s at the leaves of the left subtree, which x cannot reach once it goes right
            bits = ((1 << int(hi - lo)) - 1) << int(lo)
            mask = np.array([~bits & 0xFFFFFFFFFFFFFFFF], dtype=np.uint64).view(np.int64)[0]
            j = int(np.searchsorted(own[f], tree.threshold[node]))
            # x goes right (the test x <= threshold fails) when its member rank exceeds j
            table[f, j + 1 : len(own[f]) + 1, t] &= mask
            if not tree.missing_left[node]:
                table[f, rows - 1, t] &= mask
    int_dtype = torch.int32 if width == 32 else torch.int64
    table_t = torch.as_tensor(table.reshape(d * rows, n_t))
    if width == 32:  # keep the low 32 bits as int32 (two's complement)
        table_t = (table_t & 0xFFFFFFFF).to(torch.int64)
        table_t = torch.where(table_t >= 2**31, table_t - 2**32, table_t)
    return _BitvectorMember(
        rank_map=torch.as_tensor(rank_map.reshape(-1), device=device),
        table=table_t.to(device=device, dtype=int_dtype),
        values=torch.as_tensor(values, device=device, dtype=dtype),
        baseline=member.baseline,
        positive_is_second=member.positive_is_second,
        n_trees=n_t,
    )


def _compile_bitvector(
    members: list[HGBMember], n_features: int, device: torch.device, dtype: torch.dtype
) -> _BitvectorGroup:
    max_leaves = max((int(t.is_leaf.sum()) for m in members for t in m.trees), default=1)
    width = 32 if max_leaves <= 32 else 64
    group_edges = []
    for f in range(n_features):
        thr = [t.threshold[(~t.is_leaf) & (t.feature == f)] for m in members for t in m.trees]
        group_edges.append(np.unique(np.concatenate(thr)) if thr else np.empty(0))
    n_group = max(1, *(len(e) for e in group_edges))
    edges = np.full((n_features, n_group), np.inf)
    for f, e in enumerate(group_edges):
        edges[f, : len(e)] = e
    compiled = [
        _compile_bitvector_member(m, group_edges, n_group, width, device, dtype) for m in members
    ]
    return _BitvectorGroup(
        edges=torch.as_tensor(edges, device=device), members=compiled, width=width
    )


def _group_ranks(group: _BitvectorGroup, x: torch.Tensor, has_nan: bool) -> torch.Tensor:
    """Flat group ranks (d, B) int64 of a batch x (B, d), offset by ``f * (G + 2)``."""
    d, n_group = group.edges.shape
    ranks = torch.searchsorted(group.edges, x.T.contiguous(), right=False)  # (d, B)
    if has_nan:
        ranks = torch.where(torch.isnan(x.T), n_group + 1, ranks)
    return ranks + (torch.arange(d, device=x.device) * (n_group + 2))[:, None]


def _raw_bitvector(m: _BitvectorMember, ranks: torch.Tensor, width: int) -> torch.Tensor:
    """Raw log-odds (B,) of one member from the group ranks (d, B)."""
    rows = m.rank_map.take(ranks)  # (d, B) rows of the member's table
    mask = m.table.index_select(0, rows[0])  # (B, T)
    for f in range(1, rows.shape[0]):
        mask.bitwise_and_(m.table.index_select(0, rows[f]))
    # exit leaf = lowest set bit; its de Bruijn slot indexes the leaf values
    mult, shift = _DE_BRUIJN[width]
    slot = mask.bitwise_and_(-mask).mul_(mult).bitwise_right_shift_(shift)
    slot = slot.bitwise_and_(width - 1).to(torch.int64)
    return torch.gather(m.values, 0, slot).sum(dim=1) + m.baseline


# ------------------------------------------------------------------------------------------------
# traversal compilation
# ------------------------------------------------------------------------------------------------


@dataclass
class _TraversalBucket:
    """Trees of one depth, padded: flat node arrays of ``n_trees * n_nodes`` entries; a leaf's
    children are itself, so extra steps stay put."""

    depth: int
    feature: torch.Tensor  # int64 (n_trees * n_nodes,)
    threshold: torch.Tensor  # float64
    missing_left: torch.Tensor  # bool
    children: torch.Tensor  # int64 (2 * n_trees * n_nodes,): [left, right] of node i at 2i, 2i+1
    value: torch.Tensor  # dtype
    roots: torch.Tensor  # int64 (n_trees,)
    member: torch.Tensor  # int64 (n_trees,): member index (within the group) of each tree


def _compile_traversal(
    members: list[HGBMember], device: torch.device, dtype: torch.dtype
) -> list[_TraversalBucket]:
    by_depth: dict[int, list[tuple[int, HGBTree]]] = {}
    for k, member in enumerate(members):
        for tree in member.trees:
            by_depth.setdefault(tree.depth, []).append((k, tree))
    buckets = []
    for depth in sorted(by_depth):
        items = by_depth[depth]
        n_nodes = max(len(t.feature) for _, t in items)
        n_t = len(items)
        feature = np.zeros((n_t, n_nodes), dtype=np.int64)
        threshold = np.zeros((n_t, n_nodes))
        missing_left = np.zeros((n_t, n_nodes), dtype=bool)
        value = np.zeros((n_t, n_nodes))
        children = np.zeros((n_t, n_nodes, 2), dtype=np.int64)
        for i, (_, tree) in enumerate(items):
            n = len(tree.feature)
            base = i * n_nodes
            own = np.arange(n) + base
            feature[i, :n] = np.where(tree.is_leaf, 0, tree.feature)
            threshold[i, :n] = tree.threshold
            missing_left[i, :n] = tree.missing_left
            value[i, :n] = np.where(tree.is_leaf, tree.value, 0.0)
            children[i, :n, 0] = np.where(tree.is_leaf, own, tree.left + base)
            children[i, :n, 1] = np.where(tree.is_leaf, own, tree.right + base)
        buckets.append(
            _TraversalBucket(
                depth=depth,
                feature=torch.as_tensor(feature.reshape(-1), device=device),
                threshold=torch.as_tensor(threshold.reshape(-1), device=device),
                missing_left=torch.as_tensor(missing_left.reshape(-1), device=device),
                children=torch.as_tensor(children.reshape(-1), device=device),
                value=torch.as_tensor(value.reshape(-1), device=device, dtype=dtype),
                roots=torch.arange(n_t, device=device, dtype=torch.int64) * n_nodes,
                member=torch.as_tensor([k for k, _ in items], device=device, dtype=torch.int64),
            )
        )
    return buckets


def _raw_traversal(
    buckets: list[_TraversalBucket],
    baselines: torch.Tensor,
    x: torch.Tensor,
    has_nan: bool,
    max_trees: int,
) -> torch.Tensor:
    """Raw log-odds (B, n_members) of a group's members for a batch x (B, d) float64."""
    b = x.shape[0]
    raw = baselines.expand(b, -1).clone()
    for bucket in buckets:
        for start in range(0, len(bucket.roots), max_trees):
            roots = bucket.roots[start : start + max_trees]
            node = roots.expand(b, -1).contiguous()  # (B, Tb) flat node ids
            for _ in range(bucket.depth):
                xv = torch.gather(x, 1, bucket.feature.take(node))
                right = xv > bucket.threshold.take(node)  # sklearn: x <= threshold goes left
                if has_nan:
                    right |= torch.isnan(xv) & ~bucket.missing_left.take(node)
                node = bucket.children.take(node * 2 + right)
            vals = bucket.value.take(node)
            raw.index_add_(1, bucket.member[start : start + max_trees], vals)
    return raw


# ------------------------------------------------------------------------------------------------
# public class
# ------------------------------------------------------------------------------------------------


class CompiledTrees:
    """HGB ensemble(s) compiled to torch tensors for fast batched scoring.

    Build with `from_hgb` (one ensemble: its score is the mean member probability, as in
    ``HGBEnsemble.predict_proba``) or `from_kfold` (one ensemble per fold, as in `KFoldResult`).

    Attributes
    ----------
    device
        torch device of the tensors and of the arithmetic.
    dtype
        torch dtype of the leaf values and of their sums (thresholds and inputs stay float64, so
        the tree decisions are exact either way).
    strategy
        ``"bitvector"`` or ``"traversal"`` (see the module docstring).
    n_features_in_
        Feature count of the compiled models; ``classes_`` is ``array([0, 1])``.
    n_groups, n_members, n_trees, max_depth
        Folds (1 for `from_hgb`), members per group, trees in all, deepest tree (edges from root).
    """

    def __init__(
        self,
        groups: list[list[HGBMember]],
        n_features: int,
        *,
        device: str | torch.device = "auto",
        dtype: torch.dtype = torch.float64,
        strategy: str = "auto",
    ) -> None:
        if strategy not in STRATEGIES:
            msg = f"strategy must be one of {STRATEGIES}; got {strategy!r}"
            raise InputError(msg)
        if dtype not in (torch.float64, torch.float32):
            msg = f"dtype must be torch.float64 or torch.float32; got {dtype!r}"
            raise InputError(msg)
        self.device = resolve_device(device)
        self.dtype = dtype
        self.n_features_in_ = int(n_features)
        self.classes_ = np.array([0, 1])
        all_trees = [t for g in groups for m in g for t in m.trees]
        self.n_groups = len(groups)
        self.n_members = [len(g) for g in groups]
        self.n_trees = len(all_trees)
        self.max_depth = max((t.depth for t in all_trees), default=0)
        max_leaves = max((int(t.is_leaf.sum()) for t in all_trees), default=1)
        if strategy == "auto":
            strategy = "bitvector" if max_leaves <= _MAX_LEAVES else "traversal"
        elif strategy == "bitvector" and max_leaves > _MAX_LEAVES:
            msg = (
                f"a tree has {max_leaves} leaves; strategy='bitvector' supports at most "
                f"{_MAX_LEAVES} (max_leaf_nodes <= {_MAX_LEAVES}): use strategy='traversal' "
                "or 'auto'"
            )
            raise InputError(msg)
        self.strategy = strategy
        self._positive = [
            torch.tensor([m.positive_is_second for m in g], device=self.device) for g in groups
        ]
        if strategy == "bitvector":
            self._bitvector = [
                _compile_bitvector(g, n_features, self.device, dtype) for g in groups
            ]
            self._max_trees = max(m.n_trees for g in self._bitvector for m in g.members)
        else:
            self._buckets = [_compile_traversal(g, self.device, dtype) for g in groups]
            self._baselines = [
                torch.tensor([m.baseline for m in g], device=self.device, dtype=dtype)
                for g in groups
            ]
            self._max_trees = max(1, min(self.n_trees, 4096))
        logger.debug(
            "compiled %d trees of %d group(s) (max depth %d, %s) on %s",
            self.n_trees,
            self.n_groups,
            self.max_depth,
            strategy,
            self.device,
        )

    # -- constructors ---------------------------------------------------------------------------

    @classmethod
    def from_hgb(
        cls,
        models: Any,
        *,
        device: str | torch.device = "auto",
        dtype: torch.dtype = torch.float64,
        strategy: str = "auto",
    ) -> CompiledTrees:
        """Compile one ensemble: a fitted `HGBEnsemble`, a fitted
        ``HistGradientBoostingClassifier`` or a list of them (the members).

        ``device="auto"`` takes CUDA when available; ``dtype`` float64 reproduces scikit-learn to
        ~1e-15, float32 to ~1e-6 (faster on GPUs). Raises `InputError` for non-HGB, multiclass or
        categorical models and `NotFittedError` for unfitted ones.
        """
        members, n_features = _members_of(models, "models")
        return cls([members], n_features, device=device, dtype=dtype, strategy=strategy)

    @classmethod
    def from_kfold(
        cls,
        result: Any,
        *,
        device: str | torch.device = "auto",
        dtype: torch.dtype = torch.float64,
        strategy: str = "auto",
    ) -> CompiledTrees:
        """Compile the fold models of a `KFoldResult` (or a list of fitted `HGBEnsemble`), one
        group per fold: ``score(X, fold=...)`` then scores event ``j`` with fold ``fold[j]``'s
        model only, like `KFoldResult.predict_by_fold`; without ``fold`` it gives the mean over
        the fold models, like `KFoldResult.predict`."""
        models = getattr(result, "models", result)
        if not isinstance(models, Sequence) or isinstance(models, str | bytes) or not models:
            msg = (
                f"from_kfold needs a KFoldResult or a non-empty list of fitted HGBEnsembles; "
                f"got {type(result).__name__}"
            )
            raise InputError(msg)
        groups, counts = [], set()
        for k, model in enumerate(models):
            members, n_features = _members_of(model, f"fold model {k}")
            groups.append(members)
            counts.add(n_features)
        if len(counts) != 1:
            msg = f"the fold models were fitted on different feature counts {sorted(counts)}"
            raise InputError(msg)
        return cls(groups, counts.pop(), device=device, dtype=dtype, strategy=strategy)

    def __repr__(self) -> str:
        return (
            f"CompiledTrees(groups={self.n_groups}, members={self.n_members}, "
            f"trees={self.n_trees}, max_depth={self.max_depth}, strategy={self.strategy!r}, "
            f"device={str(self.device)!r}, dtype={self.dtype})"
        )

    # -- scoring --------------------------------------------------------------------------------

    def _check_x(self, X: Any) -> np.ndarray:
        arr = np.asarray(X, dtype=np.float64)
        if arr.ndim != 2 or arr.shape[1] != self.n_features_in_:
            msg = (
                f"X has shape {arr.shape}; expected (n_events, {self.n_features_in_}), the "
                "feature columns the models were fitted on, in the same order"
            )
            raise InputError(msg)
        return np.ascontiguousarray(arr)

    def _auto_batch(self, threads_per_batch: int | None = None) -> int:
        """Events per batch: a working tensor of about 2**19 elements per torch thread working
        on the batch on the CPU (cache-sized), 2**26 on CUDA."""
        if self.device.type == "cuda":
            target = _TARGET_ELEMENTS["cuda"]
        else:
            threads = threads_per_batch or torch.get_num_threads()
            target = _TARGET_ELEMENTS["cpu"] * threads
        return max(256, target // max(1, self._max_trees))

    def _score_group(self, g: int, x: torch.Tensor) -> torch.Tensor:
        """Mean member P(label 1) (B,) of group g for a batch x (B, d) float64 on the device."""
        has_nan = bool(torch.isnan(x).any())
        if self.strategy == "bitvector":
            group = self._bitvector[g]
            ranks = _group_ranks(group, x, has_nan)
            raw = torch.stack([_raw_bitvector(m, ranks, group.width) for m in group.members], 1)
        else:
            raw = _raw_traversal(self._buckets[g], self._baselines[g], x, has_nan, self._max_trees)
        p = torch.sigmoid(raw)
        p = torch.where(self._positive[g], p, 1.0 - p)
        return p.mean(dim=1)

    def score(
        self,
        X: Any,
        *,
        batch_size: int | None = None,
        fold: Any = None,
        n_threads: int | None = None,
    ) -> np.ndarray:
        """P(label 1), float64 (N,), for events X (N, d) (NaN allowed, as in scikit-learn).

        Parameters
        ----------
        X
            Features (N, d), the columns the models were fitted on.
        batch_size
            Events per batch (None: about 2**19 event x tree elements per CPU thread working
            on a batch, 2**26 on CUDA). Results do not depend on it.
        fold
            Only for `from_kfold`: int array (N,), the fold model that scores each event (e.g.
            ``KFoldResult.fold``). None: mean over the fold models.
        n_threads
            CPU only: score batches in this many Python threads at once, with torch's
            intra-op threads set to 1 for the call (and restored after). None: one batch at a
            time with torch's current intra-op threads (``torch.set_num_threads``). Threads
            over batches stay fast on a busy machine, where intra-op threads that wait for
            each other after every operation were measured 3-9 times slower than one thread.
            Ignored on CUDA.
        """
        arr = self._check_x(X)
        n = len(arr)
        if n_threads is not None and (not isinstance(n_threads, int | np.integer) or n_threads < 1):
            msg = f"n_threads must be None or a positive integer; got {n_threads!r}"
            raise InputError(msg)
        workers = 1 if n_threads is None or self.device.type != "cpu" else int(n_threads)
        if batch_size is None:
            batch_size = self._auto_batch(1 if n_threads is not None else None)
        if not isinstance(batch_size, int | np.integer) or batch_size < 1:
            msg = f"batch_size must be a positive integer or None; got {batch_size!r}"
            raise InputError(msg)
        bs = int(batch_size)
        rows_of_group: list[np.ndarray | None]
        if fold is None:
            rows_of_group = [None] * self.n_groups
        else:
            f = np.asarray(fold)
            if f.shape != (n,) or not np.issubdtype(f.dtype, np.integer):
                msg = f"fold must be an int array of shape ({n},); got {f.dtype} {f.shape}"
                raise InputError(msg)
            if n and (f.min() < 0 or f.max() >= self.n_groups):
                msg = (
                    f"fold holds values in [{f.min()}, {f.max()}] but {self.n_groups} fold "
                    f"model(s) were compiled (0..{self.n_groups - 1})"
                )
                raise InputError(msg)
            rows_of_group = [np.flatnonzero(f == g) for g in range(self.n_groups)]

        def one_batch(g: int, sub: np.ndarray, start: int, part: np.ndarray) -> None:
            with torch.inference_mode():  # thread-local: set in every worker
                xb = torch.from_numpy(sub[start : start + bs]).to(self.device)
                part[start : start + len(xb)] = self._score_group(g, xb).double().cpu().numpy()

        out = np.zeros(n)
        old_threads = torch.get_num_threads()
        pool = ThreadPoolExecutor(workers) if workers > 1 else None
        try:
            if n_threads is not None and self.device.type == "cpu":
                torch.set_num_threads(1)
            for g, rows in enumerate(rows_of_group):
                sub = arr if rows is None else arr[rows]
                part = np.empty(len(sub))
                starts = range(0, len(sub), bs)
                if pool is None:
                    for start in starts:
                        one_batch(g, sub, start, part)
                else:
                    list(pool.map(lambda st: one_batch(g, sub, st, part), starts))  # noqa: B023
                if rows is None:
                    out += part
                else:
                    out[rows] = part
        finally:
            if pool is not None:
                pool.shutdown()
            torch.set_num_threads(old_threads)
        if fold is None:
            out /= self.n_groups
        return out

    def decision_function(self, X: Any) -> np.ndarray:
        """Anomaly score (N,): the mean P(label 1) (= `score`)."""
        return self.score(X)

    def predict_proba(
        self, X: Any, *, batch_size: int | None = None, n_threads: int | None = None
    ) -> np.ndarray:
        """Probabilities (N, 2): columns P(label 0), P(label 1), as ``HGBEnsemble.predict_proba``
        (so a `CompiledTrees` can stand in for the ensemble, e.g. in `score_by_fold`); options
        as in `score`."""
        p1 = self.score(X, batch_size=batch_size, n_threads=n_threads)
        return np.column_stack([1.0 - p1, p1])

    def memory_bytes(self) -> int:
        """Bytes held by the compiled tensors."""
        tensors: list[torch.Tensor] = []
        if self.strategy == "bitvector":
            for g in self._bitvector:
                tensors.append(g.edges)
                for m in g.members:
                    tensors += [m.rank_map, m.table, m.values]
        else:
            for buckets in self._buckets:
                for b in buckets:
                    tensors += [b.feature, b.threshold, b.missing_left, b.children, b.value]
        return int(sum(t.numel() * t.element_size() for t in tensors))
