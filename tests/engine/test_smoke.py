"""The done-when command, shrunk: a real --smoke search with the real trainer, corpus and tokenizer (the
session's `smoke_search`, which other tests read too)."""

from __future__ import annotations

import pytest
import json
import math
from pathlib import Path

import optuna

from search.core.layout import storage_url
from search.core.limits import BUDGET_CONSTRAINT
from search.store.trials_csv import read_trials_csv


@pytest.mark.slow
def test_smoke_search_end_to_end(smoke_search) -> None:
    assert "best feasible val_bpb" in smoke_search.stdout and "Pareto front" in smoke_search.stdout
    folder = smoke_search.folder
    experiment = json.loads((folder / "experiment.json").read_text())
    assert experiment["smoke"] is True and experiment["objectives"] == ["val_bpb", "bytes_total"]
    budget = experiment["budget_bytes"]

    rows = read_trials_csv(folder)
    complete = [r for r in rows if r["state"] == "COMPLETE"]
    assert complete
    for row in complete:
        for key in ("val_bpb", "val_loss", "bytes_total", "bytes_code", "bytes_model", "predicted_bytes",
                    "constraint", "steps", "train_seconds"):
            assert math.isfinite(float(row[key])), key
        assert int(row["bytes_code"]) + int(row["bytes_model"]) == int(row["bytes_total"])
        # the simple exact-count predictor lands near the measured artifact
        assert abs(int(row["predicted_bytes"]) - int(row["bytes_total"])) < 0.25 * int(row["bytes_total"])
        assert Path(row["log_path"]).read_text().count("val_bpb:") >= 2  # intermediate + final lines

    study = optuna.load_study(study_name="smoke", storage=storage_url(folder))
    assert {t.number for t in study.trials} == {int(r["number"]) for r in rows}
    for t in study.trials:
        row = next(r for r in rows if int(r["number"]) == t.number)
        assert t.state.name == row["state"]
        if t.state.name == "COMPLETE":
            assert t.constraints[BUDGET_CONSTRAINT] == t.values[1] - budget == float(row["constraint"])
