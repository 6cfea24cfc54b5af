"""The fidelity ladder (search.space.ladder, search.engine.ladder, search.review.agreement): promotion by Pareto rank, the sampler's rung, rank agreement,
and a real --smoke search on a two-rung ladder that is SIGKILLed and resumed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState, create_trial

from search.core.front import pareto_order
from search.engine.ladder import RungSampler, model_rung, next_promotion
from search.review.agreement import rank_agreement
from search.space.ladder import Ladder
from search.core.layout import storage_url
from search.store.trials_csv import read_trials_csv
from search.space.load import load_space
from search.space.spec import SpaceError
from search.engine.constraints import constraint_attrs
from search.engine.study import count_trainings
from helpers import kill_search_when

ROOT = Path(__file__).resolve().parents[2]
LADDER = Ladder(rungs=({"ITERATIONS": "10"}, {"ITERATIONS": "30"}, {"ITERATIONS": "90"}), gpus=(None,) * 3,
                fraction=1 / 3)
DIST = {"X": CategoricalDistribution(list(range(100)))}


def _trial(number: int, x: int, rung: int, bpb: float, total: float, violation: float = -1.0,
           promoted_from: int | None = None, state: TrialState = TrialState.COMPLETE) -> optuna.trial.FrozenTrial:
    attrs = {"fidelity": rung, "launched": True}
    if promoted_from is not None:
        attrs["promoted_from"] = promoted_from
    trial = create_trial(params={"X": x}, distributions=DIST, user_attrs=attrs, state=state,
                         values=[bpb, total] if state == TrialState.COMPLETE else None,
                         system_attrs=constraint_attrs({"bytes_over_budget": violation}))
    trial.number = number
    return trial


def test_pareto_order_ranks_fronts_then_crowding() -> None:
    points = [(3.0, 5.0), (1.0, 9.0), (2.0, 6.0), (2.5, 5.5), (4.0, 8.0), (9.0, 1.0)]
    order = pareto_order(points)
    # front 1: (1,9) (2,6) (2.5,5.5) (3,5) (9,1); the ends first, (4,8) is dominated, last
    assert set(order[:5]) == {0, 1, 2, 3, 5} and order[5] == 4
    assert set(order[:2]) == {1, 5}  # infinite crowding distance at both ends
    # crowding (x span + y span between neighbours, each over the front's range of 8):
    # (3,5): 6.5/8 + 4.5/8; (2,6): 1.5/8 + 3.5/8; (2.5,5.5): 1/8 + 1/8
    assert order[2:5] == [0, 2, 3]


def test_promotion_takes_the_best_feasible_third_top_rung_first() -> None:
    # six trainings at rung 0: X=5 is best but infeasible and never promoted
    rung0 = [_trial(0, 1, 0, 3.0, 100), _trial(1, 2, 0, 3.5, 90), _trial(2, 3, 0, 3.9, 120),
             _trial(3, 4, 0, 4.0, 130), _trial(4, 5, 0, 2.0, 80, violation=5.0), _trial(5, 6, 0, 2.9, 110)]
    first = next_promotion(rung0, LADDER)
    assert first is not None and first[1] == 1
    # floor(6/3) = 2 promotions, both from the front {X=1, X=2, X=6} (X=5 infeasible), ends first
    assert first[0].params["X"] in (2, 6)
    promoted = _trial(6, first[0].params["X"], 1, 3.0, 100, promoted_from=first[0].number,
                      state=TrialState.WAITING)
    second = next_promotion(rung0 + [promoted], LADDER)
    assert second is not None and second[0].params["X"] in (2, 6) and second[0].params["X"] != first[0].params["X"]
    other = _trial(7, second[0].params["X"], 1, 3.0, 100, promoted_from=second[0].number, state=TrialState.RUNNING)
    assert next_promotion(rung0 + [promoted, other], LADDER) is None  # the third is owed after 9 trainings
    # three finished at rung 1: the best one is promoted to rung 2 before anything else
    rung1 = [_trial(6, 2, 1, 2.8, 90, promoted_from=1), _trial(7, 6, 1, 2.7, 110, promoted_from=5),
             _trial(8, 1, 1, 2.9, 100, promoted_from=0)]
    extra = [_trial(9 + i, 10 + i, 0, 4.5, 100) for i in range(3)]
    top = next_promotion(rung0 + extra + rung1, LADDER)
    assert top is not None and top[1] == 2 and top[0].params["X"] in (2, 6)
    # an interrupted training does not count as finished at its rung
    interrupted = [_trial(20 + i, 30 + i, 0, 1.0, 10, state=TrialState.FAIL) for i in range(3)]
    for t in interrupted:
        t.user_attrs["reason"] = "interrupted"
    assert next_promotion(interrupted, LADDER) is None


def test_top_rung_fraction_sends_every_kth_new_proposal_to_the_top() -> None:
    quarter = Ladder(rungs=LADDER.rungs, gpus=LADDER.gpus, direct=0.25)
    assert [i for i in range(12) if quarter.starts_at_top(i)] == [3, 7, 11]
    assert not any(LADDER.starts_at_top(i) for i in range(100))  # the default: every proposal starts cheap


def test_sampler_learns_from_the_highest_rung_with_enough_trainings() -> None:
    trials = [_trial(i, i, 0, 3.0 + i / 100, 100) for i in range(30)]
    assert model_rung(trials, LADDER, n_params=1) == 0
    trials += [_trial(30 + i, i, 1, 2.5 + i / 100, 100, promoted_from=i) for i in range(10)]
    assert model_rung(trials, LADDER, n_params=1) == 1
    assert model_rung(trials, LADDER, n_params=12) == 0  # BOHB's rule: at least parameters + 1

    study = optuna.create_study(directions=["minimize", "minimize"],
                                sampler=RungSampler(optuna.samplers.RandomSampler(seed=0), LADDER))
    for t in trials:
        study.add_trial(t)
    seen = []

    class Spy(optuna.samplers.RandomSampler):
        def sample_independent(self, study, trial, name, dist):
            seen.append({t.user_attrs.get("fidelity") for t in study.get_trials(states=(TrialState.COMPLETE,))})
            return super().sample_independent(study, trial, name, dist)

    study.sampler = RungSampler(Spy(seed=0), LADDER)
    study.ask().suggest_categorical("X", list(range(100)))
    assert seen == [{1}]  # rung 1 has 10 complete trainings: the model sees only them


def test_rank_agreement_is_spearman_over_the_configurations_at_both_rungs() -> None:
    from scipy.stats import spearmanr

    low = [3.0, 3.1, 3.4, 3.2, 3.9]
    high = [2.5, 2.7, 2.6, 2.8, 3.0]
    measured = [(0, (("X", i),), v) for i, v in enumerate(low)] + [(1, (("X", i),), v) for i, v in enumerate(high)]
    measured.append((0, (("X", 99),), 3.3))  # only at rung 0: not in the comparison
    (agreement,) = rank_agreement(measured, top=1)
    assert agreement.n == 5
    assert agreement.rho == pytest.approx(spearmanr(low, high).statistic)
    assert "Spearman" in agreement.line()
    (few,) = rank_agreement(measured[:2] + measured[5:7], top=1)
    assert few.rho is None and "too few" in few.line()


@pytest.mark.parametrize("setting, message", [
    ("FIDELITIES = {'ITERATIONS': 600}", "FIDELITIES must be a list of at least two environments"),
    ("FIDELITIES = [{'ITERATIONS': 600}]", "FIDELITIES must be a list of at least two environments"),
    ("FIDELITIES = [{'ITERATIONS': 6}, {'ITERATIONS': 6}]", "two equal rungs in a row"),
    ("FIDELITIES = [{'ITERATIONS': 6, 'GPUS_PER_TRIAL': -1}, {'ITERATIONS': 60}]", "is not a GPU count"),
    ("FIDELITIES = [{'ITERATIONS': 6}, {'ITERATIONS': 60}]\nPROMOTE_FRACTION = 1.5", "PROMOTE_FRACTION=1.5"),
    ("FIDELITIES = [{'ITERATIONS': 6}, {'ITERATIONS': 60}]\nEARLY_STOPPING = {'grace_period': 2}",
     "sets both FIDELITIES and EARLY_STOPPING"),
    ("FIDELITY = [{'ITERATIONS': 6}, {'ITERATIONS': 60}]", "did you mean FIDELITIES?"),
    ("FIDELITIES = [{'ITERATIONS': 6}, {'ITERATIONS': 60}]\nTOP_RUNG_FRACTION = 1", "TOP_RUNG_FRACTION=1 is not"),
])
def test_bad_ladders_are_one_line(tmp_path: Path, setting: str, message: str) -> None:
    space = tmp_path / "space.py"
    space.write_text(f"{setting}\ndef space(trial):\n    return {{'X': trial.suggest_int('X', 1, 3)}}\n")
    with pytest.raises(SpaceError) as info:
        load_space(space)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_ladder_environment_and_smoke_profile() -> None:
    spec = load_space(ROOT / "spaces" / "fidelity_ladder.py")
    assert [r["ITERATIONS"] for r in spec.ladder.rungs] == ["600", "1800", "4950"]
    env = spec.trial_env({"NUM_LAYERS": 9}, 1)
    assert env["ITERATIONS"] == "1800" and env["WARMDOWN_ITERS"] == "450" and env["NUM_LAYERS"] == "9"
    smoke = load_space(ROOT / "spaces" / "fidelity_ladder.py", smoke=True)
    assert [r["ITERATIONS"] for r in smoke.ladder.rungs] == ["10", "30"]
    assert smoke.trial_env({}, 0)["ITERATIONS"] == "10"  # the rung overrides the smoke environment


def _rows(folder: Path) -> list[dict[str, str]]:
    try:
        return read_trials_csv(folder)
    except (OSError, KeyError):
        return []


@pytest.mark.slow
def test_smoke_ladder_promotes_survives_sigkill_and_fronts_only_the_top_rung(tmp_path: Path,
                                                                            experiment_intact) -> None:
    results = tmp_path / "results"
    folder = results / "lad"
    cmd = [sys.executable, "-m", "search.run", "spaces/fidelity_ladder.py", "--smoke", "--results-dir",
           str(results), "--name", "lad", "--num-samples", "12", "--num-cpus", "2", "--seed", "5"]
    kill_search_when(cmd, ROOT, lambda: any(r["state"] == "COMPLETE" and r["fidelity"] == "1" for r in _rows(folder)))
    study = optuna.load_study(study_name="lad", storage=storage_url(folder))
    before = {t.number: (t.values, t.user_attrs["fidelity"]) for t in study.get_trials(states=(TrialState.COMPLETE,))}
    assert {rung for _, rung in before.values()} == {0, 1}  # both rungs had finished trainings

    proc = subprocess.run(cmd + ["--resume"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "fidelity ladder: 2 rungs (10 -> 30 steps)" in proc.stdout
    trials = experiment_intact(folder)
    for number, (values, rung) in before.items():  # no rung lost a result
        assert trials[number].state == TrialState.COMPLETE and trials[number].values == values
        assert trials[number].user_attrs["fidelity"] == rung
    study = optuna.load_study(study_name="lad", storage=storage_url(folder))
    assert count_trainings(study) == 12
    promoted = [t for t in trials if t.user_attrs.get("fidelity") == 1 and t.state == TrialState.COMPLETE]
    assert len(promoted) >= 2
    for t in promoted:  # each from a feasible rung-0 training of the same configuration
        source = trials[t.user_attrs["promoted_from"]]
        assert source.user_attrs["fidelity"] == 0 and source.state == TrialState.COMPLETE
        assert all(v <= 0 for v in source.constraints.values()) and source.params == t.params
        assert json.loads((Path(t.user_attrs["trial_dir"]) / "env.json").read_text())["ITERATIONS"] == "30"
    assert len({tuple(sorted(t.params.items())) for t in promoted}) == len(promoted)  # none promoted twice
    assert (folder / "size_learner.rung1.json").is_file()

    report = subprocess.run([sys.executable, "-m", "search.pareto", str(folder), "--format", "json", "--no-plots"],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert report.returncode == 0, report.stderr
    data = json.loads(report.stdout)
    rows = {int(r["number"]): r for r in read_trials_csv(folder)}
    assert data["front"] and all(rows[int(t["number"])]["fidelity"] == "1" for t in data["front"])
    (agreement,) = data["rank_agreement"]["lad"]
    assert agreement["low"] == 0 and agreement["high"] == 1 and agreement["configurations"] >= 2
    text = subprocess.run([sys.executable, "-m", "search.pareto", str(folder), "--no-plots"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120).stdout
    assert "rank agreement: rung 0 vs rung 1" in text and "on lower rungs" in text and "(per rung: 0: " in text


def test_a_ladder_refuses_warm_start_in_one_line(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "search.run", "spaces/fidelity_ladder.py", "--smoke",
                           "--results-dir", str(tmp_path), "--warm-start", str(tmp_path / "old")],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "fidelity ladder (SMOKE_FIDELITIES)" in proc.stderr
    assert not any(tmp_path.iterdir())  # nothing written


def test_promote_refuses_a_lower_rung_trial(tmp_path: Path) -> None:
    """A rung-0 training ran with the cheap environment: promoting it would rerun that, not the full one."""
    from search.store.settings import ExperimentSettings, write_experiment

    folder = tmp_path / "lad"
    write_experiment(folder, ExperimentSettings(
        name="lad", space="spaces/fidelity_ladder.py", script="pgolf/train_gpt.py", budget_bytes=200_000,
        gpus_per_trial=0, smoke=True, fixed_env={}, defaults={},
        fidelities=[{"ITERATIONS": "10"}, {"ITERATIONS": "30"}]))
    (folder / "trials.csv").write_text("number,state,fidelity,promoted_from,param_X\n0,COMPLETE,0,,1\n"
                                       "1,COMPLETE,1,0,1\n")
    for n in (0, 1):
        (folder / "trials" / str(n)).mkdir(parents=True)
        (folder / "trials" / str(n) / "env.json").write_text("{}")
    proc = subprocess.run([sys.executable, "-m", "search.promote", str(folder), "--trial", "0", "--smoke"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "trained at rung 0 of the fidelity ladder" in proc.stderr and "trial 1 is its top-rung training" in proc.stderr


def test_a_cheap_rung_on_fewer_gpus_asks_ray_for_them(tmp_path: Path) -> None:
    """A rung's GPUS_PER_TRIAL: the trial's config carries its process count, and Ray is asked for that many."""
    from search.engine.tuning import trial_request as _resources
    from search.engine.searcher import BudgetedOptunaSearcher
    from search.runner.launch import TrialLaunch
    from search.engine.study import open_study

    space = tmp_path / "gpus.py"
    space.write_text("GPUS_PER_TRIAL = 8\nFIDELITIES = [{'ITERATIONS': 600, 'GPUS_PER_TRIAL': 2}, "
                     "{'ITERATIONS': 4950}]\nPREDICT_BYTES = lambda env: 1000\n"
                     "def space(trial):\n    return {'X': trial.suggest_int('X', 1, 3)}\n")
    spec = load_space(space)
    assert spec.ladder.gpus == (2, None)
    study = open_study("g", None, 0, create=True, ladder=spec.ladder)  # type: ignore[arg-type]
    searcher = BudgetedOptunaSearcher(spec, study, TrialLaunch(folder=tmp_path, script=spec.script, nproc=8,
                                                               prepare_data=False), spec.predict_bytes)
    config = searcher.suggest("t0")
    assert config["env"]["ITERATIONS"] == "600" and config["nproc"] == 2
    resources = _resources(spec)
    assert resources(config).bundles == [{"CPU": 1, "GPU": 2}]
    assert resources({**config, "gpus": 8}).bundles == [{"CPU": 1, "GPU": 8}]


@pytest.mark.slow
def test_replay_of_a_ladder_search_reads_each_rungs_table(tmp_path: Path, ray_address: str) -> None:
    """`--replay` with one table per rung: bench/grid_table.csv for rung 0, bench/grid_table_long.csv for rung 1."""
    from search.runner.replay import load_table

    tables = [ROOT / "bench" / "grid_table.csv", ROOT / "bench" / "grid_table_long.csv"]
    base = [sys.executable, "-m", "search.run", "spaces/bench_grid_ladder.py", "--smoke", "--results-dir",
            str(tmp_path)]
    one = subprocess.run(base + ["--replay", str(tables[0])], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert one.returncode == 2 and "one table per rung" in one.stderr and one.stderr.strip().count("\n") == 0
    proc = subprocess.run(base + ["--replay", *map(str, tables), "--num-samples", "12", "--seed", "2", "--address",
                                  ray_address], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [r for r in read_trials_csv(tmp_path / "bench_grid_ladder-smoke") if r["state"] == "COMPLETE"]
    assert {r["fidelity"] for r in rows} == {"0", "1"}
    for row in rows:  # each rung's value is its own table's
        table = load_table(tables[int(row["fidelity"])])
        env = json.loads((Path(row["trial_dir"]) / "env.json").read_text())
        assert env["ITERATIONS"] == ("20", "100")[int(row["fidelity"])]
        assert float(row["val_bpb"]) == pytest.approx(float(table.lookup(env)["val_bpb"]))
