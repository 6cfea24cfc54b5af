"""The search's byte predictors, one per rung of a fidelity ladder (one without), and their files.

The driver builds them, `bench/` reuses them so that benchmarks prune exactly as a search does (see
docs/design.md, "Pruning before launch"). What the searcher asks of one is `BytePredictor`: a
`pgolf.size.SizeLearner` (it learns from completed trials, with a margin from its measured error) or a
space's PREDICT_BYTES used as is (`FixedPredictor`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Mapping, Protocol

from search.core.errors import OneLineError
from search.core.layout import learner_file
from search.space.knobs import export_format
from search.space.spec import SpaceSpec


class LearnerError(OneLineError, ValueError):
    """A saved size learner that cannot be loaded (one line naming the fix)."""


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


def make_predictors(spec: SpaceSpec, folder: Path, resume: bool) -> tuple[list, list[Path]]:
    """One byte predictor per rung of the space's ladder (one without a ladder) and their files."""
    rungs = range(len(spec.ladder.rungs)) if spec.ladder is not None else [None]
    return ([make_predictor(spec, folder, resume, rung) for rung in rungs],
            [folder / learner_file(rung) for rung in rungs])


def regime_for(spec: SpaceSpec):
    """The size regime a search prices with: trained weights (fitted on the competition's records) at
    full scale, the CPU calibration with --smoke (short CPU trainings)."""
    if spec.smoke:
        return None
    from pgolf.size import load_trained

    try:
        return load_trained()
    except ValueError as exc:
        raise LearnerError(f"error: {exc}") from None


def export_format_for(spec: SpaceSpec) -> str | None:
    """An external script's export (`int6+zstd`): the space's EXPORT_FORMAT, else read from the script."""
    if spec.param_count is None:
        return None
    if spec.export_format is not None:
        return spec.export_format
    return export_format(spec.script, spec.fixed_env)


def make_predictor(spec: SpaceSpec, folder: Path, resume: bool, rung: int | None = None):
    """The search's byte predictor: the space's PREDICT_BYTES as is, else a `pgolf.size.SizeLearner`
    (our trainer's predictor in the regime of `regime_for`, or a bytes-per-parameter fit over the
    space's PARAM_COUNT with the records' prior for its export format), reloaded from
    `size_learner.json` (a ladder's rung k: `size_learner.rung<k>.json`) on --resume so that what it
    learned is kept."""
    if spec.predict_bytes is not None:
        return spec.predict_bytes
    from pgolf.size import SizeLearner

    path = folder / learner_file(rung)
    regime, export = regime_for(spec), export_format_for(spec)
    if resume and path.is_file():
        try:
            learner = SizeLearner.load(path, spec.param_count, regime=regime, export_format=export)
        except (ValueError, KeyError, TypeError) as exc:
            raise LearnerError(f"error: {path} cannot be loaded: {exc} (delete it: the search relearns from new "
                               "trials)") from None
        learner.script = str(spec.script)
        return learner
    return SizeLearner(script=spec.script, param_count=spec.param_count, regime=regime, export_format=export)


def margin_line(predictor) -> str:
    """How the search prunes: the predictor and its current safety margin."""
    if not hasattr(predictor, "observations"):
        return "size margin: 0.0% (the space's PREDICT_BYTES, used as is)"
    regime = "CPU calibration (--smoke)" if predictor.regime is None else \
        f"trained weights, fitted on the competition's records (nu {predictor.regime.nu:.1f})"
    if predictor.param_count is None:
        how = f"pgolf.size predictor, {regime}"
    elif predictor.prior_ready:
        how = (f"bytes-per-parameter fit over PARAM_COUNT; before 2 trials the records' prior for "
               f"{predictor.export_format}")
    else:
        how = ("bytes-per-parameter fit over PARAM_COUNT, no pruning before it has trials (set EXPORT_FORMAT, "
               "e.g. \"int6+zstd\", for the records' prior)" if predictor.regime is not None else
               "bytes-per-parameter fit over PARAM_COUNT, no pruning before it has trials")
    return (f"size margin: {predictor.margin_fraction:.1%} ({how}; learned from "
            f"{len(predictor.observations)} completed trial(s)): pruned when predicted + margin > budget")
