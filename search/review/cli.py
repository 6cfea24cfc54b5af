"""python -m search.pareto: the feasible Pareto front of one or more experiments.

Reads `experiment.json` and `trials.csv` (schema in docs/design.md), keeps the
trials that completed within the byte budget, and reports the front that
minimises (`val_bpb`, `bytes_total`), the hypervolume and how it grew with the
device hours spent (GPU-hours; CPU-hours for --smoke), plus `pareto.png` and a
self-contained interactive `pareto.html` (each with hypervolume against cost),
and which parameters matter for each objective (`search.review.importance`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from search.review.analysis import analyse, load_experiment
from search.review.importance import Importance, experiment_importance
from search.review.plots import write_html, write_png
from search.review.render import RENDERERS
from search.review.report import ParetoError, ResultsFolder

FORMATS = ("text", "csv", "json", "markdown")


def default_out_dir(experiments: Sequence[ResultsFolder]) -> Path:
    """One experiment: its own folder. Several: a sibling `merged-<a>+<b>` folder."""
    if len(experiments) == 1:
        return experiments[0].path
    return experiments[0].path.parent / ("merged-" + "+".join(e.path.name for e in experiments))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m search.pareto", description=__doc__.split("\n")[0])
    p.add_argument("experiments", nargs="+", help="experiment folders (results/<name>); several merge into one front")
    p.add_argument("--budget", type=int, default=None, help="byte budget (default: experiment.json budget_bytes, else 16,000,000)")
    p.add_argument("--ref-bpb", type=float, default=None, help="hypervolume reference val_bpb (default: worst feasible val_bpb)")
    p.add_argument("--format", choices=FORMATS, default="text", help="output format on stdout")
    p.add_argument("--out", type=Path, default=None, help="folder for pareto.png and pareto.html")
    p.add_argument("--no-plots", action="store_true", help="print only, write no pareto.png / pareto.html")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        experiments = [load_experiment(p) for p in args.experiments]
        names = [e.name for e in experiments]
        if len(set(names)) != len(names):
            raise ParetoError(f"experiment names repeat ({', '.join(names)}); pass each folder once")
        report = analyse(experiments, budget=args.budget, ref_bpb=args.ref_bpb)
        for e in experiments:
            try:
                report.importance[e.name] = experiment_importance(e.path, str(e.meta.get("study_name") or e.name))
            except Exception as exc:  # noqa: BLE001 - the front does not depend on it: say why, go on
                report.importance[e.name] = Importance(reason=f"not computed ({type(exc).__name__}: {exc})"[:300])
    except ParetoError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    sys.stdout.write(RENDERERS[args.format](report))
    sys.stdout.flush()
    if not args.no_plots:
        out = args.out or default_out_dir(experiments)
        try:
            out.mkdir(parents=True, exist_ok=True)
            png, html = write_png(report, out / "pareto.png"), write_html(report, out / "pareto.html")
        except OSError as exc:  # the report is on stdout already: only the plots are missing
            print(f"error: cannot write the plots in {out} ({exc.strerror or exc}); pass --out with a folder "
                  "you can write to, or --no-plots", file=sys.stderr)
            return 2
        print(f"wrote {png} and {html}", file=sys.stderr)
    return 0
