"""python -m search.run SPACE: a multi-objective, budget-constrained search.

Optuna proposes configurations (objectives `val_bpb` and `bytes_total`, the
byte budget as a constraint), Ray Tune launches each feasible one as a full
training (`search.runner.trainable.train_trial`), over-budget proposals are pruned before
launch. Everything lands in `results/<name>/` (see docs/design.md); the study
in `study.db` is the source of truth, which is what `--resume` continues from.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Sequence

from search.core.errors import OneLineError
from search.core.layout import PREP_LOG
from search.engine.options import (DEFAULT_NUM_SAMPLES, DEFAULT_RESULTS, MAX_NODE_LOSSES, SMOKE_NUM_SAMPLES,
                                   RunOptions, RunSummary)


class _Parser(argparse.ArgumentParser):
    """argparse, with a usage error in one line."""

    def error(self, message: str):
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def parse_args(argv: Sequence[str] | None = None) -> RunOptions:
    p = _Parser(prog="python -m search.run", description=__doc__.splitlines()[0])
    p.add_argument("space", type=Path, help="space file, e.g. spaces/tokenizer_width_depth.py")
    p.add_argument("--smoke", action="store_true", help="the space's tiny CPU profile on the bundled corpus")
    p.add_argument("--name", help="experiment name: results/<name>/ (default: the space file's name)")
    p.add_argument("--num-samples", type=int, help="trainings to launch in total, pruned proposals not counted "
                   f"(default {DEFAULT_NUM_SAMPLES}, {SMOKE_NUM_SAMPLES} with --smoke, or the stored one on --resume)")
    p.add_argument("--max-concurrent", type=int, help="trials at once (default: as many as the cluster fits)")
    p.add_argument("--address", help="join an existing Ray cluster (e.g. auto or HEAD:6379) instead of starting one")
    p.add_argument("--resume", action="store_true", help="continue the interrupted experiment of the same --name")
    p.add_argument("--force-space", action="store_true", help="with --resume: continue although the space file "
                   "(or its budget, limits) changed; the change is recorded in experiment.json")
    p.add_argument("--seed", type=int, help="seed of the Optuna sampler")
    p.add_argument("--results-dir", type=Path, default=DEFAULT_RESULTS, help="where experiments live (default results/)")
    p.add_argument("--num-cpus", type=int, help="CPUs of the embedded cluster (default: all)")
    p.add_argument("--num-gpus", type=int, help="GPUs of the embedded cluster (default: detected)")
    p.add_argument("--gpu-hour-price", type=float, metavar="DOLLARS",
                   help="price of one GPU-hour (of one CPU-hour with no GPUs): costs are shown in money too "
                        "(8xH100 at ~$21-24/h is ~3)")
    p.add_argument("--warm-start", type=Path, nargs="+", default=[], metavar="EXPERIMENT",
                   help="import the finished trials of earlier experiments (results/<old> …) that fit the space "
                        "before sampling; they are not counted as this experiment's trainings")
    p.add_argument("--replay", type=Path, nargs="+", metavar="TABLE.csv", help="replay a results table instead of "
                   "training (bench/grid_table.csv, or a past results/<name>/trials.csv; see search.runner.replay); with a "
                   "fidelity ladder one table per rung, cheapest first")
    p.add_argument("--max-node-losses", type=int, default=MAX_NODE_LOSSES, metavar="N",
                   help="stop the search after N trials lost with their Ray node in this run (each runs again "
                        f"elsewhere; default {MAX_NODE_LOSSES}, 0: never stop)")
    p.add_argument("--sync-also", nargs="+", default=[], metavar="GLOB",
                   help="trial files over 8 MiB to bring back from the node that ran them too (e.g. '*.ptz'); "
                        "by default they stay there, listed in the trial folder's left_on_node.json")
    a = p.parse_args(argv)
    if a.max_node_losses < 0:
        p.error("--max-node-losses must be 0 (never stop) or more")
    for flag in ("num_samples", "max_concurrent", "num_cpus"):
        value = getattr(a, flag)
        if value is not None and value < 1:
            p.error(f"--{flag.replace('_', '-')} must be at least 1")
    if a.address is not None and (a.num_cpus or a.num_gpus is not None):
        p.error("--num-cpus/--num-gpus size the embedded cluster; drop them with --address")
    if a.force_space and not a.resume:
        p.error("--force-space only applies with --resume")
    if a.gpu_hour_price is not None and not (a.gpu_hour_price >= 0 and a.gpu_hour_price < float("inf")):
        p.error("--gpu-hour-price must be a non-negative number of dollars, e.g. 2.9")
    return RunOptions(space=a.space, smoke=a.smoke, name=a.name, num_samples=a.num_samples,
                      max_concurrent=a.max_concurrent, address=a.address, resume=a.resume,
                      force_space=a.force_space, seed=a.seed,
                      results_dir=a.results_dir, num_cpus=a.num_cpus, num_gpus=a.num_gpus, replay=a.replay,
                      gpu_hour_price=a.gpu_hour_price, warm_start=list(a.warm_start),
                      max_node_losses=a.max_node_losses, sync_also=list(a.sync_also))


def print_summary(summary: RunSummary, out=sys.stdout) -> None:
    c = summary.counts
    best = (f"{summary.best_bpb:.4f} (trial {summary.best_number})" if summary.best_bpb is not None
            else "none (no feasible complete trial)")
    print(f"done: {c['complete']} complete, {c['pruned']} pruned ({summary.pruned_before_launch} before "
          f"launch this run), {c['failed']} failed, {c['running']} running; {summary.launched} trainings in total",
          file=out)
    if summary.duplicates:
        print(f"repeats: {summary.duplicates} proposal(s) this run repeated a configuration trained already and "
              "were told its result instead of training (duplicate_of in trials.csv)", file=out)
    ladder = summary.ladder
    top = f" (rung {ladder.top} of the ladder)" if ladder is not None else ""  # type: ignore[attr-defined]
    print(f"best feasible val_bpb: {best}; Pareto front: {summary.front_size} trial(s){top}", file=out)
    if ladder is not None:
        print(f"fidelity ladder: {summary.rung_trainings} trainings finished per rung "
              f"(cheapest first); see search.pareto for how the rungs' rankings agree", file=out)
    print(f"size margin: {summary.margin_fraction:.1%} (see margin_bytes in trials.csv)", file=out)
    if summary.cost is not None:
        print(summary.cost.line(), file=out)
    if summary.exhausted:
        print(f"{summary.launched} of --num-samples {summary.num_samples} trainings: {summary.exhausted}", file=out)
    elif summary.launched < summary.num_samples:
        print(f"{summary.num_samples - summary.launched} training(s) short of --num-samples "
              f"{summary.num_samples}: run the same command with --resume to continue", file=out)
    prep_log = Path(summary.folder) / PREP_LOG
    if prep_log.is_file():
        lines = prep_log.read_text().splitlines()
        seconds = sum(float(m.group(1)) for line in lines if (m := re.search(r" in ([0-9.]+) s: ", line)))
        print(f"data: {len(lines)} vocab(s) prepared from DOCS in {seconds:.0f} s (apart from training; "
              f"{prep_log})", file=out)
    print(f"files: {summary.folder}/trials.csv, {summary.folder}/study.db "
          f"(optuna-dashboard sqlite:///{summary.folder}/study.db), {summary.folder}/trials/", file=out)


def main(argv: Sequence[str] | None = None) -> int:
    opts = parse_args(argv)
    from search.engine.driver import run_search  # after parsing: --help and usage errors answer at once

    try:
        summary = run_search(opts)
    except OneLineError as exc:
        print(str(exc), file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        print("interrupted: the study is consistent; run the same command with --resume to continue",
              file=sys.stderr)
        return 130
    print_summary(summary)
    return 0
