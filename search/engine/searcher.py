"""A Ray Tune `Searcher` over an Optuna study, with the byte budget as a constraint.

Ray's own `OptunaSearch` only ever calls `tell(values)`: constraints never reach Optuna, a NaN result
leaves the Optuna trial RUNNING forever, and a trial stopped by a scheduler is told COMPLETE with a
partial result. This searcher drives the study with `ask`/`tell` itself:

- every proposal's bytes are predicted before launch; one over the budget by prediction plus the
  predictor's margin is told PRUNED with its violation and never reaches Ray; a sampler that proposes
  only what the predictor accepts (`search.engine.gp_sampler`) is given the predictor as its `judge`;
- a completed training's measured bytes teach the predictor (`observe`: `pgolf.size.SizeLearner`, saved
  in the experiment folder), and every proposal pruned before launch is judged again (`rejudge`);
- a finished training is told `[val_bpb, bytes_total]` and one constraint per limit
  (`search.engine.study.record_result`); an error or a non-finite objective is FAIL, a trial stopped
  early is PRUNED; a trial whose Ray worker or node died is FAIL `node_lost` and runs again: the
  searcher, not Tune's num_samples, counts the trainings still to run;
- a full results disk stops the search at once (`urgent`), leaving the study for `--resume` to settle;
- with a ladder, a freed slot goes first to a promotion owed (`search.engine.ladder`); a byte predictor per rung;
- a proposal repeating a configuration trained (or training) at its rung is never launched: it is told
  that training's result, marked `duplicate_of`, and costs nothing (`search.engine.history`; a space's
  ALLOW_REPEATS = True trains it again); a finite space ends once nothing in it is left to launch.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import optuna
from optuna.trial import TrialState
from ray.tune.search import Searcher

from search.core import attrs
from search.core.errors import disk_full_line, is_disk_full
from search.core.layout import trial_folder
from search.core.trials import fidelity_of, param_key
from search.engine.constraints import set_violation
from search.engine.history import History
from search.engine.ladder import ask
from search.engine.predictors import BytePredictor, as_predictor
from search.engine.samplers import innermost, rejudge_pruned
from search.engine.study import record_result, requeue, set_attrs, tell_duplicate
from search.runner.data import missing_data
from search.runner.failures import MAX_LOST, Failure, classify, tune_trial_error
from search.runner.metrics import load_finished_metrics
from search.runner.launch import TrialLaunch
from search.runner.trial_files import read_node
from search.space.ladder import Ladder
from search.space.points import distributions
from search.space.spec import SpaceError, SpaceSpec
from search.store.trials_csv import write_trials_csv

MAX_OVER_BUDGET_IN_A_ROW = 200


class SearchAborted(RuntimeError):
    """The search cannot go on (one-line message for the user)."""


class BudgetedOptunaSearcher(Searcher):
    """Proposes trials from an Optuna study; prunes over-budget ones before Ray sees them."""

    def __init__(self, spec: SpaceSpec, study: optuna.Study, launch: TrialLaunch,
                 predictor: BytePredictor | Callable[[Mapping[str, str]], int] | Sequence[Any],
                 max_over_budget_in_a_row: int = MAX_OVER_BUDGET_IN_A_ROW,
                 learner_path: Path | Sequence[Path] | None = None, target: int | None = None,
                 max_node_losses: int = 0):
        """predictor: a `pgolf.size.SizeLearner` (prunes with its margin and learns from completed
        trials, saved to learner_path after each), or a plain env -> bytes function (used as is);
        with a fidelity ladder, a list of them (and of paths), one per rung: bytes drift with training
        length, so each rung keeps its own corrections and margin.
        target: trainings to finish (Tune then runs with num_samples=-1: a trial on a lost node is
        replaced, so the count is the searcher's to keep).
        max_node_losses: stop the search after that many trials lost with their node (0: never)."""
        super().__init__(metric=None, mode=None)
        self.spec = spec
        self.study = study
        self.launch = launch
        self.ladder: Ladder | None = spec.ladder
        predictors = list(predictor) if isinstance(predictor, (list, tuple)) else [predictor]
        self.predictors = [as_predictor(p) for p in predictors]
        paths = list(learner_path) if isinstance(learner_path, (list, tuple)) else [learner_path]
        self.learner_paths: list[Path | None] = paths + [None] * (len(self.predictors) - len(paths))
        self.max_over_budget_in_a_row = max_over_budget_in_a_row
        self.live: dict[str, optuna.Trial] = {}
        self.aborted: str | None = None
        self.pruned_before_launch = 0
        self.same_failures: list[tuple[optuna.Trial, str]] = []  # the latest failures in a row, one message
        self.target = target
        self.finished = 0        # trainings this run that count towards target
        self.max_node_losses = max_node_losses
        self.node_losses = 0     # trials lost with their node in this run
        self.urgent = False      # stop the running trials too (a full disk): see `StopAll`
        self.interrupted = False  # Ctrl-C seen (search.run): stop everything, the trials stay RUNNING to be settled
        self.tune_trials: dict[str, Any] = {}  # Tune's Trial objects by id (their recorded errors): `TrialTracker`
        self.history = History(study)  # what was trained, at which rung (and what --warm-start imported)
        self.waiting: dict[int, list[optuna.Trial]] = {}  # duplicates of a running training, told when it ends
        self.duplicates = 0      # proposals this run told a training's result instead of being trained
        self._judged: dict[tuple, tuple[bool, int | None]] = {}  # judge()'s verdicts, until the predictor learns
        self._asked_rung: int | None = None  # the rung the proposal being drawn starts on (judge)
        self.exhausted: str | None = None  # every configuration of a finite space trained or over budget
        self._exhausted_until_news = False  # so while trainings run: wait for one to end before asking again
        self.distributions = distributions(spec, quiet=True)
        sampler = innermost(study.sampler)
        if hasattr(sampler, "judge"):  # proposes only what the predictor accepts (search.engine.gp_sampler)
            sampler.judge = self.judge
            sampler.distributions = self.distributions

    def judge(self, params: Mapping[str, Any]) -> tuple[bool, int | None]:
        """Would these parameters be launched at the rung the proposal being drawn starts on (0, or the top
        for TOP_RUNG_FRACTION's share), and their predicted bytes (None: cannot tell yet)? Not if the space
        raises on them, that rung's predictor prunes them, or they were trained at that rung; kept until
        the next completed training teaches the predictor (`observe`)."""
        key, rung = param_key(dict(params)), self._asked_rung if self._asked_rung is not None else self._new_rung
        if key in self.history.trained_keys(rung, cached=True) and not self.spec.allow_repeats:
            return False, None
        if (key, rung) not in self._judged:
            try:
                proposed = self.spec.space(optuna.trial.FixedTrial(dict(params)))
                env = self.spec.trial_env(proposed, rung)
                prune, predicted, _ = self._predictor(rung).prune(env, self.spec.budget_bytes)
                self._judged[key, rung] = (not (prune and predicted is not None), predicted)
            except Exception:  # noqa: BLE001 - user code: such a candidate is simply not proposed
                self._judged[key, rung] = (False, None)
        return self._judged[key, rung]

    def _exhaust(self) -> bool:
        """True when a finite space holds nothing left to launch (`History.coverage`). Once the last training
        has ended, sets `exhausted` (one line), or `aborted` when nothing at all could be trained."""
        coverage = self.history.coverage(self.distributions, self._new_rung)
        if coverage is None or not coverage.complete:
            return False
        if not self.live and not coverage.trained:
            self.aborted = (f"error: {self.spec.path}: each of the space's {coverage.size} configuration(s) is "
                            f"predicted over the {self.spec.budget_bytes}-byte budget (shrink its ranges or raise "
                            "BUDGET_BYTES)")
        elif not self.live:
            self.exhausted = (f"the space is exhausted: each of its {coverage.size} configurations was trained or "
                              "is predicted over budget (widen the space for more; --resume would train nothing new)")
        return True

    def _wait_or_finish(self) -> str | None:
        """Exhausted: wait while trainings run (one may teach the predictor better), else finish."""
        self._exhausted_until_news = bool(self.live)
        return None if self.live else Searcher.FINISHED

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
        stopped = list(self.study.user_attrs.get(attrs.STOPPED_SEARCH, []))
        self.study.set_user_attr(attrs.STOPPED_SEARCH, stopped + [t.number for t, _ in self.same_failures])
        numbers = ", ".join(str(t.number) for t, _ in self.same_failures)
        self.aborted = (f"error: search stopped: {limit} trials in a row ({numbers}) failed with: {message[:300]} "
                        "(fix the cause, then run the same command with --resume)")
        return True

    @property
    def _new_rung(self) -> int | None:
        """The rung new proposals start on: 0 with a ladder, None without."""
        return None if self.ladder is None else 0

    @property
    def predictor(self) -> BytePredictor:
        """Rung 0's predictor (the only one without a ladder)."""
        return self.predictors[0]

    def _predictor(self, rung: int | None) -> BytePredictor:
        return self.predictors[min(rung or 0, len(self.predictors) - 1)]

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        return True  # the space comes from the space file, objectives are fixed

    def _ask(self) -> tuple[optuna.Trial, int | None]:
        """The next trial and its rung (`search.engine.ladder.ask`; rung None without a ladder), kept for `judge`
        with what was launched at that rung, read once: `judge` asks it per candidate as the proposal is drawn."""
        trial, rung = (self.study.ask(), None) if self.ladder is None else ask(self.study, self.ladder)
        self._asked_rung = rung
        self.history.trained_keys(rung)
        return trial, rung

    def _propose(self, trial: optuna.Trial, rung: int | None = None) -> dict[str, str]:
        try:
            proposed = self.spec.space(trial)
        except Exception as exc:  # noqa: BLE001 - user code: report it in one line
            raise SearchAborted(f"error: {self.spec.path}: space(trial) raised {type(exc).__name__}: {exc} "
                                "(fix the space function)") from None
        if not isinstance(proposed, Mapping):
            raise SearchAborted(f"error: {self.spec.path}: space(trial) returned {type(proposed).__name__}, "
                                "not a dict (return the trial's environment as a dict)")
        return self.spec.trial_env(proposed, rung)

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        try:
            return self._suggest(trial_id)
        except Exception as exc:  # noqa: BLE001
            if not is_disk_full(exc):
                raise
            self._stop_for_full_disk()
            return Searcher.FINISHED

    def _suggest(self, trial_id: str) -> dict[str, Any] | None:
        if self.aborted or self.interrupted:
            return Searcher.FINISHED
        if self.target is not None and self.finished + len(self.live) >= self.target:
            return None if self.live else Searcher.FINISHED  # wait: a running trial may yet need replacing
        if self._exhausted_until_news:  # nothing left to launch until a running training teaches the predictor
            return None
        duplicates = repeats = 0
        for attempt in range(self.max_over_budget_in_a_row):
            if attempt and self._exhaust():  # the last proposal was refused: is anything left to launch?
                return self._wait_or_finish()
            trial, rung = self._ask()
            try:
                env = self._propose(trial, rung)
                prune, predicted, margin = self._predictor(rung).prune(env, self.spec.budget_bytes)
            except Exception as exc:  # noqa: BLE001 - stop the search with one line
                self.study.tell(trial, state=TrialState.FAIL)
                self.aborted = str(exc) if isinstance(exc, (SearchAborted, SpaceError)) else (
                    f"error: {self.spec.path}: predicting bytes failed: {type(exc).__name__}: {exc} "
                    "(check the environment the space returns, or set PREDICT_BYTES)")
                return Searcher.FINISHED
            if param_key(trial.params) in self.history.imported:  # measured already, in an earlier experiment
                set_attrs(trial, {attrs.REASON: attrs.DUPLICATE_OF_IMPORTED, attrs.ENV: env})
                self.study.tell(trial, state=TrialState.PRUNED)
                duplicates += 1
                continue
            original = None if self.spec.allow_repeats else self.history.original(trial, rung)
            if original is not None:  # trained already (or training): its result, not a second training
                set_attrs(trial, {attrs.DUPLICATE_OF: original.number, attrs.ENV: env})
                if original.state == TrialState.RUNNING:
                    self.waiting.setdefault(original.number, []).append(trial)
                else:
                    tell_duplicate(self.study, trial, original)
                self.duplicates += 1
                repeats += 1
                continue
            # predicted None: the predictor cannot tell yet (an external script before its fit)
            set_attrs(trial, {attrs.PREDICTED_BYTES: predicted, attrs.MARGIN_BYTES: margin if predicted is not None
                              else None, attrs.ENV: env})
            seed_point = bool(trial.user_attrs.get(attrs.SEED_POINT))
            if prune and predicted is not None and seed_point:
                # the user asked for this point: run it anyway; its measured bytes calibrate the learner
                print(f"warning: seed point {trial.params} is predicted at {predicted} bytes (+{margin} margin), "
                      f"over the {self.spec.budget_bytes}-byte budget; running it as POINTS_TO_EVALUATE asks",
                      file=sys.stderr, flush=True)
                set_attrs(trial, {attrs.WARNING: "seed point predicted over budget"})
            elif prune and predicted is not None:
                set_attrs(trial, {attrs.REASON: attrs.OVER_BUDGET_PREDICTED})
                # the violation Optuna learns from includes the margin, so it is > 0 for every pruned trial
                set_violation(trial, predicted + margin - self.spec.budget_bytes)
                self.study.tell(trial, state=TrialState.PRUNED)
                self.pruned_before_launch += 1
                continue
            missing = None if self.launch.prepare_data else missing_data(env)
            if missing:
                set_attrs(trial, {attrs.REASON: attrs.MISSING_DATA, attrs.MESSAGE: missing})
                self.study.tell(trial, state=TrialState.FAIL)
                if self._failed(trial, missing):
                    return Searcher.FINISHED
                continue
            trial_dir = trial_folder(self.launch.folder, trial.number)
            set_attrs(trial, {attrs.TRIAL_DIR: str(trial_dir), attrs.LAUNCHED: True, attrs.TUNE_TRIAL_ID: trial_id})
            self.live[trial_id] = trial
            nproc = None
            if self.ladder is not None and self.launch.nproc > 0 and self.ladder.gpus[rung or 0] is not None:
                nproc = int(self.ladder.gpus[rung or 0])  # a cheap rung on fewer GPUs
            return self.launch.config(env, trial_dir, rung, nproc)
        if self._exhaust():
            return self._wait_or_finish()
        if duplicates == self.max_over_budget_in_a_row:
            self.aborted = (f"error: {self.spec.path}: {duplicates} proposals in a row were points --warm-start "
                            "imported (the space is measured already: widen it, or start without --warm-start)")
            return Searcher.FINISHED
        if repeats == self.max_over_budget_in_a_row:
            self.aborted = (f"error: {self.spec.path}: {repeats} proposals in a row were configurations trained "
                            "already (the space is measured: widen it, stop with fewer --num-samples, or set "
                            "ALLOW_REPEATS = True for replicates)")
            return Searcher.FINISHED
        self.aborted = (f"error: {self.spec.path}: {self.max_over_budget_in_a_row} proposals in a row were "
                        f"predicted over the {self.spec.budget_bytes}-byte budget or measured already (the space "
                        "is almost entirely over budget: shrink its ranges or raise BUDGET_BYTES)")
        return Searcher.FINISHED

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        trial = self.live.pop(trial_id, None)
        if trial is None:
            return
        self._exhausted_until_news = False
        if self.urgent or self.interrupted:
            return  # stopping for a full disk or Ctrl-C: the trial stays RUNNING to be settled
        try:
            self._record(trial, trial_id, result, error)
        except Exception as exc:  # noqa: BLE001
            if not is_disk_full(exc):
                raise
            self._stop_for_full_disk()

    def _stop_for_full_disk(self) -> None:
        self.aborted = disk_full_line(self.launch.folder)
        self.urgent = True

    def _record(self, trial: optuna.Trial, trial_id: str, result: dict | None, error: bool) -> None:
        failure = None
        trial_dir = Path(trial.user_attrs.get(attrs.TRIAL_DIR, "."))
        node = read_node(trial_dir) if trial.user_attrs.get(attrs.TRIAL_DIR) else ""  # node.json, sent as it started
        if node:
            set_attrs(trial, {attrs.NODE: node})
        if error:
            metrics = load_finished_metrics(trial_dir, trial.user_attrs.get(attrs.ENV))
            if metrics is not None:  # finished before its worker died: keep it
                result, error = {**metrics, "training_done": True}, False
            else:
                failure = classify(trial_dir, tune_trial_error(self.tune_trials.get(trial_id)))
                if failure.reason == "disk_full":
                    self._stop_for_full_disk()
                    return
                if failure.reason == attrs.NODE_LOST and int(trial.user_attrs.get(attrs.LOST_IN_A_ROW, 0)) + 1 >= MAX_LOST:
                    failure = Failure(attrs.CRASHED, f"{failure.message}, {MAX_LOST} times in a row for these "
                                      "parameters", failure.tail)
        state = record_result(self.study, trial, result, failure or error,
                              self.spec.limits or self.spec.budget_bytes)
        told = self.study.get_trials(deepcopy=False)[trial.number]
        for duplicate in self.waiting.pop(trial.number, []):
            tell_duplicate(self.study, duplicate, told)
        lost = failure is not None and failure.reason == attrs.NODE_LOST
        if lost:
            self.node_losses += 1
            print(f"warning: trial {trial.number}{' on node ' + node if node else ''}: {failure.message}; "
                  "its parameters run again", file=sys.stderr, flush=True)
            requeue(self.study, self.study.get_trials(deepcopy=False)[trial.number])
            if self.max_node_losses and self.node_losses >= self.max_node_losses and not self.aborted:
                self.aborted = (f"error: search stopped: {self.node_losses} trials lost their Ray node in this run "
                                f"(the last, trial {trial.number}, on {node or 'an unknown node'}); check the "
                                "cluster (`ray status`), then run the same command with --resume (or raise "
                                "--max-node-losses)")
        else:
            self.finished += 1
        if state == TrialState.COMPLETE:
            self.observe(trial.user_attrs.get(attrs.ENV) or {}, result.get("bytes_total"),  # type: ignore[union-attr]
                         fidelity_of(trial))
            self.same_failures = []
        elif state == TrialState.FAIL and not lost:
            found = self.study.get_trials(deepcopy=False)[trial.number].user_attrs
            self._failed(trial, str(found.get(attrs.MESSAGE) or found.get(attrs.REASON) or attrs.CRASHED))
        write_trials_csv(self.study, self.launch.folder, self.spec.budget_bytes)

    def observe(self, env: Mapping[str, str], bytes_total: Any, rung: int | None = None,
                rejudge: bool = True) -> None:
        """Give a completed trial's measured bytes to its rung's predictor, save what it learned, and
        judge the proposals it pruned before launch again (`rejudge=False`: the caller does, once)."""
        if not env or not isinstance(bytes_total, (int, float)):
            return
        index = min(rung or 0, len(self.predictors) - 1)
        predictor, path = self.predictors[index], self.learner_paths[index]
        self._judged.clear()
        try:
            predictor.observe(env, int(bytes_total))
            if path is not None and hasattr(predictor, "save"):
                predictor.save(path)
        except Exception as exc:  # noqa: BLE001 - a learner problem must not stop the trials running
            print(f"warning: the size predictor could not learn from this trial: {type(exc).__name__}: {exc}",
                  file=sys.stderr, flush=True)
        if rejudge:
            self.rejudge()

    def rejudge(self) -> tuple[int, int]:
        """Every proposal pruned before launch, judged by its rung's predictor as it is now
        (`search.engine.samplers.rejudge_pruned`: the sampler forgives a wrong early verdict)."""
        def prune_of(t):
            return self._predictor(fidelity_of(t)).prune(t.user_attrs[attrs.ENV], self.spec.budget_bytes)
        try:
            return rejudge_pruned(self.study, prune_of, self.spec.budget_bytes)
        except Exception as exc:  # noqa: BLE001 - the old verdicts stand; the trials keep running
            if is_disk_full(exc):
                raise
            print(f"warning: proposals pruned before launch could not be judged again: {type(exc).__name__}: {exc}",
                  file=sys.stderr, flush=True)
            return 0, 0

    def save(self, checkpoint_path: str) -> None:
        """Tune checkpoints searchers; ours keeps its state in the study, so save a pointer."""
        Path(checkpoint_path).write_text(json.dumps({"study": self.study.study_name}))

    def restore(self, checkpoint_path: str) -> None:
        """Nothing to restore: `--resume` reloads the study (see settle_running_trials)."""

