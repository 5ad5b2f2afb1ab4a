"""Local descriptors of a crop without pretrained weights: a small convolutional stack whose filters are
drawn from a seeded generator (never trained, never downloaded), read at two depths, averaged over a
3 x 3 neighbourhood, and standardised with statistics of the good images. Also the greedy k-centre
coreset that keeps a memory of such descriptors small (PatchCore's subsampling).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from station.core.errors import EngineError

WIDTHS = (32, 64, 128)  # channels of the three stages; stages 2 and 3 are read
FEATURE_DIM = WIDTHS[1] + WIDTHS[2]
STRIDE = 4  # descriptor grid step, in crop pixels


def random_filters(seed: int) -> dict[str, np.ndarray]:
    """He-scaled Gaussian filters of the three 3 x 3 stages, zero-mean per output filter (so a flat patch
    gives no response and the descriptors see structure, not brightness alone), from `seed`."""
    rng = np.random.default_rng(seed)
    out, cin = {}, 3
    for i, cout in enumerate(WIDTHS):
        w = rng.standard_normal((cout, cin, 3, 3)).astype(np.float32) * np.sqrt(2.0 / (cin * 9))
        if i > 0:
            w -= w.mean(axis=(1, 2, 3), keepdims=True)
        out[f"conv{i}"] = w
        cin = cout
    return out


class Descriptor:
    """Crops (N, H, W, 3) uint8 to descriptors (N, H/4, W/4, D) float32: FEATURE_DIM channels, standardised,
    then projected on the good images' leading principal directions when a projection is set."""

    def __init__(self, filters: dict[str, np.ndarray], pixel_mean: np.ndarray, pixel_std: np.ndarray,
                 feat_mean: np.ndarray | None = None, feat_std: np.ndarray | None = None,
                 projection: np.ndarray | None = None) -> None:
        for i, cout in enumerate(WIDTHS):
            w = filters.get(f"conv{i}")
            cin = 3 if i == 0 else WIDTHS[i - 1]
            if w is None or w.shape != (cout, cin, 3, 3):
                raise EngineError(f"descriptor filter conv{i} is missing or has the wrong shape")
        self.filters = {k: torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32)) for k, v in filters.items()}
        self.pixel_mean = np.asarray(pixel_mean, np.float32).reshape(3)
        self.pixel_std = np.maximum(np.asarray(pixel_std, np.float32).reshape(3), 1e-3)
        self.feat_mean = None if feat_mean is None else torch.from_numpy(np.asarray(feat_mean, np.float32))
        self.feat_std = None if feat_std is None else torch.from_numpy(np.asarray(feat_std, np.float32))
        self.projection = None if projection is None else torch.from_numpy(np.asarray(projection, np.float32))

    @torch.no_grad()
    def raw(self, crops: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(np.ascontiguousarray(crops, dtype=np.float32)).permute(0, 3, 1, 2)
        x = (x - torch.from_numpy(self.pixel_mean * 255)[None, :, None, None]) / torch.from_numpy(
            self.pixel_std * 255)[None, :, None, None]
        h1 = F.avg_pool2d(F.relu(F.conv2d(x, self.filters["conv0"], padding=1)), 2)
        h2 = F.avg_pool2d(F.relu(F.conv2d(h1, self.filters["conv1"], padding=1)), 2)
        h3 = F.avg_pool2d(F.relu(F.conv2d(h2, self.filters["conv2"], padding=1)), 2)
        up = F.interpolate(h3, size=h2.shape[-2:], mode="bilinear", align_corners=False)
        f = torch.cat([h2, up], dim=1)
        f = F.avg_pool2d(f, 3, stride=1, padding=1, count_include_pad=False)  # the patch's neighbourhood
        return f.permute(0, 2, 3, 1).contiguous()

    @torch.no_grad()
    def __call__(self, crops: np.ndarray, batch: int = 16) -> torch.Tensor:
        parts = [self.raw(crops[i:i + batch]) for i in range(0, len(crops), batch)]
        f = torch.cat(parts)
        if self.feat_mean is not None:
            f = (f - self.feat_mean) / self.feat_std
        if self.projection is not None:
            f = f @ self.projection
        return f


def principal_axes(rows: torch.Tensor, k: int) -> np.ndarray:
    """(d, k) leading principal directions of the rows (already centred and scaled)."""
    cov = (rows.T @ rows / max(rows.shape[0] - 1, 1)).double()
    _, vectors = torch.linalg.eigh(cov)
    return vectors[:, -k:].flip(1).float().numpy()


def greedy_coreset(features: torch.Tensor, size: int, seed: int = 0, proj_dim: int = 64) -> np.ndarray:
    """Indices of `size` rows chosen by greedy k-centre selection (each next row the one farthest from those
    chosen), on a random projection of the rows to `proj_dim` dimensions as in PatchCore."""
    n = features.shape[0]
    if size >= n:
        return np.arange(n)
    gen = torch.Generator().manual_seed(seed)
    proj = torch.randn(features.shape[1], proj_dim, generator=gen) / np.sqrt(proj_dim)
    z = features @ proj
    chosen = np.empty(size, dtype=np.int64)
    chosen[0] = int(torch.randint(n, (1,), generator=gen))
    dist = ((z - z[chosen[0]]) ** 2).sum(dim=1)
    for i in range(1, size):
        j = int(torch.argmax(dist))
        chosen[i] = j
        dist = torch.minimum(dist, ((z - z[j]) ** 2).sum(dim=1))
    return chosen


def nearest_distance(queries: torch.Tensor, memory: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
    """Euclidean distance from each query row to its nearest memory row."""
    m2 = (memory * memory).sum(dim=1)
    out = []
    for i in range(0, queries.shape[0], chunk):
        q = queries[i:i + chunk]
        d2 = (q * q).sum(dim=1, keepdim=True) + m2[None, :] - 2.0 * (q @ memory.T)
        out.append(d2.min(dim=1).values.clamp_min(0).sqrt())
    return torch.cat(out)
