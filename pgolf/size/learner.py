"""`SizeLearner`: the search's predictor, corrected from completed trials, with a margin from its
measured error (or a bytes-per-parameter fit for a script pgolf.size cannot build)."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Mapping

from pgolf.size.calibration import Calibration
from pgolf.size.prediction import Prediction, code_bytes, predict



PRIOR_MARGIN_FRACTION = 0.05   # before MIN_ERRORS observations (bench's largest |error| 0.87 %, smoke's 1.28 %)
MARGIN_SAFETY = 1.5            # margin = safety x the largest recent |error|
MARGIN_FLOOR = 0.002           # never below 0.2 %
MIN_ERRORS = 3
ERROR_WINDOW = 20
PRIOR_WEIGHT = 0.25            # ridge weight pulling each correction toward 1 (a quarter observation)
MIN_FIT_TRIALS = 2             # external scripts: no prediction (no pruning) before this many trials


@dataclass
class Observation:
    """One completed trial: what was predicted before it ran and what it measured."""

    env: dict[str, str]
    measured: int
    predicted: int | None
    parts: dict[str, float] = field(default_factory=dict)  # uncorrected bytes per correction key
    fixed: float = 0.0                                    # code (and container) bytes: not corrected
    params: float = 0.0                                   # external scripts: parameter count


class SizeLearner:
    """A predictor that learns from completed trials, with a margin derived from its measured error.

    - Our trainer: `predict` = calibrated `predict()` x one correction per (storage, compressor:level)
      (e.g. `int6|zstd:22`), refitted by ridge least squares on relative errors at every `observe`.
    - External script (`param_count` given): bytes_total = code + a x params + b, fitted by least
      squares over completed trials; `predict` returns None (no pruning) before MIN_FIT_TRIALS trials.
    - `margin_fraction`: PRIOR_MARGIN_FRACTION until MIN_ERRORS out-of-sample errors exist, then
      MARGIN_SAFETY x the largest |error| of the last ERROR_WINDOW trials (floor MARGIN_FLOOR): an
      error of either sign, since the corrections flip the sign of the next ones.
    - `prune(env, budget)`: True when prediction + margin > budget.
    """

    def __init__(self, script: str | Path | None = None,
                 param_count: Callable[[Mapping[str, str]], int | Mapping[str, int]] | None = None,
                 calibration: Calibration | None = None):
        self.script = str(script) if script is not None else None
        self.param_count = param_count
        self.calibration = calibration
        self.observations: list[Observation] = []
        self.errors: list[float] = []
        self.corrections: dict[str, float] = {}
        self.fit: tuple[float, float] | None = None  # external: (bytes per param, intercept)

    # -- prediction
    def _params(self, env: Mapping[str, str]) -> float:
        n = self.param_count(env)
        total = sum(n.values()) if isinstance(n, Mapping) else n
        if not isinstance(total, (int, float)) or total < 0:
            raise ValueError(f"PARAM_COUNT returned {n!r}; it must return a non-negative int (or a dict of them)")
        return float(total)

    def predict(self, env: Mapping[str, str]) -> Prediction | None:
        if self.param_count is not None:
            if self.fit is None:
                return None
            a, b = self.fit
            params = self._params(env)
            code = code_bytes(self.script)
            model = int(round(a * params + b))
            return Prediction(total_bytes=code + model, code_bytes=code, model_bytes=model,
                              groups={"other": model}, params={"other": int(params)}, compressor="fit")
        return self._corrected(predict(env, self.script, self.calibration))

    def _corrected(self, base: Prediction) -> Prediction:
        """The calibrated prediction with this learner's corrections applied to its parts."""
        tensors = sum(self.corrections.get(f"{k}|{base.compressor}", 1.0) * v for k, v in base.parts.items())
        base_tensors = base.model_bytes - base.container_bytes
        ratio = tensors / base_tensors if base_tensors else 1.0
        model_i = base.container_bytes + int(round(tensors))
        return Prediction(total_bytes=base.code_bytes + model_i, code_bytes=base.code_bytes, model_bytes=model_i,
                          groups={k: int(round(v * ratio)) for k, v in base.groups.items()},
                          params=base.params, parts=base.parts, compressor=base.compressor,
                          container_bytes=base.container_bytes)

    def predict_bytes(self, env: Mapping[str, str]) -> int | None:
        p = self.predict(env)
        return None if p is None else p.total_bytes

    # -- margin
    @property
    def margin_fraction(self) -> float:
        if len(self.errors) < MIN_ERRORS:
            return PRIOR_MARGIN_FRACTION
        worst = max(abs(e) for e in self.errors[-ERROR_WINDOW:])
        return max(MARGIN_FLOOR, MARGIN_SAFETY * worst)

    def margin_bytes(self, predicted: int) -> int:
        return int(math.ceil(predicted * self.margin_fraction))

    def prune(self, env: Mapping[str, str], budget: int) -> tuple[bool, int | None, int]:
        """(prune?, predicted bytes or None, margin bytes): prune when predicted + margin > budget."""
        predicted = self.predict_bytes(env)
        if predicted is None:
            return False, None, 0
        margin = self.margin_bytes(predicted)
        return predicted + margin > budget, predicted, margin

    # -- learning
    def observe(self, env: Mapping[str, str], measured_bytes_total: int) -> float | None:
        """Record a completed trial's measured bytes_total; returns the relative error
        (measured - predicted) / predicted of the prediction made before this observation."""
        env = {k: str(v) for k, v in env.items()}
        base = None if self.param_count is not None else predict(env, self.script, self.calibration)
        before = self.predict_bytes(env) if base is None else self._corrected(base).total_bytes
        err = None if before is None else (measured_bytes_total - before) / before
        if err is not None:
            self.errors.append(err)
        if self.param_count is not None:
            obs = Observation(env, int(measured_bytes_total), before, fixed=code_bytes(self.script),
                              params=self._params(env))
        else:
            obs = Observation(env, int(measured_bytes_total), before, fixed=base.code_bytes + base.container_bytes,
                              parts={f"{k}|{base.compressor}": v for k, v in base.parts.items()})
        self.observations.append(obs)
        self._refit()
        return err

    def _refit(self) -> None:
        import numpy as np

        if self.param_count is not None:
            obs = self.observations
            if len(obs) < MIN_FIT_TRIALS:
                self.fit = None
                return
            x = np.array([o.params for o in obs])
            y = np.array([o.measured - o.fixed for o in obs], dtype=float)
            w = 1.0 / np.maximum(y, 1.0)  # relative errors
            cols = [x, np.ones_like(x)] if np.ptp(x) > 0 else [x]  # an intercept once two sizes are seen
            a = np.stack(cols, axis=1) * w[:, None]
            coef = np.linalg.lstsq(a, y * w, rcond=None)[0]
            self.fit = (float(coef[0]), float(coef[1]) if len(coef) > 1 else 0.0)
            return
        keys = sorted({k for o in self.observations for k in o.parts})
        if not keys:
            return
        rows, rhs = [], []
        for o in self.observations:  # sum_k c_k part_k + fixed = measured, scaled to relative error
            rows.append([o.parts.get(k, 0.0) / o.measured for k in keys])
            rhs.append((o.measured - o.fixed) / o.measured)
        lam = math.sqrt(PRIOR_WEIGHT)
        # prior sum_k share_k (c_k - 1)^2: one observation moves every key by the same factor; keys
        # whose shares differ between trials are then told apart by the data
        root = np.sqrt(np.maximum(np.array(rows).mean(axis=0), 1e-9))
        a = np.vstack([np.array(rows), np.diag(lam * root)])
        b = np.concatenate([np.array(rhs), lam * root])
        coef = np.linalg.lstsq(a, b, rcond=None)[0]
        self.corrections = {k: float(c) for k, c in zip(keys, coef)}

    # -- persistence
    def to_json(self) -> dict:
        return {"script": self.script, "external": self.param_count is not None,
                "observations": [asdict(o) for o in self.observations], "errors": self.errors,
                "corrections": self.corrections, "fit": self.fit, "margin_fraction": self.margin_fraction}

    def save(self, path: str | Path) -> None:
        tmp = Path(str(path) + ".tmp")
        tmp.write_text(json.dumps(self.to_json(), indent=1) + "\n", encoding="utf-8")
        tmp.replace(path)

    @classmethod
    def load(cls, path: str | Path, param_count=None, calibration: Calibration | None = None) -> "SizeLearner":
        """A learner restored from `save()` (pass the same param_count for an external script)."""
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        if data.get("external") and param_count is None:
            raise ValueError(f"{path} was saved for an external script; pass its PARAM_COUNT function")
        self = cls(data.get("script"), param_count, calibration)
        self.observations = [Observation(**o) for o in data.get("observations", [])]
        self.errors = list(data.get("errors", []))
        self._refit()
        return self
