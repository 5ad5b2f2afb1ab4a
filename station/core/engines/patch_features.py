"""Local descriptors of a crop without any learned weights: at every 4 x 4 px step, the pixels of a 4 x 4
window of the crop at three scales (1, 1/2 and 1/4: 4, 8 and 16 px of the crop around the step), or four where
the settings ask (1/8 too: 32 px), colour kept; standardised and projected on the good images' leading
principal directions. Also the greedy
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
# (downscale, padding that keeps the descriptor grid): at 1/8 the image is pooled over 8 px every 4 px and the
# window's pixels are taken every other one (dilation 2), so it spans 32 px of the crop on the same grid
SCALES = ((1, (0, 0, 0, 0)), (2, (1, 1, 1, 1)), (4, (1, 2, 1, 2)), (8, (3, 4, 3, 4)))
PER_SCALE = 3 * WINDOW * WINDOW  # values of one scale's window: channel, row, column
FEATURE_DIM = PER_SCALE * len(SCALES)  # the most a descriptor has
DEFAULT_SCALES = 3  # the first three: the fourth was measured and left as a setting (docs/photographs.md)


def _pooled(x: torch.Tensor, s: int) -> tuple[torch.Tensor, int, int]:
    """(the image at 1/s, padded to keep the grid; the window's stride; its dilation) for scale `s`."""
    pad = dict(SCALES)[s]
    xs = F.avg_pool2d(x, s, stride=min(s, STRIDE)) if s > 1 else x
    if any(pad):
        xs = F.pad(xs, pad, mode="replicate")
    return xs, max(1, STRIDE // s), max(1, s // STRIDE)


def scale_count(dims: int) -> int:
    """The scales a descriptor of `dims` raw values has (3, the default, or 4)."""
    if dims % PER_SCALE or not 3 <= dims // PER_SCALE <= len(SCALES):
        raise EngineError(f"a descriptor has {3 * PER_SCALE} or {FEATURE_DIM} raw values, not {dims}")
    return dims // PER_SCALE


def raw_descriptors(crops: np.ndarray, scales: int = DEFAULT_SCALES) -> torch.Tensor:
    """(N, H, W, 3) uint8 crops, sides multiples of 8, to (N, H/4, W/4, PER_SCALE * scales) float32 in 0..1
    (the first `scales` of SCALES)."""
    n, h, w = crops.shape[:3]
    if h % 8 or w % 8:
        raise EngineError(f"descriptor crops need sides that are multiples of 8 px, not {w}x{h}")
    x = torch.from_numpy(np.ascontiguousarray(crops, dtype=np.float32) / 255.0).permute(0, 3, 1, 2)
    out = []
    for s, _ in SCALES[:scales]:
        xs, stride, dilation = _pooled(x, s)
        cols = F.unfold(xs, WINDOW, dilation=dilation, stride=stride)
        out.append(cols.reshape(n, -1, h // STRIDE, w // STRIDE))
    return torch.cat(out, 1).permute(0, 2, 3, 1).contiguous()


class Descriptor:
    """Crops to standardised, projected descriptors (N, H/4, W/4, D).

    Standardising and projecting a window's pixels is linear in them, so each scale's share is a convolution of
    that scale's image with the projection's rows for it (stride 4 / scale, or dilated at 1/8), and they are
    added: the same descriptors as `raw_descriptors` standardised and projected, to float rounding, without
    building the 144 (192) values of every position first (2 to 3 times faster per 512 px crop;
    docs/photographs.md). The scales are as many as the statistics have values for."""

    def __init__(self, mean: np.ndarray, std: np.ndarray, projection: np.ndarray) -> None:
        mean, std, projection = (np.asarray(a, np.float32) for a in (mean, std, projection))
        if mean.ndim != 1 or std.shape != mean.shape:
            raise EngineError(f"descriptor statistics have shapes {mean.shape} and {std.shape}, expected (n,) each")
        self.scales = scale_count(mean.shape[0])
        dim = mean.shape[0]
        if projection.ndim != 2 or projection.shape[0] != dim or not 1 <= projection.shape[1] <= dim:
            raise EngineError(f"descriptor projection has shape {projection.shape}, expected ({dim}, d)")
        if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(projection)) and np.all(std > 0)):
            raise EngineError("descriptor statistics are not finite and positive")
        self.mean, self.std, self.projection = (torch.from_numpy(a) for a in (mean, std, projection))
        # worked out with numpy, not torch: a torch matrix product here, in the thread that loads the recipe, starts
        # a second OpenMP team beside the inference thread's, and on two cores the live line's search then took
        # twice as long (docs/photographs.md, "The patch memory's descriptors as convolutions")
        per_pixel = projection / std[:, None] / 255.0  # (FEATURE_DIM, D) on uint8 grey levels
        self._kernels = [torch.from_numpy(np.ascontiguousarray(  # rows in raw_descriptors' order
            per_pixel[i * PER_SCALE:(i + 1) * PER_SCALE].T.reshape(-1, 3, WINDOW, WINDOW), dtype=np.float32))
            for i in range(self.scales)]
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
        for (s, _), kernel in zip(SCALES, self._kernels):
            xs, stride, dilation = _pooled(x, s)
            y = F.conv2d(xs, kernel, bias=self._bias if out is None else None, stride=stride, dilation=dilation)
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
