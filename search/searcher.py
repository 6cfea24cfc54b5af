"""A Ray Tune `Searcher` over an Optuna study, with the byte budget as a constraint.

Ray's own `OptunaSearch` only ever calls `tell(values)`: constraints never
reach Optuna, a NaN result leaves the Optuna trial RUNNING forever, and a trial
stopped by a scheduler is told COMPLETE with a partial result. This searcher
drives the study with `ask`/`tell` itself:

- every proposal's artifact bytes are predicted before launch; one whose
  prediction plus the predictor's safety margin exceeds the budget is told
  PRUNED with its violation (`set_constraint`) and never reaches Ray, and the
  next proposal is asked for at once;
- a completed training's measured bytes are given back to the predictor
  (`observe`), which refits its corrections and margin (`pgolf.size.SizeLearner`,
  saved to `size_learner.json` in the experiment folder);
- a finished training is told `[val_bpb, bytes_total]` with the measured
  violation `bytes_total - budget` (<= 0 feasible), so the sampler learns
  where the infeasible region lies;
- an error or a non-finite objective is FAIL (with the log tail), a trial
  stopped early (no `training_done` in its last result) is PRUNED.

The study is the whole state: `settle_running_trials` makes a study left
behind by a killed driver consistent again, which is how `--resume` works.
"""

from __future__ import annotations

import json
import math
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol

import optuna
from optuna.trial import TrialState
from ray.tune.search import Searcher

from search.results import BUDGET_CONSTRAINT, write_trials_csv
from search.runner import load_finished_metrics, root_cause
from search.space import SpaceSpec

MAX_OVER_BUDGET_IN_A_ROW = 200
LOG_TAIL_CHARS = 4000
STOPPED_SEARCH_ATTR = "stopped_search_trials"  # study attribute: failures that stopped the search
_METRIC_ATTRS = ("val_loss", "bytes_code", "bytes_model", "steps", "train_seconds", "eval_seconds",
                 "gpu_seconds", "log_path", "score_label")


def as_limits(limits: int | Mapping[str, float]) -> dict[str, float]:
    """A space's limits as {metric: limit}; a bare number is the byte budget."""
    return {"bytes_total": limits} if isinstance(limits, (int, float)) else dict(limits)


def limit_constraint(metric: str) -> str:
    """The Optuna constraint of one limit: `bytes_over_budget`, `eval_seconds_over_limit`, ..."""
    return BUDGET_CONSTRAINT if metric == "bytes_total" else f"{metric}_over_limit"


def limit_reason(metric: str) -> str:
    return "over_budget" if metric == "bytes_total" else f"over_{metric}"


class SearchAborted(RuntimeError):
    """The search cannot go on (one-line message for the user)."""


@dataclass(frozen=True)
class TrialLaunch:
    """How the searcher turns a feasible proposal into a runner config."""

    folder: Path          # experiment folder: trials go to folder/trials/<number>
    script: Path
    nproc: int            # processes per trial (0 = plain python)
    prepare_data: bool    # --smoke: fill DATA_PATH/TOKENIZER_PATH from the bundled corpus
    timeout_s: float | None = None  # the space's TRIAL_TIMEOUT_SECONDS
    score_line: str | None = None   # the space's SCORE_LINE


class BytePredictor(Protocol):
    """What the searcher needs from a predictor (`pgolf.size.SizeLearner`, or `FixedPredictor`)."""

    margin_fraction: float

    def prune(self, env: Mapping[str, str], budget: int) -> tuple[bool, int | None, int]: ...

    def observe(self, env: Mapping[str, str], measured_bytes_total: int) -> float | None: ...


class FixedPredictor:
    """A plain `env -> bytes` function (a space's PREDICT_BYTES) used as is: no margin, nothing learned."""

    margin_fraction = 0.0

    def __init__(self, predict_bytes: Callable[[Mapping[str, str]], int]):
        self.predict_bytes = predict_bytes

    def prune(self, env: Mapping[str, str], budget: int) -> tuple[bool, int | None, int]:
        predicted = int(self.predict_bytes(env))
        return predicted > budget, predicted, 0

    def observe(self, env: Mapping[str, str], measured_bytes_total: int) -> float | None:
        return None

    def save(self, path: Path) -> None:
        """Nothing learned, nothing to save."""


def as_predictor(predictor: "BytePredictor | Callable[[Mapping[str, str]], int]") -> BytePredictor:
    """A learner passes through; a plain function becomes a FixedPredictor."""
    return predictor if hasattr(predictor, "prune") else FixedPredictor(predictor)  # type: ignore[return-value]


def make_sampler(seed: int | None) -> optuna.samplers.BaseSampler:
    """Multivariate TPE: handles several objectives and reads trials' constraints."""
    return optuna.samplers.TPESampler(seed=seed, multivariate=True, constant_liar=True)


def open_study(name: str, storage: str, seed: int | None, create: bool) -> optuna.Study:
    """Create the experiment's study, or load it for --resume."""
    if create:
        sampler = make_sampler(seed)
        study = optuna.create_study(study_name=name, storage=storage, sampler=sampler,
                                    directions=["minimize", "minimize"])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(["val_bpb", "bytes_total"])
        return study
    study = optuna.load_study(study_name=name, storage=storage)
    # A resumed study must not replay the proposals of the first run: offset the seed by
    # the trials already there (still reproducible for the same history).
    offset = len(study.get_trials(deepcopy=False))
    study.sampler = make_sampler(None if seed is None else seed + offset)
    return study


def enqueue_seed_points(study: optuna.Study, spec: SpaceSpec) -> None:
    """Queue the space's POINTS_TO_EVALUATE (e.g. the baseline) to be proposed first."""
    for point in spec.points_to_evaluate:
        study.enqueue_trial(point, user_attrs={"seed_point": True})


def _set_attrs(trial: optuna.Trial, attrs: Mapping[str, Any]) -> None:
    for key, value in attrs.items():
        if isinstance(value, float) and not math.isfinite(value):
            value = None
        trial.set_user_attr(key, value)


def _set_violation(trial: optuna.Trial, violation: float) -> None:
    if BUDGET_CONSTRAINT not in trial.constraints:
        trial.set_constraint(BUDGET_CONSTRAINT, float(violation))


def _failure(trial_dir: Path) -> tuple[str, str, str]:
    """(reason, message, log tail) of a failed training, from the runner's failure.json."""
    try:
        failure = json.loads((trial_dir / "failure.json").read_text())
        return (str(failure.get("reason") or "crashed"), str(failure.get("message") or ""),
                str(failure.get("log_tail", ""))[-LOG_TAIL_CHARS:])
    except (OSError, ValueError):
        pass
    try:
        text = (trial_dir / "stdout.log").read_text(errors="replace")
    except OSError:
        return "crashed", "the Ray worker died before the training wrote anything (see the Ray logs)", ""
    return "crashed", root_cause(text.splitlines()) or "", text[-LOG_TAIL_CHARS:]


def record_result(study: optuna.Study, trial: optuna.Trial, result: Mapping[str, Any] | None,
                  error: bool, limits: int | Mapping[str, float]) -> TrialState:
    """Tell Optuna how a launched training ended; return the state told.

    A finished training gets one constraint per limit (measured value - limit, <= 0 feasible); one
    over any limit is COMPLETE but infeasible, its reason naming the limits it broke. A limit on a
    figure the script did not report (no evaluation time in its log) cannot be judged: its
    constraint is 0 and the trial's `unjudged_limits` attribute names it.
    """
    limits = as_limits(limits)
    budget_bytes = int(limits["bytes_total"])
    trial_dir = Path(trial.user_attrs.get("trial_dir", "."))
    predicted = trial.user_attrs.get("predicted_bytes")
    if error:
        reason, message, tail = _failure(trial_dir)
        _set_attrs(trial, {"reason": reason, "message": message, "log_tail": tail})
        study.tell(trial, state=TrialState.FAIL)
        return TrialState.FAIL
    if not result or not result.get("training_done"):
        last = dict(result or {})
        _set_attrs(trial, {"reason": "early_stopped", "val_bpb": last.get("val_bpb"),
                           "val_loss": last.get("val_loss"), "steps": last.get("step")})
        if isinstance(predicted, (int, float)):
            _set_violation(trial, predicted - budget_bytes)
        study.tell(trial, state=TrialState.PRUNED)
        return TrialState.PRUNED
    val_bpb, total = result.get("val_bpb"), result.get("bytes_total")
    if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in (val_bpb, total)):
        _, message, tail = _failure(trial_dir)
        _set_attrs(trial, {"reason": "nan_loss", "message": message or "the final val_bpb is not finite",
                           "log_tail": tail})
        study.tell(trial, state=TrialState.FAIL)
        return TrialState.FAIL
    _set_attrs(trial, {k: result.get(k) for k in _METRIC_ATTRS})
    broken, unjudged = [], []
    for metric, limit in limits.items():
        value = result.get(metric)
        if isinstance(value, (int, float)) and math.isfinite(value):
            violation = float(value) - float(limit)
            if violation > 0:
                broken.append(limit_reason(metric))
        else:
            violation = 0.0
            unjudged.append(metric)
        if metric == "bytes_total":
            _set_violation(trial, violation)
        else:
            trial.set_constraint(limit_constraint(metric), violation)
    if broken:
        _set_attrs(trial, {"reason": "+".join(broken)})
    if unjudged:
        _set_attrs(trial, {"unjudged_limits": unjudged})
    study.tell(trial, [float(val_bpb), float(total)])
    return TrialState.COMPLETE


def settle_running_trials(study: optuna.Study, limits: int | Mapping[str, float]) -> tuple[list[int], list[int]]:
    """Leave no trial RUNNING: finished trainings become COMPLETE, others FAIL + re-enqueued.

    A trial whose folder holds a finished metrics.json for its environment is
    told COMPLETE from it (its training is never run again); any other RUNNING
    trial was interrupted: it is told FAIL with reason `interrupted`, and if its
    training had been launched its parameters are enqueued so that the next
    search runs it again (a proposal killed before launch, perhaps with only
    part of its parameters drawn, cost nothing and is not repeated).
    Returns (numbers recovered, numbers re-enqueued).
    """
    recovered, requeued = [], []
    for frozen in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        trial = optuna.Trial(study, frozen._trial_id)
        trial_dir = frozen.user_attrs.get("trial_dir")
        metrics = load_finished_metrics(Path(trial_dir), frozen.user_attrs.get("env")) if trial_dir else None
        if metrics is not None:
            record_result(study, trial, {**metrics, "training_done": True}, False, limits)
            recovered.append(frozen.number)
            continue
        _set_attrs(trial, {"reason": "interrupted"})
        study.tell(trial, state=TrialState.FAIL)
        if frozen.user_attrs.get("launched"):
            study.enqueue_trial(frozen.params, user_attrs={"requeued_from": frozen.number},
                                skip_if_exists=False)
            requeued.append(frozen.number)
    return recovered, requeued


def count_trainings(study: optuna.Study) -> int:
    """Trainings launched and finished (interrupted ones excluded: they run again; so are the
    failures that stopped a search: their cause is fixed before it resumes)."""
    stopped = set(study.user_attrs.get(STOPPED_SEARCH_ATTR, []))
    return sum(1 for t in study.get_trials(deepcopy=False)
               if t.user_attrs.get("launched") and t.state.is_finished()
               and t.user_attrs.get("reason") != "interrupted" and t.number not in stopped)


def missing_data(env: Mapping[str, str]) -> str | None:
    """One line naming the trial's DATA_PATH/TOKENIZER_PATH that does not exist and the
    `python -m pgolf.data` command that makes it; None when both exist (or are not set)."""
    import glob

    vocab = env.get("VOCAB_SIZE", "1024")
    for key in ("DATA_PATH", "TOKENIZER_PATH"):
        path = env.get(key)
        if path and not Path(path).exists() and not glob.glob(path):
            how = (f"`python -m pgolf.data download --variant sp{vocab}`" if vocab == "1024" else
                   f"`python -m pgolf.data prepare --vocab {vocab} --docs DOCS.jsonl --out data`")
            return f"{key} {path} does not exist (make it with {how}, or point FIXED_ENV's {key} at it)"
    return None


class BudgetedOptunaSearcher(Searcher):
    """Proposes trials from an Optuna study; prunes over-budget ones before Ray sees them."""

    def __init__(self, spec: SpaceSpec, study: optuna.Study, launch: TrialLaunch,
                 predictor: BytePredictor | Callable[[Mapping[str, str]], int],
                 max_over_budget_in_a_row: int = MAX_OVER_BUDGET_IN_A_ROW,
                 learner_path: Path | None = None):
        """predictor: a `pgolf.size.SizeLearner` (prunes with its margin and learns from completed
        trials, saved to learner_path after each), or a plain env -> bytes function (used as is)."""
        super().__init__(metric=None, mode=None)
        self.spec = spec
        self.study = study
        self.launch = launch
        self.predictor = as_predictor(predictor)
        self.learner_path = learner_path
        self.max_over_budget_in_a_row = max_over_budget_in_a_row
        self.live: dict[str, optuna.Trial] = {}
        self.aborted: str | None = None
        self.pruned_before_launch = 0
        self.same_failures: list[tuple[optuna.Trial, str]] = []  # the latest failures in a row, one message

    def _failed(self, trial: optuna.Trial, message: str) -> bool:
        """Count a failure; stop the search (True) after the space's MAX_SAME_FAILURES in a row with
        one message: the next trials would fail the same way, at full GPU cost."""
        if self.same_failures and self.same_failures[-1][1] != message:
            self.same_failures = []
        self.same_failures.append((trial, message))
        limit = self.spec.max_same_failures
        if not limit or len(self.same_failures) < limit or self.aborted:
            return False
        # these do not count as trainings done: a resume runs new ones (finished trials cannot take
        # attributes any more, so the study keeps their numbers)
        stopped = list(self.study.user_attrs.get(STOPPED_SEARCH_ATTR, []))
        self.study.set_user_attr(STOPPED_SEARCH_ATTR, stopped + [t.number for t, _ in self.same_failures])
        numbers = ", ".join(str(t.number) for t, _ in self.same_failures)
        self.aborted = (f"error: search stopped: {limit} trials in a row ({numbers}) failed with: {message[:300]} "
                        "(fix the cause, then run the same command with --resume)")
        return True

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        return True  # the space comes from the space file, objectives are fixed

    def _propose(self, trial: optuna.Trial) -> dict[str, str]:
        try:
            proposed = self.spec.space(trial)
        except Exception as exc:  # noqa: BLE001 - user code: report it in one line
            raise SearchAborted(f"error: {self.spec.path}: space(trial) raised {type(exc).__name__}: {exc} "
                                "(fix the space function)") from None
        if not isinstance(proposed, Mapping):
            raise SearchAborted(f"error: {self.spec.path}: space(trial) returned {type(proposed).__name__}, "
                                "not a dict (return the trial's environment as a dict)")
        return self.spec.trial_env(proposed)

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        if self.aborted:
            return Searcher.FINISHED
        for _ in range(self.max_over_budget_in_a_row):
            trial = self.study.ask()
            try:
                env = self._propose(trial)
                prune, predicted, margin = self.predictor.prune(env, self.spec.budget_bytes)
            except Exception as exc:  # noqa: BLE001 - stop the search with one line
                self.study.tell(trial, state=TrialState.FAIL)
                self.aborted = str(exc) if isinstance(exc, SearchAborted) else (
                    f"error: {self.spec.path}: predicting bytes failed: {type(exc).__name__}: {exc} "
                    "(check the environment the space returns, or set PREDICT_BYTES)")
                return Searcher.FINISHED
            # predicted None: the predictor cannot tell yet (an external script before its fit)
            _set_attrs(trial, {"predicted_bytes": predicted, "margin_bytes": margin if predicted is not None
                               else None, "env": env})
            seed_point = bool(trial.user_attrs.get("seed_point"))
            if prune and predicted is not None and seed_point:
                # the user asked for this point: run it anyway; its measured bytes calibrate the learner
                print(f"warning: seed point {trial.params} is predicted at {predicted} bytes (+{margin} margin), "
                      f"over the {self.spec.budget_bytes}-byte budget; running it as POINTS_TO_EVALUATE asks",
                      file=sys.stderr, flush=True)
                _set_attrs(trial, {"warning": "seed point predicted over budget"})
            elif prune and predicted is not None:
                _set_attrs(trial, {"reason": "over_budget_predicted"})
                # the violation Optuna learns from includes the margin, so it is > 0 for every pruned trial
                _set_violation(trial, predicted + margin - self.spec.budget_bytes)
                self.study.tell(trial, state=TrialState.PRUNED)
                self.pruned_before_launch += 1
                continue
            missing = None if self.launch.prepare_data else missing_data(env)
            if missing:
                _set_attrs(trial, {"reason": "missing_data", "message": missing})
                self.study.tell(trial, state=TrialState.FAIL)
                if self._failed(trial, missing):
                    return Searcher.FINISHED
                continue
            trial_dir = (self.launch.folder / "trials" / str(trial.number)).resolve()
            _set_attrs(trial, {"trial_dir": str(trial_dir), "launched": True, "tune_trial_id": trial_id})
            self.live[trial_id] = trial
            return {"env": env, "script": str(self.launch.script.resolve()), "trial_dir": str(trial_dir),
                    "nproc": self.launch.nproc, "prepare_data": self.launch.prepare_data,
                    "timeout_s": self.launch.timeout_s, "score_line": self.launch.score_line}
        self.aborted = (f"error: {self.spec.path}: {self.max_over_budget_in_a_row} proposals in a row were "
                        f"predicted over the {self.spec.budget_bytes}-byte budget (the space is almost "
                        "entirely over budget: shrink its ranges or raise BUDGET_BYTES)")
        return Searcher.FINISHED

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        trial = self.live.pop(trial_id, None)
        if trial is None:
            return
        state = record_result(self.study, trial, result, error, self.spec.limits or self.spec.budget_bytes)
        if state == TrialState.COMPLETE:
            self.observe(trial.user_attrs.get("env") or {}, result.get("bytes_total"))  # type: ignore[union-attr]
            self.same_failures = []
        elif state == TrialState.FAIL:
            attrs = trial.user_attrs
            self._failed(trial, str(attrs.get("message") or attrs.get("reason") or "crashed"))
        write_trials_csv(self.study, self.launch.folder, self.spec.budget_bytes)

    def observe(self, env: Mapping[str, str], bytes_total: Any) -> None:
        """Give a completed trial's measured bytes to the predictor and save what it learned."""
        if not env or not isinstance(bytes_total, (int, float)):
            return
        try:
            self.predictor.observe(env, int(bytes_total))
            if self.learner_path is not None and hasattr(self.predictor, "save"):
                self.predictor.save(self.learner_path)
        except Exception as exc:  # noqa: BLE001 - a learner problem must not stop the trials running
            print(f"warning: the size predictor could not learn from this trial: {type(exc).__name__}: {exc}",
                  file=sys.stderr, flush=True)

    def save(self, checkpoint_path: str) -> None:
        """Tune checkpoints searchers; ours keeps its state in the study, so save a pointer."""
        Path(checkpoint_path).write_text(json.dumps({"study": self.study.study_name}))

    def restore(self, checkpoint_path: str) -> None:
        """Nothing to restore: `--resume` reloads the study (see settle_running_trials)."""
