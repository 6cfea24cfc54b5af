"""python -m search.promote: rerun one trial with new seeds and write a record folder.

A search trial is one seed; a leaderboard record needs several seeds and a
significant gain of at least 0.005 nats over the current record (p < 0.01).
This reruns the trial's exact environment through the same Ray runner and
resources as the search, tests the gain, and writes the submission folder
(`README.md`, `submission.json`, the counted `train_gpt.py`, one log per seed).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import re
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Sequence

from pgolf.logs import ScoresError, record_scores
from search.core.cost import Device, hours_text
from search.core.layout import ENV_FILE, EXPERIMENT_FILE, TRIALS_DIR
from search.core.limits import DEFAULT_BUDGET_BYTES, time_limits
from search.records.config import LEADERBOARD_ALPHA, RULES, PromoteConfig, PromoteError
from search.records.folder import write_record
from search.records.seeds import collect, read_reproductions, run_seeds
from search.records.significance import SignificanceError, parse_seeds
from search.records.stats import judge
from search.review.analysis import analyse, load_experiment
from search.review.report import ParetoError
from search.runner.metrics import RUNNER_KEYS
from search.space.spec import resolve_paths
from search.store.settings import read_experiment, top_rung
from search.store.trials_csv import lower_rung

DEFAULT_OUT = Path("records/track_10min_16mb")
UPSTREAM_DEFAULT_SEED = 1337
RERUN_DROPS = RUNNER_KEYS + ("RUN_ID",)  # a rerun gets its own: the runner's keys, and each seed's RUN_ID
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def _git_user() -> str:
    try:
        out = subprocess.run(["git", "config", "user.name"], capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _camel(text: str) -> str:
    parts = re.split(r"[^A-Za-z0-9]+", text)
    return "".join(p[:1].upper() + p[1:] for p in parts if p)


def pick_seeds(count: int, first: int, avoid: int | None) -> list[int]:
    """`count` consecutive seeds from `first`, skipping the trial's own seed."""
    seeds, s = [], first
    while len(seeds) < count:
        if s != avoid:
            seeds.append(s)
        s += 1
    return seeds


def resolve(args: argparse.Namespace, today: dt.date | None = None) -> PromoteConfig:
    """Check the inputs and resolve the trial's exact environment; no training yet."""
    exp_dir = Path(args.experiment)
    if not (exp_dir / EXPERIMENT_FILE).is_file():
        raise PromoteError(f"{exp_dir} has no experiment.json; pass an experiment folder such as results/<name>")
    try:
        meta = asdict(read_experiment(exp_dir))
    except ValueError as exc:
        raise PromoteError(str(exc).removeprefix("error: ")) from None
    env_path = exp_dir / TRIALS_DIR / str(args.trial) / ENV_FILE
    if not env_path.is_file():
        raise PromoteError(f"trial {args.trial} of {exp_dir} has no {env_path.relative_to(exp_dir)}; "
                           f"pick a launched trial (see python -m search.pareto {exp_dir})")
    problem = lower_rung(exp_dir, args.trial, top_rung(meta))  # a ladder's cheap rungs make no record
    if problem:
        raise PromoteError(f"{problem}; promote a top-rung trial (see python -m search.pareto {exp_dir})")
    if args.seeds < 1:
        raise PromoteError(f"--seeds must be at least 1, got {args.seeds}")
    if args.cpus_per_trial < 1:
        raise PromoteError(f"--cpus-per-trial must be at least 1, got {args.cpus_per_trial}")
    if args.against is not None and not (math.isfinite(args.against) and args.against > 0):
        raise PromoteError(f"--against must be the record's val_bpb (a positive number), got {args.against}")
    against_seeds, against_source = _against(args)
    if not 0 < args.alpha < 1:
        raise PromoteError(f"--alpha {args.alpha} must be between 0 and 1")
    rule = args.rule or ("leaderboard" if against_seeds else "readme")
    if rule == "leaderboard" and not against_seeds:
        raise PromoteError("--rule leaderboard needs the previous record's seeds: pass --against-record DIR "
                           "or --against-seeds v1,v2,...")
    if args.address and (args.num_cpus is not None or args.num_gpus is not None):
        raise PromoteError("--num-cpus/--num-gpus size the embedded cluster; drop them with --address")
    smoke = bool(args.smoke)
    if smoke and not meta.get("smoke"):
        raise PromoteError(f"--smoke needs a smoke experiment, and {exp_dir} was searched without --smoke; "
                           "drop --smoke to rerun on GPUs")
    smoke = smoke or bool(meta.get("smoke"))
    script = Path(meta.get("script") or "pgolf/train_gpt.py")
    if not script.is_file():
        raise PromoteError(f"the experiment's script {script} does not exist here; run from the folder the search ran in")
    trial_env = json.loads(env_path.read_text())
    # paths relative to where the search ran (experiments from before trials ran in their own folders)
    env = resolve_paths({str(k): str(v) for k, v in trial_env.items() if k not in RERUN_DROPS}, Path.cwd())
    # the trial's own seed; unset means the script's default, 1337 upstream and in pgolf/train_gpt.py
    original_seed = int(env["SEED"]) if env.get("SEED", "").lstrip("-").isdigit() else UPSTREAM_DEFAULT_SEED
    seeds = pick_seeds(args.seeds, args.first_seed, original_seed)

    name = args.name or f"{_camel(str(meta.get('name') or exp_dir.name))}Trial{args.trial}"
    if not NAME_RE.match(name):
        raise PromoteError(f"--name {name!r} has characters a folder name should not; use letters, digits, '.', '_' or '-'")
    day = (today or dt.datetime.now(dt.timezone.utc).date()).isoformat()
    record_dir = Path(args.out) / f"{day}_{name}"
    if record_dir.exists():
        raise PromoteError(f"{record_dir} already exists and is never overwritten; pass another --name or remove the folder")

    changed: dict[str, str] = {}
    trial_bytes_code = trial_hours = None
    try:  # trials.csv only adds context here: the env.json is what reruns the trial
        experiment = load_experiment(exp_dir)
        point = next((t for t in analyse([experiment]).trials if t.number == args.trial), None)
        row = next((r for r in experiment.rows if str(r.get("number")) == str(args.trial)), {})
        if point is not None:
            changed = point.changed
            if point.state != "COMPLETE":
                print(f"note: trial {args.trial} is {point.state} in the search ({point.reason or 'no reason'}); "
                      "rerunning it anyway", file=sys.stderr)
        if (row.get("bytes_code") or "").strip():
            trial_bytes_code = int(float(row["bytes_code"]))
        trial_hours = point.hours if point is not None else None
    except (ParetoError, ValueError):
        pass

    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return PromoteConfig(
        experiment_dir=exp_dir, trial=args.trial, seeds=seeds, script=script, env=env,
        gpus_per_trial=0 if smoke else int(meta.get("gpus_per_trial") or 0),
        resources={str(k): float(v) for k, v in dict(meta.get("resources") or {}).items()},
        cpus_per_trial=args.cpus_per_trial, smoke=smoke,
        budget_bytes=int(meta.get("budget_bytes") or DEFAULT_BUDGET_BYTES),
        limits=time_limits(meta.get("limits")),
        score_line=meta.get("score_line"),
        record_dir=record_dir, work_dir=(exp_dir / "promote" / f"trial{args.trial}-{stamp}").resolve(),
        against_bpb=args.against, author=args.author or _git_user(), github_id=args.github_id or "unknown",
        name=name, blurb=args.blurb or "", hardware=args.hardware, experiment_name=str(meta.get("name") or exp_dir.name),
        changed=changed, trial_bytes_code=trial_bytes_code, rule=rule, against_seeds=against_seeds,
        against_source=against_source, alpha=args.alpha, trial_hours=trial_hours,
        reproductions=[r for folder in args.reproductions for r in read_reproductions(Path(folder), meta.get("score_line"))],
    )


def _against(args: argparse.Namespace) -> tuple[dict[str, float], str]:
    """The previous record's per-seed val_bpb (--against-record's submission.json or logs, or
    --against-seeds) and where they were read; empty without either."""
    try:
        if args.against_record:
            scores = record_scores(Path(args.against_record))
            return scores.val_bpb, f"{args.against_record}, {scores.source}"
        if args.against_seeds:
            return parse_seeds(args.against_seeds).val_bpb, "--against-seeds"
    except (ScoresError, SignificanceError) as exc:
        raise PromoteError(str(exc)) from None
    return {}, ""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m search.promote", description=__doc__.split("\n")[0])
    p.add_argument("experiment", help="experiment folder, results/<name>")
    p.add_argument("--trial", type=int, required=True, help="trial number to promote (see python -m search.pareto)")
    p.add_argument("--seeds", type=int, default=3, help="how many new seeds to run (default 3)")
    p.add_argument("--first-seed", type=int, default=1, help="seeds are consecutive from here, skipping the trial's own")
    p.add_argument("--against", type=float, default=None,
                   help="val_bpb of the current record to beat by 0.005 nats (the readme rule; default: the mean of "
                        "--against-record/--against-seeds)")
    p.add_argument("--against-record", default=None,
                   help="the previous record's folder: its per-seed scores (submission.json, else its logs)")
    p.add_argument("--against-seeds", default=None, help="the previous record's per-seed val_bpb, comma-separated")
    p.add_argument("--rule", choices=RULES, default=None,
                   help="the rule the record flag follows; both are computed and reported (default: leaderboard "
                        "with --against-record/--against-seeds, else readme)")
    p.add_argument("--alpha", type=float, default=LEADERBOARD_ALPHA,
                   help=f"the leaderboard rule's threshold (default {LEADERBOARD_ALPHA})")
    p.add_argument("--reproductions", action="append", default=[], metavar="DIR",
                   help="a folder of logs of the same configuration run elsewhere: judged with our seeds")
    p.add_argument("--out", default=str(DEFAULT_OUT), help=f"records track folder (default {DEFAULT_OUT})")
    p.add_argument("--name", default=None, help="submission name; the folder is YYYY-MM-DD_<name>")
    p.add_argument("--author", default=None, help="author (default: git config user.name)")
    p.add_argument("--github-id", default=None, help="GitHub id of the author")
    p.add_argument("--blurb", default=None, help="one-paragraph description (default: generated)")
    p.add_argument("--hardware", default=None, help="hardware line (default: from the seeds' metrics)")
    p.add_argument("--smoke", action="store_true", help="CPU rerun of a smoke experiment's trial")
    p.add_argument("--cpus-per-trial", type=int, default=1, help="CPUs Ray reserves per seed (default 1)")
    p.add_argument("--address", default=None, help="join this Ray cluster (e.g. auto or HEAD:6379) instead of starting one")
    p.add_argument("--num-cpus", type=int, default=None, help="CPUs of the embedded cluster (default: all)")
    p.add_argument("--num-gpus", type=int, default=None, help="GPUs of the embedded cluster (default: detected; logical GPUs are fine)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    try:
        cfg = resolve(args)
        script_bytes = cfg.script.read_bytes()
        print(f"promoting trial {cfg.trial} of {cfg.experiment_dir} with seeds {cfg.seeds} "
              f"({'smoke, CPU' if cfg.smoke else f'{cfg.gpus_per_trial} GPU(s) per seed'}); runs in {cfg.work_dir}",
              file=sys.stderr)
        device = Device(cfg.gpus_per_trial, cfg.cpus_per_trial)
        if cfg.trial_hours is not None:
            print(f"expected cost: {len(cfg.seeds)} seed(s) x the trial's {hours_text(cfg.trial_hours)} {device.unit} "
                  f"= {hours_text(len(cfg.seeds) * cfg.trial_hours)} {device.label}", file=sys.stderr)
        run_seeds(cfg, args.address, args.num_cpus, args.num_gpus)
        own = collect(cfg)
        spent = [h for r in own if (h := device.hours(r.metrics)) is not None]
        print(f"cost: {hours_text(sum(spent))} {device.label} for {len(spent)} seed(s)", file=sys.stderr)
        results = own + cfg.reproductions
        judgement = judge(results, cfg.rule, cfg.against_bpb, cfg.against_seeds, cfg.against_source, cfg.alpha)
        folder = write_record(cfg, results, judgement, script_bytes, argv)
    except PromoteError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    sub = json.loads((folder / "submission.json").read_text())
    verdict = "record" if sub["record"] else f"non-record ({sub['non_record_reason']})"
    tests = sub["tests"]
    print(f"leaderboard p={_p(tests['leaderboard']['p_value'])}  readme p={_p(tests['readme']['p_value'])}  "
          f"(the record flag follows --rule {sub['rule']})")
    print(f"wrote {folder}: mean val_bpb {sub['val_bpb']:.6f} over {len(results)} seeds, "
          f"std {sub['val_bpb_std']}: {verdict}")
    return 0


def _p(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"
