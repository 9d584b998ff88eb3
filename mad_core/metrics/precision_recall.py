"""k-NN precision and recall (Kynkaanniemi et al. 2019), density and coverage (Naeem et al. 2020).

Every real feature x_i gets a ball of radius R_i, its distance to its k-th nearest
other real feature; precision is the fraction of generated features inside some
real ball. Recall swaps the roles: the fraction of real features inside some ball
of a generated feature (radius from the generated set). Density counts how many
real balls hold each generated feature (divided by k); coverage is the fraction of
real balls that hold at least one generated feature.

Exact and chunked. The result is defined by the direct formula
sum_l (x_l - y_l)^2 in float64 for every pair, so it does not depend on chunk_size.
Computing all N x M pairs that way is slow, so distances are computed tile by tile
(chunk_size x chunk_size) as |x|^2 + |y|^2 - 2 x.y with a float64 matrix product. Its
last bits depend on the tile's shape (BLAS picks kernels by shape), but its rounding
error has a proven bound: only decisions that bound leaves open (a distance within
~1e-13 of a radius, duplicates) are settled with the direct formula. float32 tiles
would be twice as fast, but their ~1e-4 relative error is coarser than the
neighbour distances of a collapsing generator's samples, which MAD produces on
purpose. Memory stays at a few tiles (~0.4 GB at chunk_size 4096) whatever N and M.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

# Safety factor over the rounding bound (d + 10) * unit_roundoff * (|x|^2 + |y|^2) of a
# matrix-product distance; 16x costs nothing but a few more direct recomputations.
_ROUNDING_SLACK = 16
# Pairs per batch of direct float64 distances: 2^16 * d * 8 bytes stays under 50 MB at d = 84.
_DIRECT_BATCH = 1 << 16


@dataclass(frozen=True)
class PrecisionRecall:
    """Fractions in [0, 1]; density lies in [0, N / k] and is None unless asked for."""

    precision: float
    recall: float
    density: float | None = None
    coverage: float | None = None


class _Scratch:
    """Reusable flat buffers for tiles.

    A fresh 4096 x 4096 float64 tile is 134 MB that the allocator maps and the kernel
    zeroes page by page every time; that costs more than the matrix product itself.
    """

    def __init__(self):
        self._buffers: dict[str, torch.Tensor] = {}

    def get(self, name: str, rows: int, cols: int, dtype: torch.dtype) -> torch.Tensor:
        """A contiguous (rows, cols) tensor with arbitrary contents, reused across calls."""
        buffer = self._buffers.get(name)
        if buffer is None or buffer.numel() < rows * cols or buffer.dtype != dtype:
            buffer = self._buffers[name] = torch.empty(rows * cols, dtype=dtype)
        return buffer[:rows * cols].view(rows, cols)


def _chunks(n: int, size: int):
    for start in range(0, n, size):
        yield start, min(start + size, n)


def _direct_sq_distances(a: np.ndarray, b: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Squared distances |a[rows[p]] - b[cols[p]]|^2 by the direct float64 formula, shape (P,).

    numpy sums each contiguous row in the same order whatever P is, so a pair's value
    never depends on which other pairs share its batch.
    """
    out = np.empty(len(rows))
    for start, stop in _chunks(len(rows), _DIRECT_BATCH):
        diff = a[rows[start:stop]] - b[cols[start:stop]]
        out[start:stop] = np.square(diff).sum(axis=1)
    return out


class _FeatureSet:
    """One feature set: float64 points for the direct formula, centered copies for the products."""

    def __init__(self, points: np.ndarray, center: np.ndarray):
        self.points = points  # (n, d) float64
        centered = points - center  # distances do not change; norms, hence the error bound, shrink
        self.sq_norms = np.square(centered).sum(axis=1)  # (n,)
        self.centered = torch.from_numpy(centered)  # (n, d) float64
        self.sq_norms_tensor = torch.from_numpy(self.sq_norms)

    def __len__(self) -> int:
        return len(self.points)


def _tolerance_factor(dim: int) -> float:
    """tau such that |tile distance - direct distance| <= tau * (|x|^2 + |y|^2) (centered)."""
    return _ROUNDING_SLACK * (dim + 10) * np.finfo(np.float64).eps / 2


def _partial_sq_distances(row_points: torch.Tensor, cols: _FeatureSet, col_slice: slice,
                          scratch: _Scratch) -> torch.Tensor:
    """|y_j|^2 - 2 x_i . y_j for a tile, shape (rows, cols): the squared distance minus |x_i|^2.

    ``row_points`` are centered like ``cols``. The result lives in ``scratch``.
    """
    column_points = cols.centered[col_slice]
    out = scratch.get("partial", len(row_points), len(column_points), torch.float64)
    return torch.addmm(cols.sq_norms_tensor[col_slice].unsqueeze(0), row_points, column_points.T,
                       alpha=-2, out=out)


def _kth_neighbour_sq_radii(points: _FeatureSet, k: int, chunk_size: int, scratch: _Scratch) -> np.ndarray:
    """Squared distance of every point to its k-th nearest other point (direct formula), shape (n,).

    A running top-L by tile distance (L = 4k) keeps candidate neighbours, and their
    direct distances give a k-th smallest e_k. It is the exact answer once no other
    point can come below it: every point outside the top-L has a tile distance of at
    least the L-th one, so a direct distance of at least max(0, that - error bound).
    Rows this does not settle (more than L near-ties, e.g. duplicates) rerun with 4L.
    """
    n = len(points)
    tolerance = _tolerance_factor(points.centered.shape[1]) * (points.sq_norms + points.sq_norms.max())
    radii = np.empty(n)
    pending = np.arange(n)
    keep = min(4 * k, n - 1)
    while len(pending):
        unsettled = []
        # Fewer rows when L grows, so the (rows, L) buffers stay below a tile.
        block_rows = max(1, chunk_size * chunk_size // (keep + chunk_size))
        for block_start, block_stop in _chunks(len(pending), block_rows):
            block = pending[block_start:block_stop]
            block_tensor = torch.from_numpy(block)
            row_points = points.centered[block_tensor]
            best = torch.empty((len(block), 0), dtype=torch.float64)
            best_index = torch.empty((len(block), 0), dtype=torch.int64)
            for col_start, col_stop in _chunks(n, chunk_size):
                tile = _partial_sq_distances(row_points, points, slice(col_start, col_stop), scratch)
                is_self = (block_tensor >= col_start) & (block_tensor < col_stop)
                tile[torch.nonzero(is_self, as_tuple=True)[0], block_tensor[is_self] - col_start] = torch.inf
                tile_best, tile_position = torch.topk(tile, min(keep, tile.shape[1]), dim=1, largest=False)
                merged = torch.cat([best, tile_best], dim=1)
                merged_index = torch.cat([best_index, tile_position + col_start], dim=1)
                best, position = torch.topk(merged, min(keep, merged.shape[1]), dim=1, largest=False)
                best_index = torch.gather(merged_index, 1, position)
            candidates = best_index.numpy()
            exact = _direct_sq_distances(points.points, points.points, np.repeat(block, keep),
                                         candidates.ravel()).reshape(len(block), keep)
            kth = np.sort(exact, axis=1)[:, k - 1]
            # best holds |y|^2 - 2 x.y; adding |x|^2 gives the tile's squared distance.
            unseen_floor = np.maximum(0.0, best[:, -1].numpy() + points.sq_norms[block] - tolerance[block])
            settled = (kth <= unseen_floor) | (keep == n - 1)
            radii[block[settled]] = kth[settled]
            unsettled.append(block[~settled])
        pending = np.concatenate(unsettled)
        keep = min(4 * keep, n - 1)
    return radii


def _inside_balls(partial: torch.Tensor, lower: torch.Tensor, upper: torch.Tensor, exact_inside,
                  scratch: _Scratch) -> torch.Tensor:
    """Ball membership of a tile from ``partial <= threshold`` tests, settled exactly.

    ``partial <= lower`` proves membership and ``partial > upper`` proves its absence;
    pairs in between get ``exact_inside(rows, cols)`` (numpy index arrays -> bool array).
    The result lives in ``scratch`` until the next call.
    """
    inside = torch.le(partial, lower, out=scratch.get("inside", *partial.shape, torch.bool))
    undecided = torch.le(partial, upper, out=scratch.get("undecided", *partial.shape, torch.bool))
    undecided ^= inside
    if undecided.any():
        rows, cols = (index.numpy() for index in torch.nonzero(undecided, as_tuple=True))
        inside[rows, cols] = torch.from_numpy(exact_inside(rows, cols))
    return inside


def precision_recall(real: np.ndarray, fake: np.ndarray, *, k: int = 3, chunk_size: int = 4096,
                     density_coverage: bool = False) -> PrecisionRecall:
    """k-NN precision and recall of ``fake`` against ``real``, exact and computed in tiles.

    Args:
        real: (N, d) real features, N > k.
        fake: (M, d) generated features, M > k.
        k: neighbour index of the ball radius; 3 is standard, MAD used 5.
        chunk_size: rows and columns of a distance tile (memory ~ 8 chunk_size^2 bytes
            per tile); the result does not depend on it.
        density_coverage: also compute density and coverage (same k, real balls).
    """
    real = np.asarray(real, dtype=np.float64)
    fake = np.asarray(fake, dtype=np.float64)
    if real.ndim != 2 or fake.ndim != 2 or real.shape[1] != fake.shape[1]:
        raise ValueError(f"expected (N, d) and (M, d) features, got {real.shape} and {fake.shape}")
    if not (k >= 1 and len(real) > k and len(fake) > k):
        raise ValueError(f"need k >= 1 and more than k samples per set, got k={k}, "
                         f"N={len(real)}, M={len(fake)}")
    if not (np.isfinite(real).all() and np.isfinite(fake).all()):
        raise ValueError("features contain NaN or infinite values")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")

    center = real.mean(axis=0)
    real_set, fake_set = _FeatureSet(real, center), _FeatureSet(fake, center)
    scratch = _Scratch()
    real_radii = _kth_neighbour_sq_radii(real_set, k, chunk_size, scratch)
    fake_radii = _kth_neighbour_sq_radii(fake_set, k, chunk_size, scratch)

    tau = _tolerance_factor(real.shape[1])
    # Per real row, a bound on the error for every fake column of both ball tests.
    real_ball_margin = tau * (real_set.sq_norms + fake_set.sq_norms.max() + real_radii)
    fake_ball_margin = tau * (real_set.sq_norms + (fake_set.sq_norms + fake_radii).max())
    real_ball_lower = torch.from_numpy(real_radii - real_set.sq_norms - real_ball_margin)
    real_ball_upper = torch.from_numpy(real_radii - real_set.sq_norms + real_ball_margin)
    fake_ball_lower = torch.from_numpy(-real_set.sq_norms - fake_ball_margin)
    fake_ball_upper = torch.from_numpy(-real_set.sq_norms + fake_ball_margin)
    fake_radii_tile = torch.from_numpy(fake_radii)

    fake_in_real_ball = torch.zeros(len(fake), dtype=torch.bool)  # precision
    real_in_fake_ball = torch.zeros(len(real), dtype=torch.bool)  # recall
    real_ball_hit = torch.zeros(len(real), dtype=torch.bool)  # coverage
    real_balls_per_fake = torch.zeros(len(fake), dtype=torch.int64)  # density
    for row_start, row_stop in _chunks(len(real), chunk_size):
        rows = slice(row_start, row_stop)
        for col_start, col_stop in _chunks(len(fake), chunk_size):
            cols = slice(col_start, col_stop)
            partial = _partial_sq_distances(real_set.centered[rows], fake_set, cols, scratch)

            def exact_in_real_ball(r, c):
                return _direct_sq_distances(real, fake, r + row_start, c + col_start) <= real_radii[r + row_start]

            def exact_in_fake_ball(r, c):
                return _direct_sq_distances(real, fake, r + row_start, c + col_start) <= fake_radii[c + col_start]

            in_real_ball = _inside_balls(partial, real_ball_lower[rows, None], real_ball_upper[rows, None],
                                         exact_in_real_ball, scratch)
            fake_in_real_ball[cols] |= in_real_ball.any(dim=0)
            if density_coverage:
                real_ball_hit[rows] |= in_real_ball.any(dim=1)
                real_balls_per_fake[cols] += torch.count_nonzero(in_real_ball, dim=0)
            partial -= fake_radii_tile[cols]  # now |x|^2 + partial <= radius_j is the fake-ball test
            in_fake_ball = _inside_balls(partial, fake_ball_lower[rows, None], fake_ball_upper[rows, None],
                                         exact_in_fake_ball, scratch)
            real_in_fake_ball[rows] |= in_fake_ball.any(dim=1)

    density = coverage = None
    if density_coverage:
        density = float(real_balls_per_fake.sum()) / (k * len(fake))
        coverage = float(real_ball_hit.double().mean())
    return PrecisionRecall(precision=float(fake_in_real_ball.double().mean()),
                           recall=float(real_in_fake_ball.double().mean()), density=density, coverage=coverage)
