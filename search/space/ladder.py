"""A space's fidelity ladder: `FIDELITIES` (rungs of environment, cheapest first), `PROMOTE_FRACTION`
and `TOP_RUNG_FRACTION`, read and checked from the space file.

New proposals train at rung 0; the best fraction of each rung by Pareto rank is promoted to the next
(`search.engine.ladder` runs the promotions); only the top rung's trainings are results. A rung may set
`GPUS_PER_TRIAL` (fewer GPUs on a cheap rung). `TOP_RUNG_FRACTION` sends that share of new proposals to
the top rung at once (Hyperband's bracket without early stopping).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Mapping, Sequence

from search.core.errors import line
from search.space.spec import SpaceError, stringify

RUNG_GPUS = "GPUS_PER_TRIAL"  # the one key of a rung that is not an environment variable
DEFAULT_PROMOTE_FRACTION = 1 / 3


@dataclass(frozen=True)
class Ladder:
    """The rungs of a space (environment overlays, cheapest first) and the fraction promoted."""

    rungs: tuple[dict[str, str], ...]
    gpus: tuple[int | None, ...]     # per rung GPUS_PER_TRIAL, None: the space's
    fraction: float = DEFAULT_PROMOTE_FRACTION
    direct: float = 0.0              # TOP_RUNG_FRACTION: share of new proposals trained at the top rung at once

    def starts_at_top(self, proposals_before: int) -> bool:
        """Whether the next new proposal skips the cheap rungs: every 1/direct-th one, deterministically
        (Hyperband's bracket that starts at full budget, for configurations the cheap rungs misrank)."""
        return math.floor((proposals_before + 1) * self.direct + 1e-9) > math.floor(proposals_before * self.direct + 1e-9)

    @property
    def top(self) -> int:
        return len(self.rungs) - 1

    def describe(self) -> str:
        steps = [r.get("ITERATIONS") for r in self.rungs]
        shown = " -> ".join(s if s else f"rung {i}" for i, s in enumerate(steps))
        direct = f", {self.direct:.0%} of new proposals straight to the top" if self.direct else ""
        return (f"{len(self.rungs)} rungs ({shown}{' steps' if all(steps) else ''}), best {self.fraction:.0%} "
                f"promoted{direct}")


def load_ladder(path: Path, module: ModuleType, smoke: bool) -> Ladder | None:
    """FIDELITIES (SMOKE_FIDELITIES under --smoke) and PROMOTE_FRACTION; None without a ladder.

    A smoke run never uses FIDELITIES itself: its full-scale rungs would override the smoke
    environment's tiny step counts."""
    name = "SMOKE_FIDELITIES" if smoke else "FIDELITIES"
    value = getattr(module, name, None)
    fraction = getattr(module, "PROMOTE_FRACTION", DEFAULT_PROMOTE_FRACTION)
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction < 1:
        raise SpaceError(line(path, f"PROMOTE_FRACTION={fraction!r} is not a fraction between 0 and 1",
                               "e.g. PROMOTE_FRACTION = 1/3: the best third of each rung moves up"))
    direct = getattr(module, "TOP_RUNG_FRACTION", 0.0)
    if isinstance(direct, bool) or not isinstance(direct, (int, float)) or not 0 <= direct < 1:
        raise SpaceError(line(path, f"TOP_RUNG_FRACTION={direct!r} is not a fraction in [0, 1)",
                               "e.g. TOP_RUNG_FRACTION = 0.25: every fourth new proposal trains at the top rung"))
    if value is None:
        return None
    example = '[{"ITERATIONS": 600}, {"ITERATIONS": 4950}]'
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Sequence) or len(value) < 2 \
            or not all(isinstance(r, Mapping) for r in value):
        raise SpaceError(line(path, f"{name} must be a list of at least two environments, cheapest first",
                               f"e.g. {name} = {example}"))
    rungs, gpus = [], []
    for i, rung in enumerate(value):
        rung = dict(rung)
        n = rung.pop(RUNG_GPUS, None)
        if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 0):
            raise SpaceError(line(path, f"{name}[{i}]['{RUNG_GPUS}']={n!r} is not a GPU count", "give e.g. 2"))
        rungs.append(stringify(rung, path))
        gpus.append(n)
    if any(rungs[i] == rungs[i + 1] and gpus[i] == gpus[i + 1] for i in range(len(rungs) - 1)):
        raise SpaceError(line(path, f"{name} has two equal rungs in a row", "make each rung longer than the last"))
    return Ladder(rungs=tuple(rungs), gpus=tuple(gpus), fraction=float(fraction), direct=float(direct))
