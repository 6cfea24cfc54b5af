"""bench/overhead.py: slot reconstruction, and one tiny real measurement (Ray + searcher + sleeping replay)."""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))

import overhead  # noqa: E402
from helpers import small_grid, write_subspace, write_subtable  # noqa: E402


def test_slot_gaps_follow_each_slot() -> None:
    # Two slots, trials of length 1: slot A 0-1, 1.5-2.5; slot B 0.2-1.2, 2.0-3.0.
    intervals = [(0.0, 1.0), (0.2, 1.2), (1.5, 2.5), (2.0, 3.0)]
    gaps = overhead.slot_gaps(intervals, 2)
    assert sorted(gaps) == pytest.approx(sorted([1.5 - 1.0, 2.0 - 1.2]))
    assert overhead.slot_gaps([(0.0, 1.0)], 2) == []


@pytest.mark.slow
def test_measure_sleeping_trials_on_two_slots(tmp_path: Path) -> None:
    grid = small_grid()
    rows = write_subtable(tmp_path / "table.csv", grid)
    budget = max(int(r["bytes_total"]) for r in rows)  # everything feasible: every proposal runs
    space = write_subspace(tmp_path / "space.py", grid, budget, predict_from_table=tmp_path / "table.csv")
    result = overhead.measure(2, 4, 0.5, tmp_path / "table.csv", space, tmp_path / "work")
    assert result.trials == 4
    assert len(result.gaps) == 2  # two slots, two trials each
    assert all(g >= 0 for g in result.gaps)
    assert result.fraction == pytest.approx(statistics.mean(result.gaps) / 0.5)
    assert result.driver_cpu_seconds > 0
    assert "| 2 | 4 |" in overhead.report([result])
