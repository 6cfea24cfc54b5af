"""The peers a competitor would pick instead of us, driven on the same tables (bench/search_efficiency.py).

Installed with the optional `bench` extra (`pip install -e '.[bench]'`); a peer
that is not installed is skipped with the reason. Each runs through its own
public ask/tell surface, one training at a time, until its run has spent the
benchmark's cost budget:

- `ax`: Ax's `Client` (Ax 1.x, BoTorch underneath: Sobol, then qLogNEHVI),
  multi-objective (val_bpb, bytes_total) with the byte budget as an outcome
  constraint `bytes_total <= budget`. Like every peer it learns the budget
  only from the trainings it pays for: it cannot prune before launch.
- `syne-morea`: Syne Tune's multi-objective regularized evolution
  (`MultiObjectiveRegularizedEvolution` in a `SingleFidelityScheduler`),
  population 20, sample 5 (the NSGA-II row's population), baseline first.
- `syne-moasha`: Syne Tune's `MOASHA` (multi-objective asynchronous successive
  halving, non-dominated sorting) on the two-fidelity table: a new configuration
  reports at rung 0 (the cheap table, time 1) and, when MOASHA says CONTINUE,
  at the full fidelity (time 3, reduction factor 3: the best third continues,
  as our ladder promotes). It samples at random and knows no constraint. A
  continued training is paid in full, as our ladder's promotions are: the cheap
  run has its own learning-rate schedule, so it is no prefix of the long one.
- `autosampler`: optunahub's `AutoSampler` (Optuna's recommended automatic
  choice of sampler), told the measured budget violation as its
  `constraints_func`. optunahub installs from PyPI, but `load_module` fetches
  the sampler's code from GitHub at run time: skipped, with the reason, on a
  machine that cannot reach it.
"""

from __future__ import annotations

import contextlib
import datetime
import io
import logging
import time
import warnings
from typing import Any, Callable

THRESHOLD_METRICS = ("val_bpb", "bytes_total")


def missing(method: str) -> str | None:
    """Why a peer cannot run here (None when it can)."""
    import importlib.util

    if method == "autosampler":
        return _autosampler()[1]
    module = {"ax": "ax", "syne-morea": "syne_tune", "syne-moasha": "syne_tune"}[method]
    if importlib.util.find_spec(module) is None:  # found without importing (Ax logs on import)
        return f"not installed ({module}): pip install -e '.[bench]', or bash scripts/setup.sh"
    return None


def run_peer(method: str, problem, seed: int, n: float, choices: dict[str, list[Any]], run,
             env_of: Callable) -> Any:
    """Run one peer for one seed into `run` (bench/search_efficiency.Run) and return it."""
    logging.getLogger("ax").setLevel(logging.ERROR)
    logging.getLogger("syne_tune").setLevel(logging.ERROR)
    with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        {"ax": _ax, "syne-morea": _morea, "syne-moasha": _moasha, "autosampler": _auto}[method](
            problem, seed, n, choices, run, env_of)
    return run


_AUTOSAMPLER: list = []


def _autosampler() -> tuple[Any, str | None]:
    """optunahub's AutoSampler class, or why it cannot be had here (looked up once)."""
    if not _AUTOSAMPLER:
        import importlib.util

        if importlib.util.find_spec("optunahub") is None:
            _AUTOSAMPLER.append((None, "not installed (optunahub): pip install optunahub; its AutoSampler is then "
                                       "fetched from GitHub"))
        else:
            try:
                import optunahub

                with contextlib.redirect_stderr(io.StringIO()):
                    _AUTOSAMPLER.append((optunahub.load_module("samplers/auto_sampler").AutoSampler, None))
            except Exception as exc:  # noqa: BLE001 - no network, no registry: say why, skip it
                _AUTOSAMPLER.append((None, f"optunahub.load_module('samplers/auto_sampler') failed: "
                                           f"{type(exc).__name__} (it fetches from GitHub)"))
    return _AUTOSAMPLER[0]


def _auto(problem, seed, n, choices, run, env_of) -> None:
    import optuna

    sampler = _autosampler()[0](seed=seed, constraints_func=lambda t: [t.user_attrs["violation"]])
    study = optuna.create_study(directions=["minimize", "minimize"], sampler=sampler)
    if problem.spec.points_to_evaluate:
        study.enqueue_trial(dict(problem.spec.points_to_evaluate[0]))
    while run.spent() < n:
        start = time.perf_counter()
        trial = study.ask()
        config = {k: trial.suggest_categorical(k, v) for k, v in choices.items()}
        run.searcher_seconds += time.perf_counter() - start
        point, cost = _measure(problem, env_of, choices, config)
        run.record(point, cost, problem)
        start = time.perf_counter()
        trial.set_user_attr("violation", float(point[1] - problem.budget))
        study.tell(trial, [point[0], float(point[1])])
        run.searcher_seconds += time.perf_counter() - start


def _as_choice(choices: dict[str, list[Any]], config: dict[str, Any]) -> dict[str, Any]:
    """A peer's configuration with each value as the grid's own (0.08, not numpy's float64)."""
    return {k: next(c for c in choices[k] if c == config[k]) for k in choices}


def _measure(problem, env_of, choices, config, rung: int | None = None) -> tuple[tuple[float, int], float]:
    env = env_of(problem.spec, _as_choice(choices, config))
    return problem.measure(env, rung), problem.cost(env, rung)


def _ax(problem, seed, n, choices, run, env_of) -> None:
    from ax import ChoiceParameterConfig, Client
    from ax.utils.common.logger import set_ax_logger_levels, set_stderr_log_level

    set_ax_logger_levels(logging.ERROR)  # one INFO line per trial otherwise
    set_stderr_log_level(logging.ERROR)
    client = Client(random_seed=seed)
    client.configure_experiment(parameters=[
        ChoiceParameterConfig(name=k, values=list(v), is_ordered=True,
                              parameter_type="int" if all(isinstance(x, int) for x in v) else "float")
        for k, v in choices.items()])
    client.configure_optimization(objective="-val_bpb, -bytes_total",
                                  outcome_constraints=[f"bytes_total <= {problem.budget}"])
    baseline = dict(problem.spec.points_to_evaluate[0]) if problem.spec.points_to_evaluate else None
    while run.spent() < n:
        start = time.perf_counter()
        if baseline is not None:  # every method starts from the space's baseline
            index, config = client.attach_trial(parameters=baseline), baseline
            baseline = None
        else:
            ((index, config),) = client.get_next_trials(max_trials=1).items()
        run.searcher_seconds += time.perf_counter() - start
        point, cost = _measure(problem, env_of, choices, config)
        run.record(point, cost, problem)
        start = time.perf_counter()
        client.complete_trial(trial_index=index, raw_data={"val_bpb": point[0], "bytes_total": float(point[1])})
        run.searcher_seconds += time.perf_counter() - start


def _config_space(choices: dict[str, list[Any]]) -> dict[str, Any]:
    from syne_tune.config_space import choice

    return {k: choice(list(v)) for k, v in choices.items()}


def _trial(number: int, config: dict[str, Any]):
    from syne_tune.backend.trial_status import Trial

    return Trial(trial_id=number, config=config, creation_time=datetime.datetime.now())


def _morea(problem, seed, n, choices, run, env_of) -> None:
    import numpy as np
    from syne_tune.optimizer.schedulers.multiobjective.multi_objective_regularized_evolution import (
        MultiObjectiveRegularizedEvolution)
    from syne_tune.optimizer.schedulers.single_fidelity_scheduler import SingleFidelityScheduler

    np.random.seed(seed)
    space = _config_space(choices)
    points = [dict(problem.spec.points_to_evaluate[0])] if problem.spec.points_to_evaluate else None
    searcher = MultiObjectiveRegularizedEvolution(space, points_to_evaluate=points, population_size=20,
                                                  sample_size=5, random_seed=seed)
    scheduler = SingleFidelityScheduler(space, metrics=list(THRESHOLD_METRICS), do_minimize=True,
                                        searcher=searcher, random_seed=seed)
    number = 0
    while run.spent() < n:
        start = time.perf_counter()
        suggestion = scheduler.suggest()
        run.searcher_seconds += time.perf_counter() - start
        if suggestion is None:
            break
        trial = _trial(number, suggestion.config)
        point, cost = _measure(problem, env_of, choices, suggestion.config)
        run.record(point, cost, problem)
        start = time.perf_counter()
        scheduler.on_trial_complete(trial, {"val_bpb": point[0], "bytes_total": float(point[1])})
        run.searcher_seconds += time.perf_counter() - start
        number += 1


def _moasha(problem, seed, n, choices, run, env_of) -> None:
    import numpy as np
    from syne_tune.optimizer.scheduler import SchedulerDecision
    from syne_tune.optimizer.schedulers.multiobjective.moasha import MOASHA

    np.random.seed(seed)  # MOASHA samples through numpy's global generator
    scheduler = MOASHA(_config_space(choices), metrics=list(THRESHOLD_METRICS), do_minimize=True,
                       time_attr="epoch", max_t=3, grace_period=1, reduction_factor=3, random_seed=seed)
    number = 0
    while run.spent() < n:
        start = time.perf_counter()
        suggestion = scheduler.suggest()
        trial = _trial(number, suggestion.config)
        scheduler.on_trial_add(trial)
        run.searcher_seconds += time.perf_counter() - start
        point, cost = _measure(problem, env_of, choices, suggestion.config, rung=0)
        run.record(point, cost, problem, result=False)
        start = time.perf_counter()
        decision = scheduler.on_trial_result(trial, {"epoch": 1, "val_bpb": point[0], "bytes_total": float(point[1])})
        run.searcher_seconds += time.perf_counter() - start
        if decision == SchedulerDecision.CONTINUE and run.spent() < n:
            point, cost = _measure(problem, env_of, choices, suggestion.config)
            run.record(point, cost, problem)
            result = {"epoch": 3, "val_bpb": point[0], "bytes_total": float(point[1])}
            start = time.perf_counter()
            scheduler.on_trial_result(trial, result)
            scheduler.on_trial_complete(trial, result)
            run.searcher_seconds += time.perf_counter() - start
        else:
            start = time.perf_counter()
            scheduler.on_trial_remove(trial)
            run.searcher_seconds += time.perf_counter() - start
        number += 1
