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
                      byte predictor accepts (`search.engine.gp_sampler`); `"tpe"`: multivariate TPE
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
                      predictor, e.g. `search.runner.replay.table_predictor`)
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

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from search.core.errors import OneLineError, line
from search.core.limits import DEFAULT_BUDGET_BYTES, LIMIT_NAMES  # noqa: F401 (a space's defaults)

DEFAULT_SCRIPT = "pgolf/train_gpt.py"
DEFAULT_GPUS_PER_TRIAL = 8
SAMPLERS = ("gp", "tpe")  # SAMPLER's values, the default first (search.engine.samplers.make_sampler builds them)


class SpaceError(OneLineError, ValueError):
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
    ladder: Any = None  # FIDELITIES: a search.space.ladder.Ladder, None for one fidelity
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
        env = {**self.fixed_env, **stringify(proposed, self.path), **self.smoke_env}
        if self.ladder is not None and fidelity is not None:
            env.update(self.ladder.rungs[fidelity])
        filled = {}
        for key, value in env.items():
            try:
                filled[key] = value.format(**env) if "{" in value else value
            except (KeyError, IndexError, ValueError) as exc:
                raise SpaceError(line(self.path, f"{key}={value!r} uses an unknown template {exc}",
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


def stringify(env: Mapping[str, Any], path: Path | None = None) -> dict[str, str]:
    """An environment's values as strings; anything but a number, string or bool is a SpaceError
    (None, a list or an object would reach the script as its Python repr)."""
    out = {}
    for key, value in env.items():
        if isinstance(value, bool):
            value = int(value)
        elif not isinstance(value, (str, int, float)) or (isinstance(value, float) and not math.isfinite(value)):
            raise SpaceError(line(path or Path("space"), f"{key}={value!r} ({type(value).__name__}) is not a "
                                   "finite number, a string or a bool", f"return a plain value for {key}"))
        out[str(key)] = str(value)
    return out
