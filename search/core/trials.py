"""What a trial of the study is: its configuration's key, its rung, and whether it is this
experiment's own result. Pure functions of an Optuna trial's parameters and attributes."""

from __future__ import annotations

from typing import Any, Iterable, Mapping, TypeVar

from search.core import attrs

T = TypeVar("T")


def param_key(params: Mapping[str, Any]) -> tuple:
    """A configuration as a hashable key: the same parameters, the same key."""
    return tuple(sorted(params.items()))


def fidelity_of(trial: Any) -> int | None:
    """The rung a trial ran at (None: a search without a ladder)."""
    value = trial.user_attrs.get(attrs.FIDELITY)
    return None if value is None else int(value)


def is_result(trial: Any, top: int | None) -> bool:
    """Whether a trial counts as a result of its experiment: every trial without a ladder, the top
    rung's with one."""
    rung = fidelity_of(trial)
    return top is None or rung is None or rung == top


def imported(trials: Iterable[T]) -> list[T]:
    """The points --warm-start imported from earlier experiments."""
    return [t for t in trials if attrs.IMPORTED_FROM in t.user_attrs]  # type: ignore[attr-defined]


def own(trials: Iterable[T]) -> list[T]:
    """The experiment's own trials: imported ones and repeated proposals told another trial's result
    (`duplicate_of`) left out."""
    return [t for t in trials if attrs.IMPORTED_FROM not in t.user_attrs  # type: ignore[attr-defined]
            and attrs.DUPLICATE_OF not in t.user_attrs]  # type: ignore[attr-defined]


def is_launched(trial: Any) -> bool:
    """Handed to Ray as a training (not a proposal pruned before launch, nor a repeat)."""
    return bool(trial.user_attrs.get(attrs.LAUNCHED))
