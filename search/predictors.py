"""The search's byte predictors, one per rung of a fidelity ladder (one without), and their files.

`search.run` builds them, `bench/` reuses them so that benchmarks prune exactly
as a search does (see docs/design.md, "Pruning before launch").
"""

from __future__ import annotations

from pathlib import Path

from search.space import SpaceSpec

LEARNER_FILE = "size_learner.json"


class LearnerError(ValueError):
    """A saved size learner that cannot be loaded (one line naming the fix)."""


def learner_file(rung: int | None = None) -> str:
    """`size_learner.json` (one fidelity, or a ladder's rung 0), `size_learner.rung<k>.json` above it."""
    return LEARNER_FILE if not rung else LEARNER_FILE.replace(".json", f".rung{rung}.json")


def make_predictors(spec: SpaceSpec, folder: Path, resume: bool) -> tuple[list, list[Path]]:
    """One byte predictor per rung of the space's ladder (one without a ladder) and their files."""
    rungs = range(len(spec.ladder.rungs)) if spec.ladder is not None else [None]
    return ([make_predictor(spec, folder, resume, rung) for rung in rungs],
            [folder / learner_file(rung) for rung in rungs])


def make_predictor(spec: SpaceSpec, folder: Path, resume: bool, rung: int | None = None):
    """The search's byte predictor: the space's PREDICT_BYTES as is, else a `pgolf.size.SizeLearner`
    (calibrated for our trainer, or a bytes-per-parameter fit over the space's PARAM_COUNT), reloaded
    from `size_learner.json` (a ladder's rung k: `size_learner.rung<k>.json`) on --resume so that what
    it learned is kept."""
    if spec.predict_bytes is not None:
        return spec.predict_bytes
    from pgolf.size import SizeLearner

    path = folder / learner_file(rung)
    if resume and path.is_file():
        try:
            learner = SizeLearner.load(path, spec.param_count)
        except (ValueError, KeyError, TypeError) as exc:
            raise LearnerError(f"error: {path} cannot be loaded: {exc} (delete it: the search relearns from new "
                               "trials)") from None
        learner.script = str(spec.script)
        return learner
    return SizeLearner(script=spec.script, param_count=spec.param_count)


def margin_line(predictor) -> str:
    """How the search prunes: the predictor and its current safety margin."""
    if not hasattr(predictor, "observations"):
        return "size margin: 0.0% (the space's PREDICT_BYTES, used as is)"
    how = ("bytes-per-parameter fit over PARAM_COUNT, no pruning before it has trials"
           if predictor.param_count is not None else "pgolf.size calibrated predictor")
    return (f"size margin: {predictor.margin_fraction:.1%} ({how}; learned from "
            f"{len(predictor.observations)} completed trial(s)): pruned when predicted + margin > budget")
