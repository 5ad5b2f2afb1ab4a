"""Local descriptors of a crop without any learned weights: at every 4 x 4 px step, the pixels of a 4 x 4
window of the crop at three scales (1, 1/2 and 1/4: 4, 8 and 16 px of the crop around the step), colour
kept; standardised and projected on the good images' leading principal directions. Also the greedy
k-centre coreset that keeps a memory of such descriptors small (PatchCore's subsampling) and the
nearest-neighbour distance to that memory.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from station.core.errors import EngineError

STRIDE = 4  # descriptor grid step, in crop pixels
WINDOW = 4  # pixels a side of each scale's window
SCALES = ((1, (0, 0, 0, 0)), (2, (1, 1, 1, 1)), (4, (1, 2, 1, 2)))  # (downscale, padding to keep the grid)
FEATURE_DIM = 3 * WINDOW * WINDOW * len(SCALES)


def raw_descriptors(crops: np.ndarray) -> torch.Tensor:
    """(N, H, W, 3) uint8 crops, sides multiples of 8, to (N, H/4, W/4, FEATURE_DIM) float32 in 0..1."""
    n, h, w = crops.shape[:3]
    if h % 8 or w % 8:
        raise EngineError(f"descriptor crops need sides that are multiples of 8 px, not {w}x{h}")
    x = torch.from_numpy(np.ascontiguousarray(crops, dtype=np.float32) / 255.0).permute(0, 3, 1, 2)
    out = []
    for s, pad in SCALES:
        xs = F.avg_pool2d(x, s) if s > 1 else x
        cols = F.unfold(F.pad(xs, pad, mode="replicate"), WINDOW, stride=STRIDE // s)
        out.append(cols.reshape(n, -1, h // STRIDE, w // STRIDE))
    return torch.cat(out, 1).permute(0, 2, 3, 1).contiguous()


class Descriptor:
    """Crops to standardised, projected descriptors (N, H/4, W/4, D).

    Standardising and projecting a window's pixels is linear in them, so each scale's share is a convolution of
    that scale's image with the projection's rows for it (stride 4 / scale), and the three are added: the same
    descriptors as `raw_descriptors` standardised and projected, to float rounding, without building the
    144 values of every position first (2 to 3 times faster per 512 px crop; docs/photographs.md)."""

    def __init__(self, mean: np.ndarray, std: np.ndarray, projection: np.ndarray) -> None:
        mean, std, projection = (np.asarray(a, np.float32) for a in (mean, std, projection))
        if mean.shape != (FEATURE_DIM,) or std.shape != (FEATURE_DIM,):
            raise EngineError(f"descriptor statistics must have {FEATURE_DIM} values")
        if projection.ndim != 2 or projection.shape[0] != FEATURE_DIM or not 1 <= projection.shape[1] <= FEATURE_DIM:
            raise EngineError(f"descriptor projection has shape {projection.shape}, expected ({FEATURE_DIM}, d)")
        if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(projection)) and np.all(std > 0)):
            raise EngineError("descriptor statistics are not finite and positive")
        self.mean, self.std, self.projection = (torch.from_numpy(a) for a in (mean, std, projection))
        # worked out with numpy, not torch: a torch matrix product here, in the thread that loads the recipe, starts
        # a second OpenMP team beside the inference thread's, and on two cores the live line's search then took
        # twice as long (docs/photographs.md, "The patch memory's descriptors as convolutions")
        per_pixel = projection / std[:, None] / 255.0  # (FEATURE_DIM, D) on uint8 grey levels
        per_scale = 3 * WINDOW * WINDOW  # rows of one scale, in raw_descriptors' order: channel, row, column
        self._kernels = [torch.from_numpy(np.ascontiguousarray(
            per_pixel[i * per_scale:(i + 1) * per_scale].T.reshape(-1, 3, WINDOW, WINDOW), dtype=np.float32))
            for i in range(len(SCALES))]
        self._bias = torch.from_numpy((-(mean.astype(np.float64) / std) @ projection).astype(np.float32))

    @property
    def dims(self) -> int:
        return int(self.projection.shape[1])

    @torch.no_grad()
    def __call__(self, crops: np.ndarray, batch: int = 16) -> torch.Tensor:
        return torch.cat([self._projected(crops[i:i + batch]) for i in range(0, len(crops), batch)])

    def _projected(self, crops: np.ndarray) -> torch.Tensor:
        n, h, w = crops.shape[:3]
        if h % 8 or w % 8:
            raise EngineError(f"descriptor crops need sides that are multiples of 8 px, not {w}x{h}")
        x = torch.from_numpy(np.ascontiguousarray(crops)).permute(0, 3, 1, 2).contiguous().float()
        out = None
        for (s, pad), kernel in zip(SCALES, self._kernels):
            xs = F.avg_pool2d(x, s) if s > 1 else x
            if any(pad):
                xs = F.pad(xs, pad, mode="replicate")
            y = F.conv2d(xs, kernel, bias=self._bias if out is None else None, stride=STRIDE // s)
            out = y if out is None else out.add_(y)
        return out.permute(0, 2, 3, 1).contiguous()

    def arrays(self) -> dict[str, np.ndarray]:
        return {"feat_mean": self.mean.numpy(), "feat_std": self.std.numpy(), "projection": self.projection.numpy()}


def principal_axes(rows: torch.Tensor, k: int) -> np.ndarray:
    """(d, k) leading principal directions of the rows (already centred and scaled)."""
    cov = (rows.T @ rows / max(rows.shape[0] - 1, 1)).double()
    _, vectors = torch.linalg.eigh(cov)
    return vectors[:, -k:].flip(1).float().numpy()


def greedy_coreset(features: torch.Tensor, size: int, seed: int = 0, proj_dim: int = 32) -> np.ndarray:
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


def nearest_distance(queries: torch.Tensor, memory: torch.Tensor, chunk: int = 256) -> torch.Tensor:
    """Euclidean distance from each query row to its nearest memory row.

    |q - m|^2 = |q|^2 + (|m|^2 - 2 q.m): the bracket worked out in place in one (chunk, memory) buffer, its
    minimum over the memory taken before |q|^2 is added. Small chunks keep the block in the processor's
    cache. The buffer is written by `torch.mm(out=)`, not `torch.addmm`, whose broadcast input now and then
    held gigabytes for a moment (docs/photographs.md, "Speed of the patch memory")."""
    m2 = (memory * memory).sum(dim=1)[None, :]
    memory_t = memory.T.contiguous()
    block = torch.empty(min(chunk, max(queries.shape[0], 1)), memory.shape[0], dtype=memory.dtype)
    out = []
    for i in range(0, queries.shape[0], chunk):
        q = queries[i:i + chunk]
        part = block[:q.shape[0]]
        torch.mm(q, memory_t, out=part)
        nearest = part.mul_(-2.0).add_(m2).amin(dim=1)
        out.append((nearest + (q * q).sum(dim=1)).clamp_min(0).sqrt())
    return torch.cat(out) if out else torch.empty(0, dtype=memory.dtype)
