"""What a space proposes, before any trial exists: its points checked, its knobs, how many configurations.

`check_points` runs `space(trial)` on every POINTS_TO_EVALUATE entry before anything launches;
`distributions` draws it once on a throwaway study (a sampler's view of the space, a warm start's
test of fit); `space_size` and `all_configurations` count and list a finite space (choices and
stepped numbers only), for the GP sampler's candidates and the searcher's end of a finite space.
"""

from __future__ import annotations

import difflib
import itertools
import warnings
from typing import Any, Mapping

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, IntDistribution

from search.core.errors import line
from search.space.spec import SpaceError, SpaceSpec


def check_points(spec: SpaceSpec) -> None:
    """Run space(trial) once per POINTS_TO_EVALUATE entry (its values, the first choice or the low end
    for the rest; with no points, once on those alone) before anything launches: a key the space never
    suggests would be dropped by Optuna without a word, and a value the environment cannot hold (None,
    a list, an object) would reach every trial as its Python repr."""
    class PointTrial(optuna.trial.FixedTrial):
        def _suggest(self, name, distribution):
            if name not in self._params:
                self._params[name] = (distribution.choices[0] if hasattr(distribution, "choices")
                                      else distribution.low)
            return super()._suggest(name, distribution)

    for i, point in enumerate(spec.points_to_evaluate or [{}]):
        trial = PointTrial(dict(point), number=i)
        where = f"POINTS_TO_EVALUATE[{i}]" if spec.points_to_evaluate else "the low end of every range"
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                proposed = spec.space(trial)
        except optuna.TrialPruned:
            if spec.points_to_evaluate:
                raise SpaceError(line(spec.path, f"space(trial) prunes {where}", "drop or fix the point")) from None
            continue  # the low ends are no configuration of this space: the first proposal checks
        except Exception as exc:  # noqa: BLE001 - user code: one line
            raise SpaceError(line(spec.path, f"space(trial) raised {type(exc).__name__}: {exc} with {where}",
                                   "fix the space function or the point")) from None
        if not isinstance(proposed, Mapping):
            raise SpaceError(line(spec.path, f"space(trial) returned {type(proposed).__name__}, not a dict",
                                   "return the trial's environment as a dict"))
        unknown = sorted(set(point) - set(trial.params))
        if unknown:
            close = difflib.get_close_matches(unknown[0], sorted(trial.params), n=1)
            fix = f"did you mean {close[0]}?" if close else \
                f"use the names space() suggests: {', '.join(sorted(trial.params)) or 'none'}"
            raise SpaceError(line(spec.path, f"{where} sets {unknown[0]}, which space(trial) does not suggest", fix))
        spec.trial_env(proposed)


def distributions(spec: SpaceSpec, quiet: bool = False) -> dict[str, BaseDistribution]:
    """The space's distributions, from one draw of `space(trial)` on a throwaway study (a sampler's view
    of the space before any trial exists). A space function that raises is the caller's to report, or
    with `quiet` gives none (the searcher's first real proposal then reports it in one line)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    probe = optuna.create_study(directions=["minimize", "minimize"]).ask()
    try:
        spec.space(probe)
    except Exception:  # noqa: BLE001 - user code
        if not quiet:
            raise
        return {}
    return dict(probe.distributions)


def _values(dist: BaseDistribution) -> list[Any] | None:
    """Every value a knob can take, if finitely many (choices, stepped numbers); None for a continuous range."""
    if isinstance(dist, CategoricalDistribution):
        return list(dist.choices)
    step = getattr(dist, "step", None)
    if not step or getattr(dist, "log", False):
        return None
    count = int(round((dist.high - dist.low) / step)) + 1
    values = [min(dist.low + i * step, dist.high) for i in range(count)]
    return [int(round(v)) for v in values] if isinstance(dist, IntDistribution) else [float(v) for v in values]


def space_size(dists: Mapping[str, BaseDistribution]) -> int | None:
    """How many configurations a space of these knobs holds; None if a knob is continuous (or none is known)."""
    if not dists:
        return None
    size = 1
    for dist in dists.values():
        values = _values(dist)
        if values is None:
            return None
        size *= len(values)
    return size


def all_configurations(dists: Mapping[str, BaseDistribution]) -> list[dict[str, Any]]:
    """Every configuration of a finite space (see space_size), in a fixed order."""
    names = list(dists)
    grids = [_values(dists[n]) or [] for n in names]
    return [dict(zip(names, combo)) for combo in itertools.product(*grids)]
