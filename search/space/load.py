"""Loading a space file (`spaces/*.py`) into a `SpaceSpec`: every setting checked before Ray starts.

The settings a space file may set are listed in `search.space.spec`; a problem raises `SpaceError`
with one line naming the file, the problem and the fix.
"""

from __future__ import annotations

import difflib
import importlib.util
import math
import re
import sys
import traceback
from pathlib import Path
from types import ModuleType
from typing import Any, Mapping

from search.core.errors import line
from search.core.limits import DEFAULT_BUDGET_BYTES, LIMIT_NAMES
from search.space.ladder import load_ladder
from search.space.spec import DEFAULT_GPUS_PER_TRIAL, DEFAULT_SCRIPT, SAMPLERS, SpaceError, SpaceSpec, stringify

KNOWN_SETTINGS = {
    "SCRIPT", "FIXED_ENV", "BUDGET_BYTES", "GPUS_PER_TRIAL", "CPUS_PER_TRIAL", "RESOURCES_PER_TRIAL",
    "POINTS_TO_EVALUATE", "EARLY_STOPPING", "PREDICT_BYTES", "PARAM_COUNT", "EXPORT_FORMAT", "SMOKE_ENV",
    "SMOKE_BUDGET_BYTES", "SMOKE_POINTS_TO_EVALUATE", "SMOKE_SCRIPT", "TRIAL_TIMEOUT_SECONDS",
    "LIMITS", "SCORE_LINE", "MAX_SAME_FAILURES", "EXTRA_ENV_OK", "PACK_SCRIPT", "DOCS", "DOCS_VAL_DOCS",
    "FIDELITIES", "SMOKE_FIDELITIES", "PROMOTE_FRACTION", "TOP_RUNG_FRACTION", "SAMPLER", "ALLOW_REPEATS",
}
EARLY_STOPPING_KEYS = {"grace_period", "reduction_factor", "max_t"}


def _import(path: Path) -> ModuleType:
    if not path.is_file():
        raise SpaceError(line(path, "no such space file", "pass a path like spaces/tokenizer_width_depth.py"))
    name = f"_pgolf_space_{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise SpaceError(line(path, "cannot be imported as Python", "give a .py file"))
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        raise SpaceError(line(path, f"syntax error at line {exc.lineno}: {exc.msg}", "fix the Python syntax"))
    except Exception as exc:  # noqa: BLE001 - any error in user code becomes one line
        # the space file's own line (the last frame may be a library's, or missing under an import hook)
        frames = [f.lineno for f in traceback.extract_tb(exc.__traceback__) if Path(f.filename) == path]
        where = frames[-1] if frames else "?"
        raise SpaceError(line(path, f"{type(exc).__name__} at line {where} while loading: {exc}",
                               "fix the space file"))
    sys.modules.setdefault(name, module)
    return module


def _int_setting(path: Path, module: ModuleType, name: str, default: int, minimum: int) -> int:
    value = getattr(module, name, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise SpaceError(line(path, f"{name}={value!r} is not an integer >= {minimum}",
                               f"set {name} to an integer >= {minimum}"))
    return value


def _env_setting(path: Path, module: ModuleType, name: str) -> dict[str, str]:
    value = getattr(module, name, {})
    if not isinstance(value, Mapping) or not all(isinstance(k, str) and k for k in value):
        raise SpaceError(line(path, f"{name} must be a dict of variable names to values",
                               f'e.g. {name} = {{"ITERATIONS": 200}}'))
    bad = [k for k, v in value.items() if not isinstance(v, (str, int, float, bool))]
    if bad:
        raise SpaceError(line(path, f"{name}[{bad[0]!r}] is not a str, int, float or bool",
                               "give plain values"))
    return stringify(value)


def _points_setting(path: Path, module: ModuleType, name: str, default: Any) -> list[dict[str, Any]]:
    value = getattr(module, name, default)
    if value is None:
        return []
    if not isinstance(value, (list, tuple)) or not all(isinstance(p, Mapping) for p in value):
        raise SpaceError(line(path, f"{name} must be a list of dicts of parameter values",
                               f'e.g. {name} = [{{"NUM_LAYERS": 9}}]'))
    return [dict(p) for p in value]


def load_space(path: str | Path, smoke: bool = False) -> SpaceSpec:
    """Import and check a space file; raise `SpaceError` (one line) on any problem."""
    path = Path(path)
    if path.suffix != ".py":
        raise SpaceError(line(path, "is not a .py file", "pass a Python space file, e.g. spaces/weight_decay.py"))
    module = _import(path)
    space_fn = getattr(module, "smoke_space", None) if smoke else None
    space_fn = space_fn or getattr(module, "space", None)
    if not callable(space_fn):
        raise SpaceError(line(path, "defines no space(trial) function",
                               "add `def space(trial): return {...}` returning the trial's environment"))
    for name in dir(module):
        if name.isupper() and name.startswith(("SMOKE", "BUDGET", "GPUS", "CPUS", "POINTS", "FIXED",
                                               "SCRIPT", "EARLY", "PREDICT", "PARAM", "TRIAL", "LIMIT",
                                               "SCORE", "MAX_", "EXTRA", "PACK", "DOCS", "FIDEL",
                                               "PROMOTE", "TOP_RUNG")) and name not in KNOWN_SETTINGS:
            close = difflib.get_close_matches(name, sorted(KNOWN_SETTINGS), n=1)
            fix = f"did you mean {close[0]}?" if close else f"use one of {', '.join(sorted(KNOWN_SETTINGS))}"
            raise SpaceError(line(path, f"unknown setting {name}", fix))

    script = getattr(module, "SMOKE_SCRIPT", None) if smoke else None
    script = script or getattr(module, "SCRIPT", DEFAULT_SCRIPT)
    if not isinstance(script, (str, Path)) or not Path(script).is_file():
        raise SpaceError(line(path, f"SCRIPT={script!r} is not an existing file",
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
        raise SpaceError(line(path, f"DOCS={docs!r} is not an existing documents file",
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
        raise SpaceError(line(path, f"TRIAL_TIMEOUT_SECONDS={timeout!r} is not a positive number of seconds",
                               "use None (no limit) or e.g. 1800"))

    early = getattr(module, "EARLY_STOPPING", None)
    if early is not None:
        if not isinstance(early, Mapping) or not set(early) <= EARLY_STOPPING_KEYS or not all(
                isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in early.values()):
            raise SpaceError(line(path, f"EARLY_STOPPING={early!r} is not a dict of ASHA settings",
                                   "use None or e.g. {'grace_period': 2, 'reduction_factor': 2}"))
        early = dict(early)

    predict = getattr(module, "PREDICT_BYTES", None)
    if predict is not None and not callable(predict):
        raise SpaceError(line(path, "PREDICT_BYTES is not callable", "set it to a function env -> bytes"))
    param_count = getattr(module, "PARAM_COUNT", None)
    if param_count is not None and not callable(param_count):
        raise SpaceError(line(path, "PARAM_COUNT is not callable", "set it to a function env -> parameter count"))
    if predict is not None and param_count is not None:
        raise SpaceError(line(path, "sets both PREDICT_BYTES and PARAM_COUNT",
                               "keep PREDICT_BYTES for a predictor used as is, or PARAM_COUNT to learn "
                               "bytes per parameter from trials, not both"))

    export_format = getattr(module, "EXPORT_FORMAT", None)
    if export_format is not None:
        from pgolf.size.learner import parse_format

        if not isinstance(export_format, str) or parse_format(export_format) is None:
            raise SpaceError(line(path, f"EXPORT_FORMAT={export_format!r} is not int<bits>+<compressor>",
                                   'write it as the script\'s log names its export, e.g. "int6+zstd" or "int8+zlib"'))
        if param_count is None:
            raise SpaceError(line(path, "sets EXPORT_FORMAT without PARAM_COUNT",
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
            raise SpaceError(line(path, f"SCORE_LINE={score_line!r} is not a regular expression ({exc})",
                                   'give the score line\'s first word, e.g. "final_int6_sliding_window_exact"'))

    pack_script = getattr(module, "PACK_SCRIPT", False)
    if not isinstance(pack_script, bool):
        raise SpaceError(line(path, f"PACK_SCRIPT={pack_script!r} is not True or False", "set PACK_SCRIPT = True"))
    ladder = load_ladder(path, module, smoke)
    if ladder is not None and early is not None:
        raise SpaceError(line(path, "sets both FIDELITIES and EARLY_STOPPING",
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
        raise SpaceError(line(path, f"SAMPLER={value!r} is not a sampler of this search",
                               f"use {' or '.join(repr(s) for s in SAMPLERS)}"))
    return value


def _bool_setting(path: Path, module: ModuleType, name: str) -> bool:
    value = getattr(module, name, False)
    if not isinstance(value, bool):
        raise SpaceError(line(path, f"{name}={value!r} is not True or False", f"set {name} = True"))
    return value


def _resources_setting(path: Path, module: ModuleType) -> dict[str, float]:
    value = getattr(module, "RESOURCES_PER_TRIAL", {})
    if not isinstance(value, Mapping) or not all(
            isinstance(k, str) and k and k not in ("CPU", "GPU") and isinstance(v, (int, float))
            and not isinstance(v, bool) and v > 0 for k, v in value.items()):
        raise SpaceError(line(path, f"RESOURCES_PER_TRIAL={value!r} is not a dict of custom resource names to "
                               "positive amounts", 'e.g. RESOURCES_PER_TRIAL = {"h100_node": 1} (CPUs and GPUs '
                               "have their own settings)"))
    return {k: float(v) for k, v in value.items()}


def _names_setting(path: Path, module: ModuleType, name: str) -> frozenset[str]:
    value = getattr(module, name, ())
    if isinstance(value, str) or not all(isinstance(v, str) for v in value):
        raise SpaceError(line(path, f"{name} must be a set of variable names", f'e.g. {name} = {{"MY_VAR"}}'))
    return frozenset(value)


def _limits_setting(path: Path, module: ModuleType, budget: int, smoke: bool) -> dict[str, float]:
    """LIMITS with the byte budget in it; BUDGET_BYTES (or SMOKE_BUDGET_BYTES) and LIMITS agree."""
    value = getattr(module, "LIMITS", None)
    if value is None:
        return {"bytes_total": budget}
    if not isinstance(value, Mapping) or not value:
        raise SpaceError(line(path, "LIMITS must be a dict of limits",
                               'e.g. LIMITS = {"bytes_total": 16_000_000, "train_seconds": 600, "eval_seconds": 600}'))
    limits: dict[str, float] = {}
    for name, limit in value.items():
        if name not in LIMIT_NAMES:
            close = difflib.get_close_matches(str(name), LIMIT_NAMES, n=1)
            raise SpaceError(line(path, f"LIMITS has an unknown limit {name!r}",
                                   f"did you mean {close[0]}?" if close else f"use {', '.join(LIMIT_NAMES)}"))
        if isinstance(limit, bool) or not isinstance(limit, (int, float)) or not math.isfinite(limit) or limit <= 0:
            raise SpaceError(line(path, f"LIMITS[{name!r}]={limit!r} is not a positive number", "give e.g. 600"))
        limits[name] = float(limit)
    if "bytes_total" not in limits:
        limits["bytes_total"] = budget
    elif smoke and hasattr(module, "SMOKE_BUDGET_BYTES"):
        limits["bytes_total"] = budget  # the smoke profile's own budget
    elif hasattr(module, "BUDGET_BYTES") and int(limits["bytes_total"]) != budget:
        raise SpaceError(line(path, f"BUDGET_BYTES={budget} and LIMITS['bytes_total']={limits['bytes_total']:g} "
                               "disagree", "set the byte budget in one place"))
    limits["bytes_total"] = int(limits["bytes_total"])
    return limits
