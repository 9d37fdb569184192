"""Thin-plate-spline backward warp: each output pixel's displacement to where it samples the
photo, interpolated from the control points (the moved landmarks and the fixed ring).

The spline's centres are the moved points themselves, so it takes the wanted displacement
exactly there; control points that meet (closed lips) are merged first. The field is
evaluated on a coarse grid of at most about 4,000 points and resized to pixels, so the
per-frame cost does not grow with the photo.
"""

from __future__ import annotations

import numpy as np

__all__ = ["tps_field"]


def _kernel(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """U = r^2 log r^2 between every point of ``a`` (m, 2) and of ``b`` (n, 2) -> (m, n)."""
    d2 = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * (a @ b.T)
    d2 = np.maximum(d2, 1e-20)
    return d2 * np.log(d2)


def tps_field(targets: np.ndarray, values: np.ndarray, grid: np.ndarray, merge: float = 0.5) -> np.ndarray:
    """The smooth field (m, 2) on ``grid`` (m, 2) that equals ``values`` (n, 2) at
    ``targets`` (n, 2). Targets closer than ``merge`` pixels to an earlier one are dropped."""
    targets = np.asarray(targets, dtype=np.float64)
    near = np.abs(targets[:, None, :] - targets[None, :, :]).sum(-1) < merge
    keep = ~np.tril(near, -1).any(1)  # drop a point that meets an earlier one
    c, v = targets[keep], np.asarray(values, dtype=np.float64)[keep]
    origin = c.mean(0)
    scale = float(np.abs(c - origin).max()) or 1.0  # unit-sized coordinates: well conditioned
    cn = (c - origin) / scale
    n = len(cn)
    system = np.zeros((n + 3, n + 3))
    system[:n, :n] = _kernel(cn, cn) + 1e-8 * np.eye(n)
    system[:n, n] = 1.0
    system[:n, n + 1 :] = cn
    system[n:, :n] = system[:n, n:].T
    rhs = np.zeros((n + 3, 2))
    rhs[:n] = v
    coef = np.linalg.solve(system, rhs).astype(np.float32)
    g = ((np.asarray(grid, dtype=np.float64) - origin) / scale).astype(np.float32)
    return _kernel(g, cn.astype(np.float32)) @ coef[:n] + coef[n] + g @ coef[n + 1 :]
