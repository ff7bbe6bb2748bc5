"""One tree over the fine clusters, cut into coarser levels by a lookup table (method.md §7).

The volume is clustered once, finely; every coarser level is a union of fine clusters, read from a
table indexed by fine id, so a slider never re-runs the model or k-means.

Hyperbolic geometry (Chami et al. 2020, "From Trees to Continuous Embeddings and Back"): the lowest
common ancestor (LCA) of two points of the Poincaré ball is the point of the geodesic segment between
them nearest the origin; the farther it lies from the origin, the deeper (finer) the subtree the two
share. The agglomeration merges two groups of fine clusters at a time; the linkage picks which:
- "single":   the pair whose deepest member-pair LCA lies farthest from the origin (Chami et al.'s
  decoding of a tree from embeddings); its radius cut is exactly "connected components of the fine
  clusters whose LCA lies at radius >= r";
- "average":  the deepest mean LCA radius over member pairs, weighted by cluster sizes;
- "centroid": the deepest LCA of the groups' weighted Fréchet means (a merged group's mean moves
  towards the origin, as a parent should);
- "ward" (the default of the geometry): the smallest increase of the weighted sum of squared Poincaré distances to the
  group means, w_a w_b / (w_a + w_b) d(mean_a, mean_b)^2 (Ward's criterion with Fréchet means).
Merge heights are LCA radii -- of the deepest pair for single, the mean for average, the two groups'
Fréchet means otherwise -- as Euclidean norms in the ball (the radius of a circle in the
Poincaré-disk view), made non-increasing along the merge order. So `lookup_at_radius(r)`, which
applies the merges at radius >= r (r <= the lowest merge height: one cluster; r above the highest:
every fine cluster), is always the cut `lookup_at_k` gives for some k: k-cuts and radius cuts are
cuts of one tree and always nest.

A Ward top (`ward_top` in from_centroids) joins two of them: the top groups are the Ward tree's and
another linkage merges within each. Ward's size weighting keeps big regions apart and lets small
groups join them cheaply -- right for background against cell, wrong for organelles below it; the
`fast` preset takes Ward's top two groups and the centroid linkage within them (docs/tuning.md,
fourteenth round: +0.05-0.12 Dice at level 2 on the toy validation volumes, level 1 unchanged).

Why ward as the geometry's default (an early measurement, before the coarse stages): on segmentations of the synthetic test volumes (method.md §9) by a "fast"
model, its k-cuts scored best -- mean Dice at k = 2 / 4 / 8 over 10 volumes, regular and irregular:
ward 0.73 / 0.39 / 0.25, centroid 0.66 / 0.37 / 0.25, average 0.52 / 0.37 / 0.25, single 0.49 /
0.33 / 0.24 (a Euclidean model, 4 volumes: ward 0.84 / 0.42 / 0.26, average 0.59 / 0.37 / 0.29).
The price: Ward merges in an order that is not by LCA depth, so once made monotone its merge radii
take only a few distinct values and the radius control moves in a few big steps; "centroid" keeps
one radius per merge (a smooth radius control) at some cost in the k-cuts.

Euclidean geometry (for the Euclidean VAE) has no origin-centred hierarchy: the same agglomeration
runs on Euclidean distances ("ward" by default, as scipy's; "average", "centroid", "single"), and the
radius is a distance threshold: fine clusters closer than r merge, so there a larger r is coarser.
It is not scipy.cluster.hierarchy.linkage because that takes neither the clusters' sizes as weights
nor a change of descriptors part-way up the tree (the coarser stages); where it applies (equal
weights, one stage) tests/test_hierarchy.py checks the two agree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from .config import LINKAGE_NAMES
from .errors import ConfigError
from .manifold import BOUNDARY_EPS, dist, frechet_mean, mobius_add

GEOMETRIES = ("hyperbolic", "euclidean")
LINKAGES = LINKAGE_NAMES
"""Linkages per geometry, the default first (defined in config.py, which checks them without torch)."""


def lca_points(x, y, *, curvature: float = 1.0) -> np.ndarray:
    """The lowest common ancestor of x and y (..., d): the point of the geodesic segment [x, y] of
    the Poincaré ball of curvature c nearest the origin.

    In the hyperbolic right triangle (origin O, x, foot F of the perpendicular from O to the line
    through x and y), with θ the angle at x between the directions to y and to O:
    tanh d(x, F) = tanh d(x, O) cos θ. If the foot lies beyond y the answer is y, if it lies behind
    x (cos θ <= 0) it is x; distances to the origin are convex along geodesics, so that is all.
    """
    scale = math.sqrt(_check_curvature(curvature))
    x = torch.as_tensor(np.array(x, dtype=np.float64)) * scale
    y = torch.as_tensor(np.array(y, dtype=np.float64)) * scale
    x, y = torch.broadcast_tensors(x, y)
    toward_y = mobius_add(-x, y)                    # direction of y seen from x (tangent at x, conformal)
    x_norm, w_norm = x.norm(dim=-1), toward_y.norm(dim=-1)
    cos_theta = (toward_y * -x).sum(-1) / (w_norm * x_norm).clamp_min(1e-300)
    d_xo = 2.0 * torch.atanh(x_norm.clamp_max(1.0 - BOUNDARY_EPS))
    d_xy = 2.0 * torch.atanh(w_norm.clamp_max(1.0 - BOUNDARY_EPS))
    foot = torch.atanh((torch.tanh(d_xo) * cos_theta).clamp(0.0, 1.0 - 1e-15))
    along = torch.where(cos_theta > 0, torch.minimum(foot, d_xy), torch.zeros_like(foot))
    unit = toward_y / w_norm.clamp_min(1e-300)[..., None]
    point = mobius_add(x, torch.tanh(along / 2.0)[..., None] * unit)
    point = torch.where((w_norm > 0)[..., None], point, x)
    return (point / scale).numpy()


def lca_radius(x, y, *, curvature: float = 1.0) -> np.ndarray:
    """Euclidean norm (in the ball) of the lowest common ancestor of x and y: how deep their common
    subtree is. Symmetric in x and y."""
    return np.linalg.norm(lca_points(x, y, curvature=curvature), axis=-1)


def _poincare_distance(a: np.ndarray, b: np.ndarray, curvature: float) -> np.ndarray:
    a, b = (torch.as_tensor(np.array(v, dtype=np.float64)) for v in (a, b))
    return dist(a, b, curvature).numpy()


def _check_curvature(curvature) -> float:
    if not (isinstance(curvature, int | float) and math.isfinite(curvature) and curvature > 0):
        raise ConfigError(f"curvature must be a finite number > 0, got {curvature!r}")
    return float(curvature)


def _checked_stage(entry, geometry: str, n_fine: int, curvature: float) -> tuple[int, np.ndarray, str]:
    """One `coarser` entry of ClusterHierarchy.from_centroids as (k, descriptors, geometry), checked."""
    k, points, *rest = entry
    stage_geometry = rest[0] if rest else geometry
    if stage_geometry not in GEOMETRIES:
        raise ConfigError(f"a coarser stage's geometry must be one of {GEOMETRIES}, got {stage_geometry!r}")
    points = np.array(points, dtype=np.float64)
    if points.ndim != 2 or len(points) != n_fine or not np.isfinite(points).all():
        raise ConfigError(f"coarser descriptors must be finite, one row per fine cluster ({n_fine}), "
                          f"got shape {points.shape} for k = {k}")
    if stage_geometry == "hyperbolic" and np.linalg.norm(points, axis=1).max() * math.sqrt(curvature) >= 1.0:
        raise ConfigError(f"coarser descriptors for k = {k} lie outside the Poincaré ball of curvature {curvature:g}")
    return int(k), points, stage_geometry


@dataclass
class ClusterHierarchy:
    """A binary tree over fine clusters 1..n_fine and its cuts.

    Nodes: leaves are the fine ids 1..n; the merge number m (0-based) creates node n + 1 + m, so the
    root is 2n - 1. `merges[m]` are the two nodes merged, `heights[m]` the merge's height (LCA radius,
    non-increasing, for hyperbolic; distance, non-decreasing, for Euclidean), `parent_of[node]` the
    node it merges into (0 for the root; index 0 unused).
    """

    centroids: np.ndarray
    weights: np.ndarray
    geometry: str
    curvature: float
    linkage: str
    merges: np.ndarray
    heights: np.ndarray
    coarser: list = field(default_factory=list, repr=False)
    """(k, descriptors, geometry) stages the merges used (see from_centroids); [] for a plain tree."""
    ward_top: int = 0
    """The top this-many groups were the Ward tree's, `linkage` merging within them (0 = `linkage` throughout)."""
    _lookups: list[np.ndarray] = field(repr=False, default_factory=list)
    _group_centroids: dict[tuple[int, ...], np.ndarray] = field(repr=False, default_factory=dict, compare=False)
    """Centroid of each group of fine ids met so far: a group is a tree node, shared by many cuts, so a
    slider's first visit of a level costs Fréchet means only for the groups no earlier level had."""

    @classmethod
    def from_centroids(cls, centroids, *, geometry: str = "hyperbolic", curvature: float = 1.0,
                       weights=None, linkage: str | None = None, coarser=(), ward_top: int = 0) -> ClusterHierarchy:
        """Build the tree over fine clusters with these centroids (row i = fine id i + 1).

        weights: the clusters' sizes (voxel counts); they weight the average, centroid and ward
        linkages and order the coarse ids. Uniform when None.
        coarser: (k, descriptors) or (k, descriptors, geometry) entries, k decreasing: once only k
        groups are left (k = n_fine: from the start), the groups are compared by these (n_fine, d')
        per-fine-cluster descriptors instead of the centroids -- e.g. coarse levels decided on a wider
        context than fine ones (segmentation.segment passes the latents averaged over growing
        neighbourhoods of each fine cluster). A descriptor's geometry (default: the tree's) says how
        it is compared: "euclidean" descriptors may be any features, such as latents joined with
        image features. Merge heights (and so radius cuts) always come from the centroids.
        ward_top: the top `ward_top` groups are those of the Ward tree over the same clusters and
        stages, and below them `linkage` merges only within each of those groups (0 = `linkage`
        throughout). Ward weights a merge by the groups' sizes, so it keeps big regions apart and lets
        small ones join them -- right for the top of a hierarchy (background against cell), wrong below
        it, where a size-blind linkage keeps small organelles as groups of their own (docs/tuning.md,
        fourteenth round).
        """
        if geometry not in GEOMETRIES:
            raise ConfigError(f"geometry must be one of {GEOMETRIES}, got {geometry!r}")
        curvature = _check_curvature(curvature)
        linkage = LINKAGES[geometry][0] if linkage is None else linkage
        if linkage not in LINKAGES[geometry]:
            raise ConfigError(f"linkage for {geometry} geometry must be one of {LINKAGES[geometry]}, got {linkage!r}")
        centroids = np.array(centroids, dtype=np.float64)
        if centroids.ndim != 2 or len(centroids) < 1 or centroids.shape[1] < 1:
            raise ConfigError(f"centroids must be a non-empty (n_fine, d) array, got shape {centroids.shape}")
        if not np.isfinite(centroids).all():
            raise ConfigError("centroids contain NaN or infinite values")
        if geometry == "hyperbolic" and np.linalg.norm(centroids, axis=1).max() * math.sqrt(curvature) >= 1.0:
            raise ConfigError(f"centroids lie outside the Poincaré ball of curvature {curvature:g}")
        n = len(centroids)
        if weights is None:
            weights = np.ones(n)
        weights = np.array(weights, dtype=np.float64)
        if weights.shape != (n,) or not np.isfinite(weights).all() or (weights < 0).any():
            raise ConfigError(f"weights must be {n} finite, non-negative numbers (one per fine cluster)")
        coarser = [_checked_stage(entry, geometry, len(centroids), curvature) for entry in coarser]
        if [k for k, *_ in coarser] != sorted((k for k, *_ in coarser), reverse=True):
            raise ConfigError("coarser descriptors must be ordered by decreasing k")
        if isinstance(ward_top, bool) or not isinstance(ward_top, (int, np.integer)) or ward_top < 0:
            raise ConfigError(f"ward_top must be an integer >= 0 (0 = off), got {ward_top!r}")
        blocks = None
        if ward_top and linkage != "ward" and ward_top < n:
            ward_merges, _ = _agglomerate(centroids, weights, geometry, curvature, "ward", coarser)
            blocks = _groups_after(ward_merges[:n - ward_top], n)
        merges, heights = _agglomerate(centroids, weights, geometry, curvature, linkage, coarser, blocks)
        tree = cls(centroids, weights, geometry, curvature, linkage, merges, heights, coarser, int(ward_top))
        tree._lookups = tree._all_cuts()
        return tree

    # --- structure ---

    @property
    def n_fine(self) -> int:
        return len(self.centroids)

    @property
    def parent_of(self) -> np.ndarray:
        """parent_of[node] = the node it merges into; 0 for the root and at the unused index 0."""
        parent = np.zeros(2 * self.n_fine, dtype=np.int64)
        for m, (a, b) in enumerate(self.merges):
            parent[a] = parent[b] = self.n_fine + 1 + m
        return parent

    @property
    def radius_range(self) -> tuple[float, float]:
        """(lowest, highest) merge height. Hyperbolic: r <= lowest gives one cluster, r > highest
        every fine cluster. Euclidean: r >= highest gives one cluster, r < lowest every fine one."""
        if len(self.heights) == 0:
            return (0.0, 0.0)
        return (float(self.heights.min()), float(self.heights.max()))

    @property
    def merge_radii(self) -> np.ndarray:
        """The distinct merge heights, ascending: where the cut changes (for a snapping slider)."""
        return np.unique(self.heights)

    # --- cuts ---

    def k_at_radius(self, radius: float) -> int:
        """Number of clusters of the cut at this radius."""
        radius = float(radius)
        if self.geometry == "hyperbolic":
            applied = int(np.count_nonzero(self.heights >= radius))
        else:
            applied = int(np.count_nonzero(self.heights <= radius))
        return self.n_fine - applied

    def lookup_at_k(self, k: int) -> np.ndarray:
        """int32 table: index = fine id (1..n_fine; index 0 unused, 0), value = coarse id 1..k.

        Coarse ids are ordered by total weight (largest first), ties by smallest fine id.
        """
        if isinstance(k, bool) or not isinstance(k, int | np.integer) or not 1 <= k <= self.n_fine:
            raise ConfigError(f"k must be an integer from 1 to the number of fine clusters ({self.n_fine}), got {k!r}")
        return self._lookups[int(k)].copy()

    def lookup_at_radius(self, radius: float) -> np.ndarray:
        """The cut at this ball radius (see the module docstring); always one of the k-cuts."""
        if not math.isfinite(float(radius)):
            raise ConfigError(f"radius must be a finite number, got {radius!r}")
        return self.lookup_at_k(self.k_at_radius(radius))

    def coarser_parents(self, lookup: np.ndarray) -> np.ndarray:
        """For a k-cut: index = coarse id (0 unused), value = its id in the (k-1)-cut (0 when k = 1)."""
        k = self._k_of(lookup)
        parents = np.zeros(k + 1, dtype=np.int32)
        if k > 1:
            coarser = self._lookups[k - 1]
            parents[lookup[1:]] = coarser[1:]
        return parents

    def coarse_centroids(self, lookup: np.ndarray) -> np.ndarray:
        """(k, d): row j is the weighted Fréchet mean (hyperbolic) or weighted mean (Euclidean) of the
        fine centroids of coarse cluster j + 1."""
        k = self._k_of(lookup)
        out = np.empty((k, self.centroids.shape[1]))
        for coarse in range(1, k + 1):
            members = np.flatnonzero(lookup[1:] == coarse)
            key = tuple(int(m) for m in members)
            if key not in self._group_centroids:
                self._group_centroids[key] = self._group_centroid(members)
            out[coarse - 1] = self._group_centroids[key]
        return out

    def _group_centroid(self, members: np.ndarray) -> np.ndarray:
        weights = self.weights[members]
        if weights.sum() <= 0:
            weights = np.ones(len(members))
        if self.geometry == "hyperbolic":
            return np.asarray(frechet_mean(self.centroids[members], weights, curvature=self.curvature))
        return np.average(self.centroids[members], axis=0, weights=weights)

    def _k_of(self, lookup: np.ndarray) -> int:
        lookup = np.asarray(lookup)
        if lookup.shape != (self.n_fine + 1,):
            raise ConfigError(f"a lookup of this hierarchy has {self.n_fine + 1} entries, got shape {lookup.shape}")
        k = int(lookup[1:].max())
        if not np.array_equal(lookup, self._lookups[k]):
            raise ConfigError("this lookup is not a cut of this hierarchy; "
                              "take it from lookup_at_k or lookup_at_radius")
        return k

    def _all_cuts(self) -> list[np.ndarray]:
        """lookups[k] for k = 1..n (index 0 unused): apply the first n - k merges, then number groups."""
        n = self.n_fine
        lookups: list[np.ndarray] = [np.zeros(0, dtype=np.int32)] * (n + 1)
        members = {leaf: [leaf] for leaf in range(1, n + 1)}
        lookups[n] = self._numbered(members)
        for m, (a, b) in enumerate(self.merges):
            node = n + 1 + m
            members[node] = members.pop(a) + members.pop(b)
            lookups[n - 1 - m] = self._numbered(members)
        return lookups

    def _numbered(self, members: dict[int, list[int]]) -> np.ndarray:
        order = sorted(members.values(), key=lambda fine: (-self.weights[np.array(fine) - 1].sum(), min(fine)))
        lookup = np.zeros(self.n_fine + 1, dtype=np.int32)
        for coarse, fine in enumerate(order, start=1):
            lookup[fine] = coarse
        return lookup


def _agglomerate(centroids: np.ndarray, weights: np.ndarray, geometry: str, curvature: float, linkage: str,
                 coarser: list[tuple[int, np.ndarray, str]] = (), blocks: np.ndarray | None = None):
    """Greedy agglomeration on a similarity (higher merges first): the LCA radius for hyperbolic;
    minus the distance, or minus Ward's merge cost, for Euclidean. Returns merges (n-1, 2) of node
    ids and heights.

    `coarser`: (k, descriptors, geometry) stages, k decreasing: once only k groups are left, the
    groups are compared by these per-fine-cluster descriptors, in their own geometry, instead of the
    centroids (see ClusterHierarchy). `blocks` (n,): a group id per fine cluster; merges stay within a
    block until one group per block is left, and those merge by Ward's criterion (see ward_top in
    ClusterHierarchy.from_centroids). Heights are always measured on the centroids, by the rule of
    the first linkage, so they read the same way along the whole tree."""
    n = len(centroids)
    height_linkage = linkage
    hyperbolic = geometry == "hyperbolic"
    # Weights relative to their mean (so Ward heights read as distances); a cluster without voxels
    # still needs a place in the tree, so it counts as nearly nothing rather than nothing.
    mean_weight = weights.mean() if weights.sum() > 0 else 1.0
    relative = np.maximum(weights / mean_weight, 1e-9)

    def similarity(a: np.ndarray, b: np.ndarray, ball: bool) -> np.ndarray:
        if ball and linkage != "ward":
            return lca_radius(a, b, curvature=curvature)
        if ball:
            return -_poincare_distance(a, b, curvature)
        return -np.sqrt(((a - b) ** 2).sum(-1))

    def ward_cost(distance: np.ndarray, wa, wb) -> np.ndarray:
        """Minus the increase of the weighted sum of squares when merging (exact in Euclidean space,
        with Poincaré distances between Fréchet means a close approximation in the ball)."""
        return -(distance ** 2) * wa * wb / (wa + wb)

    def group_centre(points: np.ndarray, leaves: list[int], ball: bool) -> np.ndarray:
        leaves = np.array(leaves)
        if len(leaves) == 1:
            return points[leaves[0] - 1]
        if ball:
            return frechet_mean(points[leaves - 1], relative[leaves - 1], curvature=curvature)
        return np.average(points[leaves - 1], axis=0, weights=relative[leaves - 1])

    def symmetric_similarities(a: np.ndarray, ball: bool) -> np.ndarray:
        pairwise = similarity(a[:, None], a[None], ball)
        return (pairwise + pairwise.T) / 2.0           # exact symmetry, so ties break the same way

    def compare_groups(points: np.ndarray, ball: bool) -> None:
        """Fill the similarity matrix among the active groups from the fine clusters' `points`."""
        for node in active:
            centre[node] = group_centre(points, members[node], ball)
        nodes = np.array(active)
        if linkage in ("single", "average"):
            leaf = symmetric_similarities(points, ball)
            values = np.empty((len(nodes), len(nodes)))
            for i, a in enumerate(active):
                for j, b in enumerate(active):
                    block = leaf[np.ix_(np.array(members[a]) - 1, np.array(members[b]) - 1)]
                    if linkage == "single":
                        values[i, j] = block.max()
                    else:
                        wa, wb = relative[np.array(members[a]) - 1], relative[np.array(members[b]) - 1]
                        values[i, j] = float(wa @ block @ wb / (wa.sum() * wb.sum()))
        else:
            values = symmetric_similarities(np.array([centre[node] for node in active]), ball)
            if linkage == "ward":
                values = ward_cost(values, weight[nodes][:, None], weight[nodes][None])
        np.fill_diagonal(values, -np.inf)
        if constrained:
            values[block_id[nodes][:, None] != block_id[nodes][None]] = -np.inf
        similarity_matrix[np.ix_(nodes, nodes)] = values

    similarity_matrix = np.full((2 * n, 2 * n), -np.inf)
    weight = np.zeros(2 * n)
    weight[1:n + 1] = relative
    members: dict[int, list[int]] = {leaf: [leaf] for leaf in range(1, n + 1)}
    active = list(range(1, n + 1))
    centre: dict[int, np.ndarray] = {}
    block_id = np.zeros(2 * n, dtype=np.int64)
    constrained = blocks is not None
    if constrained:
        block_id[1:n + 1] = blocks
        n_blocks = len(np.unique(blocks))
    stages = [(n, centroids, geometry)] + list(coarser)   # checked by ClusterHierarchy.from_centroids
    merges, heights = [], []
    for m in range(n - 1):
        while stages and len(active) <= stages[0][0]:
            _, points, stage_geometry = stages.pop(0)
            ball = stage_geometry == "hyperbolic"
            compare_groups(points, ball)
        if constrained and len(active) <= n_blocks:
            linkage, constrained = "ward", False
            compare_groups(points, ball)
        sub = similarity_matrix[np.ix_(active, active)]
        i, j = divmod(int(np.argmax(sub)), len(active))
        a, b = sorted((active[i], active[j]))
        node = n + 1 + m
        members[node] = members[a] + members[b]
        merges.append((a, b))
        if points is centroids and linkage == height_linkage and not (hyperbolic and linkage == "ward"):
            heights.append(sub[i, j])
        else:   # measured on the centroids, whatever the stage compared
            centre_a, centre_b = (group_centre(centroids, members[x], hyperbolic) for x in (a, b))
            if hyperbolic:   # the LCA of the groups' Fréchet means: a depth in the ball
                heights.append(float(lca_radius(centre_a, centre_b, curvature=curvature)))
            else:
                distance = -float(np.linalg.norm(centre_a - centre_b))
                heights.append(float(ward_cost(distance, weight[a], weight[b])) if height_linkage == "ward"
                               else distance)
        del members[a], members[b]
        active = [x for x in active if x not in (a, b)]
        wa, wb = weight[a], weight[b]
        weight[node] = wa + wb
        centre[node] = group_centre(points, members[node], ball)
        if active:
            others = np.array(active)
            to_a, to_b = similarity_matrix[a, others], similarity_matrix[b, others]
            if linkage == "single":
                row = np.maximum(to_a, to_b)
            elif linkage == "average":
                row = (wa * to_a + wb * to_b) / (wa + wb)
            elif linkage == "centroid":
                row = similarity(centre[node][None], np.array([centre[o] for o in active]), ball)
            else:  # ward, from the groups' means (Fréchet means in the ball)
                row = ward_cost(similarity(centre[node][None], np.array([centre[o] for o in active]), ball),
                                weight[node], weight[others])
            if constrained:
                row = np.where(block_id[others] == block_id[a], row, -np.inf)
            similarity_matrix[node, others] = similarity_matrix[others, node] = row
        block_id[node] = block_id[a]
        active.append(node)
    heights = np.array(heights, dtype=np.float64)
    if not hyperbolic:
        # Distances; Ward's as scipy's: sqrt(2 x cost), the distance for two clusters of average size.
        heights = np.sqrt(2.0 * np.maximum(-heights, 0.0)) if height_linkage == "ward" else -heights
    if len(heights):
        heights = np.minimum.accumulate(heights) if hyperbolic else np.maximum.accumulate(heights)
    return np.array(merges, dtype=np.int64).reshape(-1, 2), heights


def _groups_after(merges: np.ndarray, n: int) -> np.ndarray:
    """(n,) group ids of the fine clusters 1..n once these merges are made (the tree's nodes as in
    ClusterHierarchy: the m-th merge creates node n + 1 + m)."""
    top = np.arange(2 * n)      # each node's topmost ancestor among these merges, set from the last merge down
    for m in range(len(merges) - 1, -1, -1):
        node = n + 1 + m
        for child in merges[m]:
            top[child] = top[node]
    return top[1:n + 1]
