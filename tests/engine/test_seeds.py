"""spaces/seeds.py (issue 14): the five seed records run as points of our trainer. The README's claim:
`python -m search.run spaces/seeds.py --smoke --num-samples 5` runs all five seed points to COMPLETE."""

from __future__ import annotations

import pytest
import csv
import importlib.util
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def load_seeds():
    spec = importlib.util.spec_from_file_location("seeds_space", ROOT / "spaces" / "seeds.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_every_seed_point_is_a_point_of_its_space_with_its_recipe() -> None:
    from search.space.load import load_space
    from search.space.points import check_points

    mod = load_seeds()
    assert [p["RECIPE"] for p in mod.POINTS_TO_EVALUATE] == ["#465", "#215", "#212", "#333", "#1319"]
    for smoke in (False, True):
        check_points(load_space(ROOT / "spaces" / "seeds.py", smoke=smoke))
    env = mod.recipe_env("#212", 9)
    assert (env["LOOP_START"], env["LOOP_END"], env["NUM_LOOPS"]) == (3, 5, 2)
    assert mod.recipe_env("#1319", 11)["XSA_LAST_N"] == 11 and "SLOT" not in str(mod.RECIPES)


@pytest.mark.slow
def test_the_smoke_search_runs_all_five_seeds_to_complete(tmp_path: Path, ray_address: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "search.run", "spaces/seeds.py", "--smoke", "--num-samples", "5",
                           "--results-dir", str(tmp_path), "--address", ray_address], cwd=ROOT, capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = list(csv.DictReader((tmp_path / "seeds-smoke" / "trials.csv").open()))
    assert sorted(r["param_RECIPE"] for r in rows) == sorted(["#465", "#215", "#212", "#333", "#1319"])
    assert all(r["state"] == "COMPLETE" for r in rows), [(r["param_RECIPE"], r["state"], r["message"]) for r in rows]
    logs = {r["param_RECIPE"]: (tmp_path / "seeds-smoke" / "trials" / r["number"] / "train.log").read_text()
            for r in rows}
    assert "gptq: Hessians of" in logs["#1319"] and "qat:enabled" in logs["#1319"] and "ema: exporting" in logs["#1319"]
    assert "swa: averaged" in logs["#465"] and '"ortho_init": true' in logs["#465"]
    assert '"num_loops": 2' in logs["#212"] and '"prune_frac": 0.03' in logs["#333"]
