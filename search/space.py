"""Load a search-space file (`spaces/*.py`) into a `SpaceSpec`.

A space file is plain Python a user copies and edits. It must define
`space(trial)`: a define-by-run function that asks the Optuna trial for its
values and returns the environment of one training (names → values). Optional
module-level settings (all upper case):

- `SCRIPT`            training script to launch (default `pgolf/train_gpt.py`),
                      relative paths are taken from the current directory
- `FIXED_ENV`         environment every trial gets; values may use `{NAME}`
                      templates filled from the trial's final environment,
                      e.g. `"./data/datasets/fineweb10B_sp{VOCAB_SIZE}"`
- `BUDGET_BYTES`      artifact byte budget (default 16,000,000)
- `LIMITS`            the competition's limits, each an Optuna constraint (a trial over any
                      one is COMPLETE but infeasible, reason `over_<name>`): a dict of
                      `bytes_total` (the byte budget; same as BUDGET_BYTES), `train_seconds`,
                      `eval_seconds`, e.g. `{"bytes_total": 16_000_000, "train_seconds": 600,
                      "eval_seconds": 600}`; default: the byte budget alone
- `SCORE_LINE`        a regular expression the score line's first word must match in full,
                      for scripts `pgolf.logs`' score rule reads wrongly (default: the rule)
- `GPUS_PER_TRIAL`    GPUs one trial asks Ray for (default 8)
- `CPUS_PER_TRIAL`    CPUs one trial asks Ray for (default 1)
- `RESOURCES_PER_TRIAL` custom Ray resources one trial asks for, e.g. `{"h100_node": 1}` to place
                      trials only on nodes started with `ray start --resources='{"h100_node": 8}'`
- `POINTS_TO_EVALUATE` list of parameter dicts run first (e.g. the baseline)
- `PACK_SCRIPT`       True: trials run a self-extracting packed copy of SCRIPT (`pgolf.pack`,
                      written into the experiment folder as `train_gpt.py`), so the code
                      bytes counted, predicted and shipped by `search.promote` are the packed
                      ones (about 33 KB fewer for our trainer); default False
- `EXTRA_ENV_OK`      variable names the script reads in ways `search.knobs` cannot see; a
                      space setting any other name the script never reads stops before launch
- `SAMPLER`           `"gp"` (default): a Gaussian process whose proposals are only those the
                      byte predictor accepts (`search.gp_sampler`); `"tpe"`: multivariate TPE
- `ALLOW_REPEATS`     True: a proposal equal to a configuration trained already is trained again
                      (deliberate replicates); default False: it is told the known result
- `MAX_SAME_FAILURES` stop the search after this many failures in a row with the same
                      message (default 3; 0 never stops): the next trials would fail alike
- `TRIAL_TIMEOUT_SECONDS` None (default), or seconds after which a trial's
                      training is killed and the trial fails with reason
                      `timeout` (e.g. a hung collective holding 8 GPUs)
- `EARLY_STOPPING`    None, or a dict of ASHA settings (`grace_period`,
                      `reduction_factor`, `max_t`) to stop poor trials on
                      their intermediate `val_bpb`
- `PREDICT_BYTES`     callable env → predicted artifact bytes, used as is
                      (no learning, no margin: for an exact or trusted
                      predictor, e.g. `search.replay.table_predictor`)
- `EXPORT_FORMAT`     with PARAM_COUNT: the script's export as its log names it
                      (`"int6+zstd"`); read from the script's defaults by
                      `search.knobs.export_format` when absent. It gives the
                      script the records' size prior from its first proposal.
- `PARAM_COUNT`       callable env → parameter count (an int, or a dict of
                      ints summed) of a script whose model `pgolf.size`
                      cannot build: the search then fits bytes per parameter
                      from its completed trials (`pgolf.size.SizeLearner`)
                      and prunes with a margin from the fit's measured error.
                      Without either, `pgolf.size`'s calibrated predictor is
                      used, corrected from completed trials. PREDICT_BYTES
                      and PARAM_COUNT are mutually exclusive.
- the `--smoke` profile: `SMOKE_ENV` (overrides on top of everything, e.g.
  tiny iterations), `smoke_space(trial)` (a shrunk version of `space`),
  `SMOKE_BUDGET_BYTES`, `SMOKE_POINTS_TO_EVALUATE`, `SMOKE_SCRIPT`.
  With `--smoke` every trial runs as a plain CPU process (0 GPUs), DATA_PATH
  and TOKENIZER_PATH of FIXED_ENV are dropped and each trial gets the bundled
  corpus prepared for its `VOCAB_SIZE` (see `search.runner`), unless SMOKE_ENV
  names them.

Everything is checked here, before Ray starts; a problem raises `SpaceError`
with one line naming the file, the problem and the fix.
"""

from __future__ import annotations

import difflib
import importlib.util
import math
import os
import re
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Mapping

DEFAULT_SCRIPT = "pgolf/train_gpt.py"
DEFAULT_BUDGET_BYTES = 16_000_000
DEFAULT_GPUS_PER_TRIAL = 8

KNOWN_SETTINGS = {
    "SCRIPT", "FIXED_ENV", "BUDGET_BYTES", "GPUS_PER_TRIAL", "CPUS_PER_TRIAL", "RESOURCES_PER_TRIAL",
    "POINTS_TO_EVALUATE", "EARLY_STOPPING", "PREDICT_BYTES", "PARAM_COUNT", "EXPORT_FORMAT", "SMOKE_ENV",
    "SMOKE_BUDGET_BYTES", "SMOKE_POINTS_TO_EVALUATE", "SMOKE_SCRIPT", "TRIAL_TIMEOUT_SECONDS",
    "LIMITS", "SCORE_LINE", "MAX_SAME_FAILURES", "EXTRA_ENV_OK", "PACK_SCRIPT", "DOCS", "DOCS_VAL_DOCS",
    "FIDELITIES", "SMOKE_FIDELITIES", "PROMOTE_FRACTION", "TOP_RUNG_FRACTION", "SAMPLER", "ALLOW_REPEATS",
}
SAMPLERS = ("gp", "tpe")  # SAMPLER's values, the default first (search.study.make_sampler builds them)
LIMIT_NAMES = ("bytes_total", "train_seconds", "eval_seconds")
EARLY_STOPPING_KEYS = {"grace_period", "reduction_factor", "max_t"}


class SpaceError(ValueError):
    """A space file problem, as one line: `error: <file>: <problem> (<fix>)`."""


@dataclass(frozen=True)
class SpaceSpec:
    """One space file, resolved for a normal or a `--smoke` run."""

    path: Path
    space: Callable[[Any], Mapping[str, Any]]
    script: Path
    fixed_env: dict[str, str]
    budget_bytes: int
    gpus_per_trial: int
    cpus_per_trial: int
    points_to_evaluate: list[dict[str, Any]]
    smoke: bool
    early_stopping: dict[str, int] | None = None
    predict_bytes: Callable[[Mapping[str, str]], int] | None = None
    param_count: Callable[[Mapping[str, str]], Any] | None = None
    export_format: str | None = None  # EXPORT_FORMAT (`int6+zstd`): the external script's export, for its size prior
    smoke_env: dict[str, str] = field(default_factory=dict)
    trial_timeout_seconds: float | None = None
    limits: dict[str, float] = field(default_factory=dict)  # metric -> largest feasible value
    score_line: str | None = None
    extra_env_ok: frozenset[str] = frozenset()  # variables the script reads in ways a scan cannot see
    max_same_failures: int = 3  # stop the search after this many failures in a row with one message (0: never)
    base_dir: Path = field(default_factory=Path.cwd)  # relative paths in the env mean this folder
    pack_script: bool = False  # run (and count) a packed copy of the script (pgolf.pack)
    docs: Path | None = None  # DOCS: each vocab's tokenizer and shards are prepared from it during the search
    docs_val_docs: int | None = None  # DOCS_VAL_DOCS: its validation documents (None: the competition's 50,000)
    ladder: Any = None  # FIDELITIES: a search.ladder.Ladder, None for one fidelity
    resources: dict[str, float] = field(default_factory=dict)  # RESOURCES_PER_TRIAL: custom Ray resources
    sampler: str = SAMPLERS[0]  # SAMPLER
    allow_repeats: bool = False  # ALLOW_REPEATS: train a configuration again when proposed again

    def trial_env(self, proposed: Mapping[str, Any], fidelity: int | None = None) -> dict[str, str]:
        """The full environment of one trial: fixed, then proposed, then smoke overrides, then the
        rung's environment when the space has a ladder (`fidelity`: the rung).

        `{NAME}` templates in values are filled from that merged environment.
        Relative paths are made absolute from `base_dir` (where `search.run` started), since
        each training runs in its own trial folder.
        """
        env = {**self.fixed_env, **_stringify(proposed, self.path), **self.smoke_env}
        if self.ladder is not None and fidelity is not None:
            env.update(self.ladder.rungs[fidelity])
        filled = {}
        for key, value in env.items():
            try:
                filled[key] = value.format(**env) if "{" in value else value
            except (KeyError, IndexError, ValueError) as exc:
                raise SpaceError(_line(self.path, f"{key}={value!r} uses an unknown template {exc}",
                                       "template only names variables the trial's environment has"))
        return resolve_paths(filled, self.base_dir)


_PATH_SUFFIXES = ("_PATH", "_DIR", "_FILE")


def resolve_paths(env: Mapping[str, str], base: Path) -> dict[str, str]:
    """Make the relative paths of an environment absolute from `base`.

    A value is a path when it starts with `./` or `../`, when its variable is named `*_PATH`,
    `*_DIR` or `*_FILE`, or when it names something that exists under `base` (a file, a folder, or
    a glob pattern whose folder exists). Anything else (numbers, names) is left as it is.
    """
    out = {}
    for key, value in env.items():
        if value and not Path(value).is_absolute() and "://" not in value and (
                value.startswith(("./", "../")) or key.endswith(_PATH_SUFFIXES)
                or ("/" in value and ((base / value).exists() or (base / value).parent.is_dir()))):
            value = os.path.normpath(base / value)
        out[key] = value
    return out


def _line(path: Path, problem: str, fix: str) -> str:
    return f"error: {path}: {problem} ({fix})"


def _stringify(env: Mapping[str, Any], path: Path | None = None) -> dict[str, str]:
    """An environment's values as strings; anything but a number, string or bool is a SpaceError
    (None, a list or an object would reach the script as its Python repr)."""
    out = {}
    for key, value in env.items():
        if isinstance(value, bool):
            value = int(value)
        elif not isinstance(value, (str, int, float)) or (isinstance(value, float) and not math.isfinite(value)):
            raise SpaceError(_line(path or Path("space"), f"{key}={value!r} ({type(value).__name__}) is not a "
                                   "finite number, a string or a bool", f"return a plain value for {key}"))
        out[str(key)] = str(value)
    return out


def _import(path: Path) -> ModuleType:
    if not path.is_file():
        raise SpaceError(_line(path, "no such space file", "pass a path like spaces/tokenizer_width_depth.py"))
    name = f"_pgolf_space_{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise SpaceError(_line(path, "cannot be imported as Python", "give a .py file"))
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        raise SpaceError(_line(path, f"syntax error at line {exc.lineno}: {exc.msg}", "fix the Python syntax"))
    except Exception as exc:  # noqa: BLE001 - any error in user code becomes one line
        # the space file's own line (the last frame may be a library's, or missing under an import hook)
        frames = [f.lineno for f in traceback.extract_tb(exc.__traceback__) if Path(f.filename) == path]
        where = frames[-1] if frames else "?"
        raise SpaceError(_line(path, f"{type(exc).__name__} at line {where} while loading: {exc}",
                               "fix the space file"))
    sys.modules.setdefault(name, module)
    return module


def _int_setting(path: Path, module: ModuleType, name: str, default: int, minimum: int) -> int:
    value = getattr(module, name, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise SpaceError(_line(path, f"{name}={value!r} is not an integer >= {minimum}",
                               f"set {name} to an integer >= {minimum}"))
    return value


def _env_setting(path: Path, module: ModuleType, name: str) -> dict[str, str]:
    value = getattr(module, name, {})
    if not isinstance(value, Mapping) or not all(isinstance(k, str) and k for k in value):
        raise SpaceError(_line(path, f"{name} must be a dict of variable names to values",
                               f'e.g. {name} = {{"ITERATIONS": 200}}'))
    bad = [k for k, v in value.items() if not isinstance(v, (str, int, float, bool))]
    if bad:
        raise SpaceError(_line(path, f"{name}[{bad[0]!r}] is not a str, int, float or bool",
                               "give plain values"))
    return _stringify(value)


def _points_setting(path: Path, module: ModuleType, name: str, default: Any) -> list[dict[str, Any]]:
    value = getattr(module, name, default)
    if value is None:
        return []
    if not isinstance(value, (list, tuple)) or not all(isinstance(p, Mapping) for p in value):
        raise SpaceError(_line(path, f"{name} must be a list of dicts of parameter values",
                               f'e.g. {name} = [{{"NUM_LAYERS": 9}}]'))
    return [dict(p) for p in value]


def load_space(path: str | Path, smoke: bool = False) -> SpaceSpec:
    """Import and check a space file; raise `SpaceError` (one line) on any problem."""
    path = Path(path)
    if path.suffix != ".py":
        raise SpaceError(_line(path, "is not a .py file", "pass a Python space file, e.g. spaces/weight_decay.py"))
    module = _import(path)
    space_fn = getattr(module, "smoke_space", None) if smoke else None
    space_fn = space_fn or getattr(module, "space", None)
    if not callable(space_fn):
        raise SpaceError(_line(path, "defines no space(trial) function",
                               "add `def space(trial): return {...}` returning the trial's environment"))
    for name in dir(module):
        if name.isupper() and name.startswith(("SMOKE", "BUDGET", "GPUS", "CPUS", "POINTS", "FIXED",
                                               "SCRIPT", "EARLY", "PREDICT", "PARAM", "TRIAL", "LIMIT",
                                               "SCORE", "MAX_", "EXTRA", "PACK", "DOCS", "FIDEL",
                                               "PROMOTE", "TOP_RUNG")) and name not in KNOWN_SETTINGS:
            close = difflib.get_close_matches(name, sorted(KNOWN_SETTINGS), n=1)
            fix = f"did you mean {close[0]}?" if close else f"use one of {', '.join(sorted(KNOWN_SETTINGS))}"
            raise SpaceError(_line(path, f"unknown setting {name}", fix))

    script = getattr(module, "SMOKE_SCRIPT", None) if smoke else None
    script = script or getattr(module, "SCRIPT", DEFAULT_SCRIPT)
    if not isinstance(script, (str, Path)) or not Path(script).is_file():
        raise SpaceError(_line(path, f"SCRIPT={script!r} is not an existing file",
                               "point SCRIPT at a train_gpt.py, relative to where you run"))

    budget = _int_setting(path, module, "BUDGET_BYTES", DEFAULT_BUDGET_BYTES, 1)
    if smoke:
        budget = _int_setting(path, module, "SMOKE_BUDGET_BYTES", budget, 1)
    gpus = 0 if smoke else _int_setting(path, module, "GPUS_PER_TRIAL", DEFAULT_GPUS_PER_TRIAL, 0)
    if smoke:
        _int_setting(path, module, "GPUS_PER_TRIAL", DEFAULT_GPUS_PER_TRIAL, 0)  # still validated
    cpus = _int_setting(path, module, "CPUS_PER_TRIAL", 1, 1)
    if smoke:
        cpus = 1  # a smoke trial is one plain CPU process
    fixed_env = _env_setting(path, module, "FIXED_ENV")
    docs = getattr(module, "DOCS", None)
    if docs is not None and (not isinstance(docs, (str, Path)) or not Path(docs).is_file()):
        raise SpaceError(_line(path, f"DOCS={docs!r} is not an existing documents file",
                               "point DOCS at a JSONL file (one {\"text\": ...} per line, e.g. the competition's "
                               "docs_selected.jsonl), relative to where you run"))
    docs_val = getattr(module, "DOCS_VAL_DOCS", None)
    if docs_val is not None:
        docs_val = _int_setting(path, module, "DOCS_VAL_DOCS", 1, 1)
    if smoke or docs is not None:  # the runner prepares the data per vocab: the bundled corpus, or DOCS
        fixed_env = {k: v for k, v in fixed_env.items() if k not in ("DATA_PATH", "TOKENIZER_PATH")}
    smoke_env = _env_setting(path, module, "SMOKE_ENV")
    points = _points_setting(path, module, "POINTS_TO_EVALUATE", [])
    if smoke:
        points = _points_setting(path, module, "SMOKE_POINTS_TO_EVALUATE", points)

    timeout = getattr(module, "TRIAL_TIMEOUT_SECONDS", None)
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float))
                                or not math.isfinite(timeout) or timeout <= 0):
        raise SpaceError(_line(path, f"TRIAL_TIMEOUT_SECONDS={timeout!r} is not a positive number of seconds",
                               "use None (no limit) or e.g. 1800"))

    early = getattr(module, "EARLY_STOPPING", None)
    if early is not None:
        if not isinstance(early, Mapping) or not set(early) <= EARLY_STOPPING_KEYS or not all(
                isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in early.values()):
            raise SpaceError(_line(path, f"EARLY_STOPPING={early!r} is not a dict of ASHA settings",
                                   "use None or e.g. {'grace_period': 2, 'reduction_factor': 2}"))
        early = dict(early)

    predict = getattr(module, "PREDICT_BYTES", None)
    if predict is not None and not callable(predict):
        raise SpaceError(_line(path, "PREDICT_BYTES is not callable", "set it to a function env -> bytes"))
    param_count = getattr(module, "PARAM_COUNT", None)
    if param_count is not None and not callable(param_count):
        raise SpaceError(_line(path, "PARAM_COUNT is not callable", "set it to a function env -> parameter count"))
    if predict is not None and param_count is not None:
        raise SpaceError(_line(path, "sets both PREDICT_BYTES and PARAM_COUNT",
                               "keep PREDICT_BYTES for a predictor used as is, or PARAM_COUNT to learn "
                               "bytes per parameter from trials, not both"))

    export_format = getattr(module, "EXPORT_FORMAT", None)
    if export_format is not None:
        from pgolf.size.learner import parse_format

        if not isinstance(export_format, str) or parse_format(export_format) is None:
            raise SpaceError(_line(path, f"EXPORT_FORMAT={export_format!r} is not int<bits>+<compressor>",
                                   'write it as the script\'s log names its export, e.g. "int6+zstd" or "int8+zlib"'))
        if param_count is None:
            raise SpaceError(_line(path, "sets EXPORT_FORMAT without PARAM_COUNT",
                                   "add PARAM_COUNT = lambda env: <parameters>: the prior is parameters x the "
                                   "format's bytes per value"))

    limits = _limits_setting(path, module, budget, smoke)
    budget = int(limits["bytes_total"])
    score_line = getattr(module, "SCORE_LINE", None)
    if score_line is not None:
        try:
            if not isinstance(score_line, str):
                raise TypeError("not a string")
            re.compile(score_line)
        except (re.error, TypeError) as exc:
            raise SpaceError(_line(path, f"SCORE_LINE={score_line!r} is not a regular expression ({exc})",
                                   'give the score line\'s first word, e.g. "final_int6_sliding_window_exact"'))

    pack_script = getattr(module, "PACK_SCRIPT", False)
    if not isinstance(pack_script, bool):
        raise SpaceError(_line(path, f"PACK_SCRIPT={pack_script!r} is not True or False", "set PACK_SCRIPT = True"))
    from search.ladder import load_ladder

    ladder = load_ladder(path, module, smoke)
    if ladder is not None and early is not None:
        raise SpaceError(_line(path, "sets both FIDELITIES and EARLY_STOPPING",
                               "keep FIDELITIES: a ladder already stops the weaker trainings early"))
    return SpaceSpec(path=path, space=space_fn, ladder=ladder, script=Path(script), fixed_env=fixed_env, pack_script=pack_script,
                     budget_bytes=budget, gpus_per_trial=gpus, cpus_per_trial=cpus,
                     points_to_evaluate=points, smoke=smoke, early_stopping=early,
                     predict_bytes=predict, param_count=param_count, export_format=export_format, smoke_env=smoke_env if smoke else {},
                     trial_timeout_seconds=None if timeout is None else float(timeout), limits=limits,
                     score_line=score_line,
                     max_same_failures=_int_setting(path, module, "MAX_SAME_FAILURES", 3, 0),
                     extra_env_ok=_names_setting(path, module, "EXTRA_ENV_OK"),
                     docs=None if docs is None else Path(docs).absolute(), docs_val_docs=docs_val,
                     resources=_resources_setting(path, module), sampler=_sampler_setting(path, module),
                     allow_repeats=_bool_setting(path, module, "ALLOW_REPEATS"))


def _sampler_setting(path: Path, module: ModuleType) -> str:
    value = getattr(module, "SAMPLER", SAMPLERS[0])
    if value not in SAMPLERS:
        raise SpaceError(_line(path, f"SAMPLER={value!r} is not a sampler of this search",
                               f"use {' or '.join(repr(s) for s in SAMPLERS)}"))
    return value


def _bool_setting(path: Path, module: ModuleType, name: str) -> bool:
    value = getattr(module, name, False)
    if not isinstance(value, bool):
        raise SpaceError(_line(path, f"{name}={value!r} is not True or False", f"set {name} = True"))
    return value


def _resources_setting(path: Path, module: ModuleType) -> dict[str, float]:
    value = getattr(module, "RESOURCES_PER_TRIAL", {})
    if not isinstance(value, Mapping) or not all(
            isinstance(k, str) and k and k not in ("CPU", "GPU") and isinstance(v, (int, float))
            and not isinstance(v, bool) and v > 0 for k, v in value.items()):
        raise SpaceError(_line(path, f"RESOURCES_PER_TRIAL={value!r} is not a dict of custom resource names to "
                               "positive amounts", 'e.g. RESOURCES_PER_TRIAL = {"h100_node": 1} (CPUs and GPUs '
                               "have their own settings)"))
    return {k: float(v) for k, v in value.items()}


def _names_setting(path: Path, module: ModuleType, name: str) -> frozenset[str]:
    value = getattr(module, name, ())
    if isinstance(value, str) or not all(isinstance(v, str) for v in value):
        raise SpaceError(_line(path, f"{name} must be a set of variable names", f'e.g. {name} = {{"MY_VAR"}}'))
    return frozenset(value)


def _limits_setting(path: Path, module: ModuleType, budget: int, smoke: bool) -> dict[str, float]:
    """LIMITS with the byte budget in it; BUDGET_BYTES (or SMOKE_BUDGET_BYTES) and LIMITS agree."""
    value = getattr(module, "LIMITS", None)
    if value is None:
        return {"bytes_total": budget}
    if not isinstance(value, Mapping) or not value:
        raise SpaceError(_line(path, "LIMITS must be a dict of limits",
                               'e.g. LIMITS = {"bytes_total": 16_000_000, "train_seconds": 600, "eval_seconds": 600}'))
    limits: dict[str, float] = {}
    for name, limit in value.items():
        if name not in LIMIT_NAMES:
            close = difflib.get_close_matches(str(name), LIMIT_NAMES, n=1)
            raise SpaceError(_line(path, f"LIMITS has an unknown limit {name!r}",
                                   f"did you mean {close[0]}?" if close else f"use {', '.join(LIMIT_NAMES)}"))
        if isinstance(limit, bool) or not isinstance(limit, (int, float)) or not math.isfinite(limit) or limit <= 0:
            raise SpaceError(_line(path, f"LIMITS[{name!r}]={limit!r} is not a positive number", "give e.g. 600"))
        limits[name] = float(limit)
    if "bytes_total" not in limits:
        limits["bytes_total"] = budget
    elif smoke and hasattr(module, "SMOKE_BUDGET_BYTES"):
        limits["bytes_total"] = budget  # the smoke profile's own budget
    elif hasattr(module, "BUDGET_BYTES") and int(limits["bytes_total"]) != budget:
        raise SpaceError(_line(path, f"BUDGET_BYTES={budget} and LIMITS['bytes_total']={limits['bytes_total']:g} "
                               "disagree", "set the byte budget in one place"))
    limits["bytes_total"] = int(limits["bytes_total"])
    return limits


def check_points(spec: SpaceSpec) -> None:
    """Run space(trial) once per POINTS_TO_EVALUATE entry (its values, the first choice or the low end
    for the rest; with no points, once on those alone) before anything launches: a key the space never
    suggests would be dropped by Optuna without a word, and a value the environment cannot hold (None,
    a list, an object) would reach every trial as its Python repr."""
    import warnings

    import optuna

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
                raise SpaceError(_line(spec.path, f"space(trial) prunes {where}", "drop or fix the point")) from None
            continue  # the low ends are no configuration of this space: the first proposal checks
        except Exception as exc:  # noqa: BLE001 - user code: one line
            raise SpaceError(_line(spec.path, f"space(trial) raised {type(exc).__name__}: {exc} with {where}",
                                   "fix the space function or the point")) from None
        if not isinstance(proposed, Mapping):
            raise SpaceError(_line(spec.path, f"space(trial) returned {type(proposed).__name__}, not a dict",
                                   "return the trial's environment as a dict"))
        unknown = sorted(set(point) - set(trial.params))
        if unknown:
            close = difflib.get_close_matches(unknown[0], sorted(trial.params), n=1)
            fix = f"did you mean {close[0]}?" if close else \
                f"use the names space() suggests: {', '.join(sorted(trial.params)) or 'none'}"
            raise SpaceError(_line(spec.path, f"{where} sets {unknown[0]}, which space(trial) does not suggest", fix))
        spec.trial_env(proposed)
