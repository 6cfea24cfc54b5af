"""Which parameters matter for `val_bpb` and for `bytes_total`, from an experiment's study.

Optuna's PED-ANOVA evaluator (`optuna.importance.PedAnovaImportanceEvaluator`,
Watanabe et al. 2023): for each parameter, how far its distribution among the
best 10 % of complete trials (lowest `val_bpb`, or fewest bytes) departs from
its distribution among all of them, normalised to sum to 1. Optuna's default,
fANOVA, needs scikit-learn, which the service does not require (the bench
peers' extras bring it); PED-ANOVA also reads few trials well. A parameter
that never varied is left out. Below `MIN_TRIALS` complete trials nothing is
computed (nor imported) and the reason says so. With a fidelity ladder only the
rung with most trainings is read (rung values differ in scale).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

from search.core import attrs
from search.core.layout import STUDY_FILE, storage_url

MIN_TRIALS = 10
EVALUATOR = "PED-ANOVA (optuna.importance.PedAnovaImportanceEvaluator, top 10 % against all)"
OBJECTIVES = ("val_bpb", "bytes_total")


@dataclass
class Importance:
    """Per objective, (parameter, importance) from the most important; `reason` when not computed."""

    by_objective: dict[str, list[tuple[str, float]]] = field(default_factory=dict)
    trials: int = 0
    reason: str = ""
    evaluator: str = EVALUATOR

    def lines(self) -> list[str]:
        if self.reason:
            return [f"parameter importance: {self.reason}"]
        out = [f"parameter importance ({self.evaluator}; {self.trials} complete trials):"]
        for objective, ranked in self.by_objective.items():
            out.append(f"  {objective}: " + ", ".join(f"{name} {value:.2f}" for name, value in ranked))
        return out


def experiment_importance(folder: Path, study_name: str) -> Importance:
    """The importance of each parameter for each objective over the study's complete trials."""
    import optuna
    from optuna.trial import TrialState

    if not (folder / STUDY_FILE).is_file():
        return Importance(reason=f"no {STUDY_FILE} in {folder}")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=study_name, storage=storage_url(folder))
    complete = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                if t.values and attrs.DUPLICATE_OF not in t.user_attrs]  # a repeat's values are its original's
    rungs = [t.user_attrs[attrs.FIDELITY] for t in complete if t.user_attrs.get(attrs.FIDELITY) is not None]
    evaluator = EVALUATOR
    if rungs:  # a fidelity ladder: values of different rungs are not comparable; the rung with most trainings
        rung = max(sorted(set(rungs)), key=rungs.count)
        complete = [t for t in complete if t.user_attrs.get(attrs.FIDELITY) == rung]
        study = optuna.create_study(directions=study.directions)
        study.add_trials(complete)
        evaluator = f"{EVALUATOR}; rung {rung} of the fidelity ladder, the one with most trainings"
    if len(complete) < MIN_TRIALS:
        return Importance(trials=len(complete),
                          reason=f"needs at least {MIN_TRIALS} complete trials, has {len(complete)}")
    # only now: optuna.importance imports scikit-learn where it is installed (~1 CPU-s), for fANOVA
    from optuna.importance import PedAnovaImportanceEvaluator, get_param_importances

    result = Importance(trials=len(complete), evaluator=evaluator)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PED-ANOVA is marked experimental
        for i, objective in enumerate(OBJECTIVES):
            scores = get_param_importances(study, evaluator=PedAnovaImportanceEvaluator(),
                                           target=lambda t, i=i: t.values[i])
            result.by_objective[objective] = sorted(scores.items(), key=lambda kv: -kv[1])
    return result
