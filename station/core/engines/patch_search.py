"""The patch memory's nearest-neighbour search, exact and pruned by clusters.

The memory is grouped once into clusters (a few rounds of k-means from its first rows, which the greedy
k-centre coreset put far apart), each with its centre and radius. A query is first compared with every row of
its nearest cluster; a row of cluster k is then at least |q - centre_k| - radius_k away (the triangle
inequality), so only the clusters whose bound is below the distance found so far are searched. The result is
the brute-force distance (up to the rounding of the matrix products both use). Good parts' descriptors lie
close to their nearest cluster and most of the memory is never looked at; where the memory has no such
structure (most bounds below the distance found: KolektorSDD's), the search compares every row, and goes on
doing so for the next RETRY_AFTER searches before it tries the clusters again.
Measured in docs/photographs.md ("The patch memory's search, pruned").

With a `probe` the search is approximate: each query is compared with the rows of its `probe` nearest
clusters only, a fixed share of the memory whatever the memory's structure (docs/photographs.md, "The patch
memory's search, probed"). An engine that searches so must read its good parts' distances the same way.
"""

from __future__ import annotations

import numpy as np
import torch

from station.core.engines.patch_features import nearest_distance

CLUSTERS = 64
MIN_MEMORY = 1024  # a smaller memory is searched row by row: the clusters would not pay for themselves
KMEANS_ROUNDS = 10
MAX_PAIRS_SHARE = 0.25  # more (query, cluster) pairs to search than this share of all: search every row
ROUNDING = 1e-3  # the bound is loosened by this share of the lengths involved: the products round, the bound not
RETRY_AFTER = 32  # searches of every row after one the clusters did not prune, before they are tried again
CHUNK = 4096  # queries per product against one cluster: a cluster is small, its block stays in the cache


class MemoryIndex:
    """A memory of descriptors (M, D) and its clusters; `nearest(queries)` is nearest_distance(queries, memory)."""

    def __init__(self, memory: torch.Tensor, clusters: int = CLUSTERS) -> None:
        self.memory = memory
        self.centres: torch.Tensor | None = None
        self.searched_share = 1.0  # of (query, cluster) pairs, in the last search: 1.0 when every row was
        self._unpruned = 0  # searches of every row still to make before the clusters are tried again
        if memory.shape[0] < max(MIN_MEMORY, 4 * clusters):
            return
        centres = memory[:clusters].clone()
        for _ in range(KMEANS_ROUNDS):
            owner = torch.cdist(memory, centres).argmin(dim=1)
            counts = torch.bincount(owner, minlength=clusters)
            sums = torch.zeros_like(centres).index_add_(0, owner, memory)
            filled = counts > 0  # an empty cluster keeps its centre
            centres[filled] = sums[filled] / counts[filled, None].to(memory.dtype)
        owner = torch.cdist(memory, centres).argmin(dim=1)
        order = torch.argsort(owner, stable=True)
        self.rows = memory[order].contiguous()
        owner = owner[order]
        self.starts = torch.searchsorted(owner, torch.arange(clusters + 1)).tolist()
        radius = torch.zeros(clusters, dtype=memory.dtype)
        for k in range(clusters):
            if self.starts[k + 1] > self.starts[k]:
                radius[k] = (self.rows[self.starts[k]:self.starts[k + 1]] - centres[k]).norm(dim=1).max()
        self.centres, self.radius = centres, radius
        self.reach = float(centres.norm(dim=1).max() + radius.max())

    def nearest(self, queries: torch.Tensor, probe: int = 0) -> torch.Tensor:
        """Euclidean distance from each query row to its nearest memory row; with `probe` > 0 (and clusters),
        to its nearest row among the `probe` clusters whose centres are nearest it: never nearer than the exact
        distance, and equal wherever its nearest row lies in one of them."""
        self.searched_share = 1.0
        if probe > 0 and self.centres is not None and probe < self.centres.shape[0]:
            # the `probe` nearest centres, in no order: a partition, several times faster than torch's topk here
            to_centre = torch.cdist(queries, self.centres).numpy()
            nearest_centres = torch.from_numpy(np.argpartition(to_centre, probe - 1, axis=1)[:, :probe])
            best = torch.full((queries.shape[0],), float("inf"), dtype=queries.dtype)
            query = torch.arange(queries.shape[0]).repeat_interleave(probe)
            self._search(queries, query, nearest_centres.reshape(-1), best)
            self.searched_share = probe / self.centres.shape[0]
            unmet = ~torch.isfinite(best)  # every probed cluster empty (k-means leaves one so, now and then)
            if unmet.any():
                best[unmet] = nearest_distance(queries[unmet], self.memory)
            return best
        if self.centres is None or queries.shape[0] < self.centres.shape[0] or self._unpruned > 0:
            self._unpruned = max(0, self._unpruned - 1)
            return nearest_distance(queries, self.memory)
        to_centre = torch.cdist(queries, self.centres)
        own = to_centre.argmin(dim=1)
        best = torch.full((queries.shape[0],), float("inf"), dtype=queries.dtype)
        self._search(queries, torch.arange(queries.shape[0]), own, best)
        slack = ROUNDING * (queries.norm(dim=1) + self.reach)
        todo = (to_centre - self.radius[None, :] - slack[:, None]) < best[:, None]
        todo[torch.arange(queries.shape[0]), own] = False
        share = (int(todo.sum()) + queries.shape[0]) / todo.numel()
        if share > MAX_PAIRS_SHARE:  # the next frames are much like this one: no clusters for a while
            self._unpruned = RETRY_AFTER
            return nearest_distance(queries, self.memory)
        self.searched_share = share
        query, cluster = todo.nonzero(as_tuple=True)
        self._search(queries, query, cluster, best)
        return best

    def _search(self, queries: torch.Tensor, query: torch.Tensor, cluster: torch.Tensor, best: torch.Tensor) -> None:
        """Lower `best` of each listed query to its distance to the rows of the cluster listed with it (each
        query at most once per cluster)."""
        order = torch.sort(cluster, stable=True).indices  # the same order as argsort(stable=True), 30 times faster
        query, cluster = query[order], cluster[order]
        bounds = torch.searchsorted(cluster, torch.arange(len(self.starts))).tolist()
        for k in range(len(self.starts) - 1):
            lo, hi = bounds[k], bounds[k + 1]
            if hi > lo and self.starts[k + 1] > self.starts[k]:
                which = query[lo:hi]
                found = nearest_distance(queries[which], self.rows[self.starts[k]:self.starts[k + 1]], chunk=CHUNK)
                best[which] = torch.minimum(best[which], found)
