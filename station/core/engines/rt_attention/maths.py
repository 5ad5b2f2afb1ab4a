"""The numerical pieces the RT-attention engine's parts share: whitening, log-sum-exp, the unit space
of one defect mode, and how much a defect at one cell tells about another."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def whitener(cov_inv: np.ndarray) -> np.ndarray:
    """L with L L^T = V^-1, so that t = L^T (Y - mean) has |t|^2 = m * D^2 (batched over leading axes)."""
    sym = 0.5 * (cov_inv + np.swapaxes(cov_inv, -1, -2))
    return np.linalg.cholesky(sym.astype(np.float64)).astype(np.float32)


def logsumexp(a: np.ndarray, axis: int) -> np.ndarray:
    top = np.max(a, axis=axis, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    return np.log(np.sum(np.exp(a - top), axis=axis)) + np.squeeze(top, axis=axis)


@dataclass
class ModeSpace:
    """The unit space of one defect mode: a standard vector per cell, metric mean and whitening pooled
    over the labelled cells of that mode (too few to keep them per cell)."""

    standard: np.ndarray  # (n_cells, k)
    mean: np.ndarray  # (P, m): per block of a cell
    whiten: np.ndarray  # (P, m, m)


def spread_to_classes(log_probs: np.ndarray, present: np.ndarray, n_classes: int) -> np.ndarray:
    """Log-probabilities over the classes `present` (a fold's) spread to all n_classes, -inf elsewhere."""
    out = np.full(n_classes, -np.inf)
    out[present] = log_probs
    return out


def cell_kinship(standards: np.ndarray, cells: np.ndarray) -> np.ndarray:
    """(n, len(cells)) weights: how much a defect seen at cell j = cells[i] tells about cell n, from
    how alike their good standards are (a pushed round pin teaches about round pins). Each row sums
    to 1; normalised in log space, so a cell unlike every given one still gets its nearest kin."""
    d = np.mean((standards[:, None, :] - standards[None, :, :]) ** 2, axis=-1)
    off = d[~np.eye(len(d), dtype=bool)]
    h = 0.1 * float(np.median(off)) + 1e-12 if off.size else 1.0
    log_w = -d[:, cells] / h
    w = np.exp(log_w - log_w.max(axis=1, keepdims=True))
    return w / w.sum(axis=1, keepdims=True)
