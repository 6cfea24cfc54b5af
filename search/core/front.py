"""Pareto-front arithmetic for two objectives that are both minimised.

Pure functions over plain (x, y) pairs, kept apart from any file format so
that the review, the ladder's promotions and the benchmarks compute the front,
its order and the hypervolume the same way.
"""

from __future__ import annotations

import math
from typing import Sequence

Point = tuple[float, float]


def dominates(a: Point, b: Point) -> bool:
    """True when `a` is no worse than `b` in both objectives and better in one."""
    return a[0] <= b[0] and a[1] <= b[1] and (a[0] < b[0] or a[1] < b[1])


def non_dominated(points: Sequence[Point]) -> list[int]:
    """Indices of the points no other point dominates, in input order.

    Equal points do not dominate each other, so duplicates on the front are
    all kept. Points with a NaN coordinate are never on the front.
    O(n log n): sort by (x, y), then sweep keeping the best y seen so far.
    """
    finite = [i for i, p in enumerate(points) if not (math.isnan(p[0]) or math.isnan(p[1]))]
    order = sorted(finite, key=lambda i: (points[i][0], points[i][1]))
    keep: list[int] = []
    best_y = math.inf
    best_at: Point | None = None
    for i in order:
        x, y = points[i]
        if y < best_y:
            keep.append(i)
            best_y, best_at = y, (x, y)
        elif best_at is not None and (x, y) == best_at:
            keep.append(i)  # exact duplicate of the point that set best_y
    return sorted(keep)


def hypervolume(points: Sequence[Point], ref: Point) -> float:
    """Area dominated by `points` and bounded by the reference point `ref`.

    Only points strictly better than `ref` in both objectives contribute.
    """
    inside = [p for p in points if p[0] < ref[0] and p[1] < ref[1]]
    front = sorted({inside[i] for i in non_dominated(inside)})
    area = 0.0
    for k, (x, y) in enumerate(front):
        next_x = front[k + 1][0] if k + 1 < len(front) else ref[0]
        area += (next_x - x) * (ref[1] - y)
    return area


def hypervolume_history(points: Sequence[Point | None], ref: Point) -> list[float]:
    """Hypervolume after each entry of `points`, in order.

    `None` stands for a trial without a usable point (pruned, failed,
    infeasible): the hypervolume carries over unchanged.
    """
    seen: list[Point] = []
    history: list[float] = []
    current = 0.0
    for p in points:
        if p is not None:
            seen.append(p)
            current = hypervolume(seen, ref)
        history.append(current)
    return history


def crowding(points: Sequence[tuple[float, float]]) -> list[float]:
    """NSGA-II crowding distance of points on one front (ends infinite)."""
    n = len(points)
    distance = [0.0] * n
    if n <= 2:
        return [math.inf] * n
    for axis in range(2):
        order = sorted(range(n), key=lambda i: points[i][axis])
        lo, hi = points[order[0]][axis], points[order[-1]][axis]
        distance[order[0]] = distance[order[-1]] = math.inf
        if hi == lo:
            continue
        for j in range(1, n - 1):
            distance[order[j]] += (points[order[j + 1]][axis] - points[order[j - 1]][axis]) / (hi - lo)
    return distance


def pareto_order(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of `points` best first: by non-domination rank, then larger crowding distance, then index."""
    left = list(range(len(points)))
    ordered: list[int] = []
    while left:
        front = [left[k] for k in non_dominated([points[i] for i in left])]
        if not front:  # only points with a NaN coordinate are left: last, in input order
            return ordered + left
        spread = crowding([points[i] for i in front])
        ordered += [front[k] for k in sorted(range(len(front)), key=lambda k: (-spread[k], front[k]))]
        taken = set(front)
        left = [i for i in left if i not in taken]
    return ordered
