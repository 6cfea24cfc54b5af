"""The sampler forgives: proposals pruned before launch are judged again as the size learner corrects
itself, and a configuration pruned early can then be proposed and trained.

A real search (`search.run` through Ray and Optuna's sqlite storage, not --smoke) of an external
script: PARAM_COUNT and EXPORT_FORMAT give it the records' prior from its first proposal (int8+zlib:
about 0.93 byte a parameter), while its trainings (replayed from a table) store 0.45 byte a
parameter. The prior prunes the two larger configurations; two trainings later the learner's fit
says they fit, the study's re-judgements say so, trials.csv shows both predictions, and TPE (which
no longer sees the wrong verdicts) proposes them again: they are trained, feasible.
"""

from __future__ import annotations

import pytest
import csv
import subprocess
import sys
from pathlib import Path

import optuna

from search.core.attrs import REJUDGED as REJUDGED_ATTR
from search.core.layout import storage_url
from search.store.trials_csv import read_trials_csv
from search.engine.samplers import ForgivingSampler, StudyView, rejudged

ROOT = Path(__file__).resolve().parents[2]
BUDGET = 1_000_000
SIZES = (500, 1000, 1500, 2000)  # thousands of parameters


def _setup(tmp: Path) -> tuple[Path, Path]:
    script = tmp / "their_train.py"
    script.write_text("print('a record script of their own')\n")
    code = script.stat().st_size
    table = tmp / "table.csv"
    with table.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["param_N", "val_bpb", "val_loss", "bytes_total"])
        for n in SIZES:  # larger is better, and everything fits: 0.45 B a parameter
            w.writerow([n, 3.0 - n / 1000, 5.0 - n / 1000, code + int(0.45 * n * 1000)])
    space = tmp / "external.py"
    space.write_text(f'''SCRIPT = {str(script)!r}
GPUS_PER_TRIAL = 0
CPUS_PER_TRIAL = 1
BUDGET_BYTES = {BUDGET}
SAMPLER = "tpe"  # the GP never proposes what the predictor prunes; TPE is told the verdicts, and forgiven
PARAM_COUNT = lambda env: int(env["N"]) * 1000
EXPORT_FORMAT = "int8+zlib"


def space(trial):
    return {{"N": trial.suggest_categorical("N", {list(SIZES)!r})}}
''')
    return space, table


@pytest.mark.slow
def test_a_region_pruned_by_the_prior_is_reopened_and_trained(tmp_path: Path, experiment_intact,
                                                              ray_address: str) -> None:
    space, table = _setup(tmp_path)
    results = tmp_path / "results"
    proc = subprocess.run([sys.executable, "-m", "search.run", str(space), "--replay", str(table), "--results-dir",
                           str(results), "--name", "ext", "--num-samples", "8", "--seed", "0", "--max-concurrent", "1",
                           "--address", ray_address], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "the records' prior for int8+zlib" in proc.stdout
    # 8 trainings asked of 4 configurations: the search ends when each is trained, with one line, exit 0
    assert "the space is exhausted: each of its 4 configurations was trained" in proc.stdout
    experiment_intact(results / "ext")  # asserts the study and trials.csv agree
    rows = read_trials_csv(results / "ext")
    pruned = [r for r in rows if r["reason"] == "over_budget_predicted"]
    assert pruned, "the prior pruned nothing: the test's premise failed"
    # pruned with the prior's prediction, judged now by the fitted learner: within budget
    for r in pruned:
        assert int(r["predicted_bytes"]) + int(r["margin_bytes"]) > BUDGET
        assert r["forgiven"] == "true" and int(r["rejudged_bytes"]) + int(r["rejudged_margin_bytes"]) <= BUDGET
    # the prior's verdicts were wrong by the prediction itself (later ones, by a margin still wide then)
    assert any(int(r["rejudged_bytes"]) < int(r["predicted_bytes"]) for r in pruned)
    first_pruned = min(int(r["number"]) for r in pruned)
    reopened = {r["param_N"] for r in pruned}
    trained_later = [r for r in rows if r["state"] == "COMPLETE" and int(r["number"]) > first_pruned
                     and r["param_N"] in reopened]
    assert trained_later, f"no pruned configuration ({sorted(reopened)}) was trained after the learner corrected"
    assert all(r["feasible"] == "true" and int(r["bytes_total"]) <= BUDGET for r in trained_later)
    assert all(r["feasible"] == "true" for r in rows if r["state"] == "COMPLETE")

    # the judgements live in the study (Optuna's storage), and the sampler's view applies them
    study = optuna.load_study(study_name="ext", storage=storage_url(results / "ext"))
    judged = rejudged(study)
    assert set(judged) == {int(r["number"]) for r in pruned} and REJUDGED_ATTR in study.user_attrs
    view = ForgivingSampler(optuna.samplers.RandomSampler())._view(study)
    assert isinstance(view, StudyView)
    seen = {t.number for t in view.get_trials(deepcopy=False)}
    assert not seen & set(judged)  # forgiven: not shown to TPE as infeasible any more
    assert len(seen) == len(study.get_trials()) - len(judged)


def test_a_pruned_proposal_still_over_budget_is_shown_with_its_current_violation(tmp_path: Path) -> None:
    study = optuna.create_study(directions=["minimize", "minimize"], storage=f"sqlite:///{tmp_path / 's.db'}")
    from search.engine.constraints import set_violation
    from search.engine.study import set_attrs

    trial = study.ask({"N": optuna.distributions.CategoricalDistribution(list(SIZES))})
    set_attrs(trial, {"reason": "over_budget_predicted", "env": {"N": "2000"}})
    set_violation(trial, 900_000)
    study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    from search.engine.samplers import rejudge_pruned

    assert rejudge_pruned(study, lambda t: (True, 1_200_000, 12_000), BUDGET) == (1, 0)
    shown = ForgivingSampler(optuna.samplers.RandomSampler())._view(study).get_trials()
    assert [t.constraints["bytes_over_budget"] for t in shown] == [212_000.0]
    assert study.get_trials()[0].constraints["bytes_over_budget"] == 900_000.0  # the told value stays in storage
    assert rejudge_pruned(study, lambda t: (False, 800_000, 8_000), BUDGET) == (1, 1)
    assert ForgivingSampler(optuna.samplers.RandomSampler())._view(study).get_trials() == []
