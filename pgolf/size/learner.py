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
RECENT_ERRORS = 3              # the margin also covers the last few errors as they happened
PRIOR_WEIGHT = 0.25            # ridge weight pulling each correction toward 1 (a quarter observation)
MIN_FIT_TRIALS = 2             # external scripts: no prediction (no pruning) before this many trials
BASE_CACHE_SIZE = 4096          # calibrated predictions kept per learner


@dataclass
class Observation:
    """One completed trial: what was predicted before it ran and what it measured."""

    env: dict[str, str]
    measured: int
    predicted: int | None
    parts: dict[str, float] = field(default_factory=dict)  # uncorrected bytes per correction key
    fixed: float = 0.0                                    # code (and container) bytes: not corrected
    params: float = 0.0                                   # external scripts: parameter count


def parse_format(label: str) -> tuple[int, str] | None:
    """`int6+zstd` / `int6+zlib-9` -> (6, 'zstd:22' / 'zlib:9'); None for anything else."""
    import re

    import pgolf.train_gpt as tg

    m = re.fullmatch(r"int([4-8])\+(zlib|zstd|lzma|brotli)(?:-(\d+))?", label.strip())
    if not m:
        return None
    name = m.group(2)
    return int(m.group(1)), f"{name}:{m.group(3) or tg.COMPRESSORS[name][2]}"


class SizeLearner:
    """A predictor that learns from completed trials, with a margin derived from its measured error.

    - Our trainer: `predict` = `predict()` x one correction per (storage, compressor:level) (e.g.
      `int6|zstd:22`), refitted by ridge least squares on relative errors at every `observe`. With a
      `regime` (`pgolf.size.trained.TrainedRegime`: a full-scale search) `predict()` prices trained
      weights, without one (`--smoke`, CPU trainings) the CPU calibration's.
    - External script (`param_count` given): bytes_total = code + a x params + b, fitted by least
      squares over completed trials. Before MIN_FIT_TRIALS trials: with a regime and the script's
      `export_format` (`int6+zstd`), the records' prior (params x the format's trained rate);
      otherwise None (no pruning).
    - `margin_fraction`: the prior's measured margin until MIN_ERRORS out-of-sample errors exist (the
      regime's `margin` for our trainer, its `external_margin` for an external script's prior,
      PRIOR_MARGIN_FRACTION with the CPU calibration), then MARGIN_SAFETY x the largest |error| of
      the last ERROR_WINDOW trials each predicted by the fit made without it (leave one out) and of
      the last RECENT_ERRORS errors as they happened (floor MARGIN_FLOOR): an error of either sign,
      since the corrections flip the sign of the next ones.
      Errors the predictor made before it learned (`errors`, kept for the record) no longer widen
      the margin once it has corrected itself: what it pruned is then re-judged (`search.engine.samplers`).
    - `prune(env, budget)`: True when prediction + margin > budget.
    """

    def __init__(self, script: str | Path | None = None,
                 param_count: Callable[[Mapping[str, str]], int | Mapping[str, int]] | None = None,
                 calibration: Calibration | None = None, regime=None, export_format: str | None = None):
        self.script = str(script) if script is not None else None
        self.param_count = param_count
        self.calibration = calibration
        self.regime = regime
        self.export_format = export_format
        if export_format is not None and parse_format(export_format) is None:
            raise ValueError(f"export format {export_format!r} is not int<bits>+<compressor> (e.g. int6+zstd, "
                             "int8+zlib: the words a record's log prints after 'Serialized model')")
        self.observations: list[Observation] = []
        self.errors: list[float] = []
        self.corrections: dict[str, float] = {}
        self.fit: tuple[float, float] | None = None  # external: (bytes per param, intercept)
        self.loo_errors: list[float] = []  # the last ERROR_WINDOW trials, each predicted without itself
        self._base: dict[tuple, Prediction] = {}  # calibrated predictions by environment (pure: learning corrects them)

    # -- prediction
    def _params(self, env: Mapping[str, str]) -> float:
        n = self.param_count(env)
        total = sum(n.values()) if isinstance(n, Mapping) else n
        if not isinstance(total, (int, float)) or total < 0:
            raise ValueError(f"PARAM_COUNT returned {n!r}; it must return a non-negative int (or a dict of them)")
        return float(total)

    @property
    def prior_ready(self) -> bool:
        """An external script's records prior is available (a regime and the script's export format)."""
        return self.param_count is not None and self.regime is not None and self.export_format is not None

    def predict(self, env: Mapping[str, str]) -> Prediction | None:
        if self.param_count is not None:
            params = self._params(env)
            code = code_bytes(self.script)
            if self.fit is not None:
                a, b = self.fit
                model, how = int(round(a * params + b)), "fit"
            elif self.prior_ready:
                bits, ckey = parse_format(self.export_format)
                model, how = self.regime.prior_model_bytes(params, bits, ckey), f"prior {self.export_format}"
            else:
                return None
            return Prediction(total_bytes=code + model, code_bytes=code, model_bytes=model,
                              groups={"other": model}, params={"other": int(params)}, compressor=how)
        return self._corrected(self._base_prediction(env))

    def _base_prediction(self, env: Mapping[str, str]) -> Prediction:
        """The calibrated prediction, before this learner's corrections: a function of the environment alone,
        kept (a sampler judging hundreds of candidates asks for the same ones after every trial)."""
        key = tuple(sorted((k, str(v)) for k, v in env.items()))
        if key not in self._base:
            if len(self._base) >= BASE_CACHE_SIZE:
                self._base.pop(next(iter(self._base)))
            self._base[key] = predict(env, self.script, self.calibration, regime=self.regime)
        return self._base[key]

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
    def prior_margin(self) -> float:
        """The margin before MIN_ERRORS trials: what the prior's error was measured to be."""
        if self.regime is None:
            return PRIOR_MARGIN_FRACTION
        return self.regime.external_margin if self.param_count is not None else self.regime.margin

    @property
    def margin_fraction(self) -> float:
        if len(self.loo_errors) < MIN_ERRORS:
            return self.prior_margin
        # and the latest errors as they happened (RECENT_ERRORS): the leave-one-out errors of a few
        # trials can be small by luck, the last predictions' misses are the learned predictor's own
        worst = max([abs(e) for e in self.loo_errors] + [abs(e) for e in self.learned_errors[-RECENT_ERRORS:]],
                    default=0.0)
        return max(MARGIN_FLOOR, MARGIN_SAFETY * worst)

    @property
    def learned_errors(self) -> list[float]:
        """The relative errors of predictions made after the learner had learned (corrections from a trial,
        an external script's fit from MIN_FIT_TRIALS): the prior's misses are no measure of the fit's."""
        first = MIN_FIT_TRIALS if self.param_count is not None else 1
        return [(o.measured - o.predicted) / o.predicted for o in self.observations[first:] if o.predicted]

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
        base = None if self.param_count is not None else self._base_prediction(env)
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

    def _solve(self, obs: list[Observation]):
        """The fit over `obs`: an external script's (bytes per param, intercept) or None (fewer than
        MIN_FIT_TRIALS), else our trainer's corrections {storage|compressor: factor}."""
        import numpy as np

        if self.param_count is not None:
            if len(obs) < MIN_FIT_TRIALS:
                return None
            x = np.array([o.params for o in obs])
            y = np.array([o.measured - o.fixed for o in obs], dtype=float)
            w = 1.0 / np.maximum(y, 1.0)  # relative errors
            cols = [x, np.ones_like(x)] if np.ptp(x) > 0 else [x]  # an intercept once two sizes are seen
            a = np.stack(cols, axis=1) * w[:, None]
            coef = np.linalg.lstsq(a, y * w, rcond=None)[0]
            return float(coef[0]), float(coef[1]) if len(coef) > 1 else 0.0
        keys = sorted({k for o in obs for k in o.parts})
        if not keys:
            return {}
        rows, rhs = [], []
        for o in obs:  # sum_k c_k part_k + fixed = measured, scaled to relative error
            rows.append([o.parts.get(k, 0.0) / o.measured for k in keys])
            rhs.append((o.measured - o.fixed) / o.measured)
        lam = math.sqrt(PRIOR_WEIGHT)
        # prior sum_k share_k (c_k - 1)^2: one observation moves every key by the same factor; keys
        # whose shares differ between trials are then told apart by the data
        root = np.sqrt(np.maximum(np.array(rows).mean(axis=0), 1e-9))
        a = np.vstack([np.array(rows), np.diag(lam * root)])
        b = np.concatenate([np.array(rhs), lam * root])
        coef = np.linalg.lstsq(a, b, rcond=None)[0]
        return {k: float(c) for k, c in zip(keys, coef)}

    def _predicted(self, o: Observation, solution) -> float | None:
        """What the learner fitted as `solution` predicts for observation `o`'s trial."""
        if self.param_count is not None:
            if solution is not None:
                return o.fixed + solution[0] * o.params + solution[1]
            if self.prior_ready:
                bits, ckey = parse_format(self.export_format)
                return o.fixed + self.regime.prior_model_bytes(o.params, bits, ckey)
            return None
        return o.fixed + sum(solution.get(k, 1.0) * v for k, v in o.parts.items())

    def _refit(self) -> None:
        solution = self._solve(self.observations)
        if self.param_count is not None:
            self.fit = solution
        else:
            self.corrections = solution
        # the margin's errors: each recent trial predicted by the fit made without it (leave one out),
        # so they describe the predictor as it stands, not the errors it made before it learned
        recent = range(max(0, len(self.observations) - ERROR_WINDOW), len(self.observations))
        self.loo_errors = []
        for i in recent:
            o = self.observations[i]
            predicted = self._predicted(o, self._solve(self.observations[:i] + self.observations[i + 1:]))
            if predicted:
                self.loo_errors.append((o.measured - predicted) / predicted)

    # -- persistence
    def to_json(self) -> dict:
        return {"script": self.script, "external": self.param_count is not None,
                "regime": "cpu" if self.regime is None else f"trained nu {self.regime.nu:.2f}",
                "export_format": self.export_format,
                "observations": [asdict(o) for o in self.observations], "errors": self.errors,
                "corrections": self.corrections, "fit": self.fit, "loo_errors": self.loo_errors,
                "margin_fraction": self.margin_fraction}

    def save(self, path: str | Path) -> None:
        tmp = Path(str(path) + ".tmp")
        tmp.write_text(json.dumps(self.to_json(), indent=1) + "\n", encoding="utf-8")
        tmp.replace(path)

    @classmethod
    def load(cls, path: str | Path, param_count=None, calibration: Calibration | None = None, regime=None,
             export_format: str | None = None) -> "SizeLearner":
        """A learner restored from `save()` (pass the same param_count for an external script, and the
        same regime: a learner's corrections are relative to the predictor it was made with)."""
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        if data.get("external") and param_count is None:
            raise ValueError(f"{path} was saved for an external script; pass its PARAM_COUNT function")
        saved = str(data.get("regime", "cpu")).split(" ")[0]
        if saved != ("cpu" if regime is None else "trained"):
            raise ValueError(f"{path} learned over the {saved} predictor, this search uses the "
                             f"{'cpu' if regime is None else 'trained'} one (resume with the same --smoke setting)")
        self = cls(data.get("script"), param_count, calibration, regime, export_format)
        self.observations = [Observation(**o) for o in data.get("observations", [])]
        self.errors = list(data.get("errors", []))
        self._refit()
        return self
