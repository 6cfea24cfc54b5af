"""Pareto-front arithmetic for two objectives that are both minimised.

Pure functions over plain (x, y) pairs, kept apart from any file format so
that `search.pareto` and later benchmarks compute the front and the
hypervolume the same way.
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
