"""Warm starts: earlier experiments' finished trials added to a new study before it samples.

`search.run SPACE --warm-start results/<old> [more…]` copies each COMPLETE trial
of the old studies whose parameters fit the new space (the same names, each
value inside the new distribution) into the new study (Optuna `add_trials`),
with its values and its constraints recomputed against the new space's limits.
They are marked `imported_from` = `<old experiment>#<number>`: not trainings of
this experiment (not counted, not on its progress line, front or summary; a
row of their own kind in `trials.csv`), but the sampler learns from them, the
size learner learns their measured bytes, and the searcher does not train a
point again that was imported (`duplicate_of_imported`, pruned before launch).
A record folder (`submission.json`, seed logs) is imported as one finished
point at the space script's defaults, with its seeds' mean `val_bpb`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial, TrialState

from pgolf.logs import ScoresError, find_logs, parse_log, record_scores
from search.core import attrs
from search.core.errors import OneLineError
from search.core.layout import EXPERIMENT_FILE, STUDY_FILE, storage_url
from search.core.limits import judge
from search.engine.constraints import constraint_attrs
from search.space.knobs import scan
from search.space.points import distributions
from search.space.spec import SpaceSpec

_CARRIED = (attrs.ENV, "val_loss", "bytes_code", "bytes_model", "steps", "train_seconds", "eval_seconds",
            attrs.TRIAL_DIR, "log_path")


class WarmStartError(OneLineError, ValueError):
    """An experiment that cannot be imported (one line naming the fix)."""


def space_distributions(spec: SpaceSpec) -> dict[str, BaseDistribution]:
    """The new space's distributions (`search.space.points.distributions`); a space that raises is one line."""
    try:
        return distributions(spec)
    except Exception as exc:  # noqa: BLE001 - user code: one line
        raise WarmStartError(f"{spec.path}: space(trial) raised {type(exc).__name__}: {exc} (fix the space "
                             "function)") from None


def fits(params: dict[str, Any], distributions: dict[str, BaseDistribution]) -> bool:
    if set(params) != set(distributions):
        return False
    try:
        return all(distributions[k]._contains(distributions[k].to_internal_repr(v)) for k, v in params.items())
    except (ValueError, TypeError):
        return False


def _constraints(measured: dict[str, Any], limits: dict[str, float]) -> dict[str, Any]:
    """An imported point's constraints against the new limits (`search.core.limits.judge`: a time it did
    not report is 0, unjudged), as the system attributes `search.engine.constraints.set_constraint` writes."""
    return constraint_attrs(judge(measured, limits).constraints)


def _old_trials(folder: Path) -> tuple[str, list[FrozenTrial]]:
    try:
        meta = json.loads((folder / EXPERIMENT_FILE).read_text())
    except (OSError, ValueError):
        raise WarmStartError(f"--warm-start {folder}: no readable experiment.json; pass an experiment folder "
                             "(results/<name>) of an earlier search") from None
    if not (folder / STUDY_FILE).is_file():
        raise WarmStartError(f"--warm-start {folder}: no study.db; pass an experiment folder of an earlier search")
    name = str(meta.get("name") or folder.name)
    try:
        study = optuna.load_study(study_name=str(meta.get("study_name") or name), storage=storage_url(folder))
    except Exception as exc:  # noqa: BLE001 - a damaged or foreign study.db: one line
        raise WarmStartError(f"--warm-start {folder}: cannot read its study ({type(exc).__name__}: "
                             f"{str(exc)[:120]}); pass an experiment folder of an earlier search") from None
    return name, [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                  if t.values and attrs.IMPORTED_FROM not in t.user_attrs and attrs.DUPLICATE_OF not in t.user_attrs]


def gather(folders: Sequence[Path], spec: SpaceSpec) -> tuple[list[FrozenTrial], int]:
    """Read every --warm-start folder (an experiment with a readable study, or a record folder whose
    configuration is a point of the space) before anything is written: the points to import, and how many
    finished trials did not fit the space. A bad folder is a WarmStartError."""
    distributions = space_distributions(spec)
    points, misfits = [], 0
    for folder in map(Path, folders):
        if is_record(folder):
            points.append(record_point(folder, spec, distributions))
            continue
        name, trials = _old_trials(folder)
        for t in trials:
            if not fits(t.params, distributions):
                misfits += 1
                continue
            user_attrs = {k: t.user_attrs[k] for k in _CARRIED if k in t.user_attrs}
            user_attrs[attrs.IMPORTED_FROM] = f"{name}#{t.number}"
            points.append(optuna.trial.create_trial(
                state=TrialState.COMPLETE, values=list(t.values), params=dict(t.params),
                distributions={k: distributions[k] for k in t.params}, user_attrs=user_attrs,
                system_attrs=_constraints({**t.user_attrs, "bytes_total": t.values[1]}, spec.limits)))
    return points, misfits


def add_points(study: optuna.Study, points: Sequence[FrozenTrial]) -> list[FrozenTrial]:
    """Add the gathered points the study does not hold yet (a resume finds them there); returns those added."""
    present = {t.user_attrs.get(attrs.IMPORTED_FROM) for t in study.get_trials(deepcopy=False)}
    added = [p for p in points if p.user_attrs[attrs.IMPORTED_FROM] not in present]
    study.add_trials(added)
    return added


def is_record(folder: Path) -> bool:
    """A record folder (submission.json and/or seed logs), not an experiment."""
    return not (folder / EXPERIMENT_FILE).is_file() and (
        (folder / "submission.json").is_file() or any(folder.glob("*.log")))


def record_point(folder: Path, spec: SpaceSpec, distributions: dict[str, BaseDistribution]) -> FrozenTrial:
    """A record's seeds as one finished point at the space script's defaults (what the record ran): its mean
    val_bpb and its largest bytes_total, from submission.json, else from its logs."""
    try:
        scores = record_scores(folder)
    except ScoresError as exc:
        raise WarmStartError(f"--warm-start {folder}: {exc}") from None
    try:
        submission = json.loads((folder / "submission.json").read_text())
    except (OSError, ValueError):
        submission = {}
    sizes = [s.bytes_total for s in map(parse_log, find_logs(folder)) if s.bytes_total is not None]
    bytes_total = submission.get("bytes_total") or (max(sizes) if sizes else None)
    if not isinstance(bytes_total, (int, float)):
        raise WarmStartError(f"--warm-start {folder}: no bytes_total in submission.json nor a `Total submission "
                             "size` line in its logs")
    defaults = {k.name: k.default for k in scan(spec.script)}
    params = {}
    for name, dist in distributions.items():
        value = _as_value(defaults.get(name), dist)
        if value is None:
            raise WarmStartError(f"--warm-start {folder}: {spec.script}'s default of {name} "
                                 f"({defaults.get(name)!r}) is not in the space's range; widen the space to "
                                 "include the record's configuration")
        params[name] = value
    return optuna.trial.create_trial(
        state=TrialState.COMPLETE, values=[scores.mean, float(bytes_total)], params=params,
        distributions=dict(distributions),
        user_attrs={attrs.IMPORTED_FROM: f"record {folder.name} ({len(scores.val_bpb)} seeds)", attrs.ENV: {}},
        system_attrs=_constraints({"bytes_total": bytes_total}, spec.limits))


def _as_value(default: str | None, dist: BaseDistribution) -> Any:
    """A script's default (as written) as a value of the distribution, or None when it is not one."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    if default is None:
        return None
    try:
        if isinstance(dist, CategoricalDistribution):
            return next(c for c in dist.choices if str(c) == default or (
                isinstance(c, (int, float)) and not isinstance(c, bool) and float(c) == float(default)))
        value = int(float(default)) if isinstance(dist, IntDistribution) else float(default)
        if isinstance(dist, (IntDistribution, FloatDistribution)) and dist._contains(dist.to_internal_repr(value)):
            return value
    except (ValueError, StopIteration):
        return None
    return None
