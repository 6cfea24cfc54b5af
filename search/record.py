"""A record folder, as the leaderboard takes it: each seed's result, the significance test of the gain,
`submission.json`, `README.md`, the counted `train_gpt.py` and one log per seed (`search.promote`
reruns the seeds and calls `write_record`)."""

from __future__ import annotations

import datetime as dt
import json
import math
import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

if TYPE_CHECKING:
    from search.promote import PromoteConfig

MIN_GAIN_NATS = 0.005
ALPHA = 0.01


class PromoteError(Exception):
    """Bad input or a failed rerun; the message is one line naming the problem and the fix."""


@dataclass
class SeedResult:
    """One seed's score as printed in its log (the final round-trip line)."""

    seed: int
    val_loss: float
    val_bpb: float
    bytes_total: int
    bytes_code: int
    steps: int | None
    ms_per_step: float | None
    log_path: Path
    metrics: dict[str, Any]
    train_seconds: float | None = None
    eval_seconds: float | None = None


@dataclass
class Significance:
    """The one-sided test of a gain of at least MIN_GAIN_NATS over the record."""

    n: int
    mean_val_loss: float
    mean_val_bpb: float
    std_val_loss: float | None
    std_val_bpb: float | None
    bpb_per_nat: float
    against_bpb: float | None
    against_loss: float | None
    target_loss: float | None  # H0: mean val_loss >= target_loss
    threshold_bpb: float  # MIN_GAIN_NATS expressed in bpb
    t_statistic: float | None
    p_value: float | None
    significant: bool
    reasons: list[str]


# ---------------------------------------------------------------- statistics


def significance(val_losses: Sequence[float], val_bpbs: Sequence[float], against_bpb: float | None,
                 min_gain_nats: float = MIN_GAIN_NATS, alpha: float = ALPHA) -> Significance:
    """One-sided one-sample t-test of mean val_loss < against_loss - min_gain_nats.

    `against_bpb` is a val_bpb; it becomes a loss with this run's own
    bits-per-byte per nat (mean val_bpb / mean val_loss), which is the same
    for every seed because the tokenizer and the validation bytes are.
    """
    import numpy as np
    from scipy import stats

    n = len(val_losses)
    losses, bpbs = np.asarray(val_losses, dtype=float), np.asarray(val_bpbs, dtype=float)
    mean_loss, mean_bpb = float(losses.mean()), float(bpbs.mean())
    ratio = mean_bpb / mean_loss
    std_loss = float(losses.std(ddof=1)) if n >= 2 else None
    std_bpb = float(bpbs.std(ddof=1)) if n >= 2 else None
    reasons: list[str] = []
    against_loss = target = t_stat = p = None
    if against_bpb is not None:
        against_loss = against_bpb / ratio
        target = against_loss - min_gain_nats
    if n < 2:
        reasons.append(f"only {n} seed: a significance test needs at least 2 (use --seeds 3)")
    if against_bpb is None:
        reasons.append("no --against given: nothing to test the gain against")
    if n >= 2 and target is not None:
        if std_loss == 0.0:
            t_stat = -math.inf if mean_loss < target else math.inf
            p = 0.0 if mean_loss < target else 1.0
        else:
            test = stats.ttest_1samp(losses, popmean=target, alternative="less")
            t_stat, p = float(test.statistic), float(test.pvalue)
        if not p < alpha:
            reasons.append(f"not significant: p={p:.4g} (needs p < {alpha}) for a gain of at least "
                           f"{min_gain_nats} nats over val_bpb {against_bpb}")
    return Significance(
        n=n, mean_val_loss=mean_loss, mean_val_bpb=mean_bpb, std_val_loss=std_loss, std_val_bpb=std_bpb,
        bpb_per_nat=ratio, against_bpb=against_bpb, against_loss=against_loss, target_loss=target,
        threshold_bpb=min_gain_nats * ratio, t_statistic=t_stat, p_value=p,
        significant=not reasons, reasons=reasons,
    )


# ---------------------------------------------------------------- writing


def _hardware(cfg: PromoteConfig, results: list[SeedResult]) -> str:
    """`--hardware`, else what the first seed ran on: GPU names from its worker, or the CPU."""
    if cfg.hardware:
        return cfg.hardware
    info_path = cfg.work_dir / f"seed{results[0].seed}" / "hardware.json"
    info = json.loads(info_path.read_text()) if info_path.is_file() else {}
    gpus = info.get("gpus") or []
    m = results[0].metrics
    if gpus and str(m.get("device", "cuda")) != "cpu":
        names = sorted(set(gpus))
        text = f"{len(gpus)}x {names[0]}" if len(names) == 1 else ", ".join(gpus)
    else:
        text = f"CPU ({info.get('cpu') or 'unknown'}), {m.get('world_size') or 1} process(es)"
    return text + (" (smoke run)" if cfg.smoke else "")


def _round(x: float | None, digits: int = 8) -> float | None:
    return None if x is None or not math.isfinite(x) else round(x, digits)


def submission(cfg: PromoteConfig, results: list[SeedResult], sig: Significance, when: dt.datetime) -> dict[str, Any]:
    """The competition's submission.json fields plus the seeds and the test."""
    bytes_total = max(r.bytes_total for r in results)
    reasons = _reasons(cfg, results, sig)
    return {
        "author": cfg.author,
        "github_id": cfg.github_id,
        "name": cfg.name,
        "blurb": cfg.blurb or _default_blurb(cfg, sig),
        "date": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "val_loss": _round(sig.mean_val_loss),
        "val_bpb": _round(sig.mean_val_bpb),
        "bytes_total": bytes_total,
        "bytes_code": results[0].bytes_code,
        "track": "10min_16mb",
        "record": not reasons,
        "non_record_reason": "; ".join(reasons) or None,
        "seeds": [r.seed for r in results],
        "seed_results": {str(r.seed): {"val_loss": r.val_loss, "val_bpb": r.val_bpb, "bytes_total": r.bytes_total,
                                       "steps": r.steps, "ms_per_step": _round(r.ms_per_step, 3)} for r in results},
        "val_loss_std": _round(sig.std_val_loss),
        "val_bpb_std": _round(sig.std_val_bpb),
        "against_val_bpb": sig.against_bpb,
        "min_gain_nats": MIN_GAIN_NATS,
        "p_value": sig.p_value,
        "hardware": _hardware(cfg, results),
        "source": {"experiment": cfg.experiment_name, "trial": cfg.trial},
    }


def _reasons(cfg: PromoteConfig, results: list[SeedResult], sig: Significance) -> list[str]:
    reasons = list(sig.reasons)
    worst = max(r.bytes_total for r in results)
    if worst > cfg.budget_bytes:
        reasons.append(f"over budget: bytes_total {worst:,} > {cfg.budget_bytes:,}")
    for metric in ("train_seconds", "eval_seconds"):
        limit = cfg.limits.get(metric)
        measured = [getattr(r, metric) for r in results if isinstance(getattr(r, metric), (int, float))]
        if limit is not None and measured and max(measured) > limit:
            reasons.append(f"over a limit: {metric} {max(measured):.1f} > {limit:g}")
    if cfg.smoke:
        reasons.append("smoke run (tiny CPU training on the bundled corpus), not a competition run")
    return reasons


def _default_blurb(cfg: PromoteConfig, sig: Significance) -> str:
    changes = ", ".join(f"{k}={v}" for k, v in sorted(cfg.changed.items())) or "the space's defaults"
    return (f"Trial {cfg.trial} of search experiment {cfg.experiment_name} ({changes}), "
            f"rerun with {sig.n} seeds: mean val_bpb {sig.mean_val_bpb:.4f}.")


def _command(cfg: PromoteConfig, seeds: Sequence[int]) -> str:
    """One shell loop that reruns every seed with the exact environment the script got."""
    env = {k: v for k, v in cfg.env.items() if k not in ("SEED", "RUN_ID")}
    lines = [f"  {k}={shlex.quote(v)}" for k, v in sorted(env.items())]
    launch = ("python train_gpt.py" if cfg.smoke or cfg.gpus_per_trial == 0
              else f"torchrun --standalone --nproc_per_node={cfg.gpus_per_trial} train_gpt.py")
    head = [f"for SEED in {' '.join(str(s) for s in seeds)}; do",
            f"  SEED=$SEED RUN_ID=promote_{cfg.name}_seed$SEED"]
    return " \\\n".join(head[1:] + lines + [f"  {launch}"]).join([head[0] + "\n", "\ndone"])


def readme(cfg: PromoteConfig, results: list[SeedResult], sig: Significance, sub: dict[str, Any],
           argv: Sequence[str]) -> str:
    kind = "Record" if sub["record"] else "Non-record"
    out = [f"# {cfg.name} ({kind})", "", sub["blurb"], ""]
    if not sub["record"]:
        out += [f"**Non-record:** {sub['non_record_reason']}.", ""]
    out += ["## Results", "", "| seed | val_loss | val_bpb | bytes_total | steps | ms/step | log |",
            "|---:|---:|---:|---:|---:|---:|:---|"]
    for r in results:
        out.append(f"| {r.seed} | {r.val_loss:.8f} | {r.val_bpb:.8f} | {r.bytes_total:,} | {r.steps if r.steps is not None else ''} "
                   f"| {'' if r.ms_per_step is None else f'{r.ms_per_step:.2f}'} | `train_seed{r.seed}.log` |")
    std = lambda x: "n/a" if x is None else f"{x:.8f}"  # noqa: E731
    out += [f"| **mean** | **{sig.mean_val_loss:.8f}** | **{sig.mean_val_bpb:.8f}** | {sub['bytes_total']:,} (max) | | | |",
            f"| std | {std(sig.std_val_loss)} | {std(sig.std_val_bpb)} | | | | |", "",
            f"Artifact: `train_gpt.py` ({sub['bytes_code']:,} bytes of code) + compressed model; "
            f"largest total over the seeds {sub['bytes_total']:,} bytes against a budget of {cfg.budget_bytes:,}.",
            f"Hardware: {sub['hardware']}.", "", "## Significance", ""]
    if sig.target_loss is not None and sig.p_value is not None:
        out += [
            f"H0: the mean val_loss is at least {sig.target_loss:.6f} nats, i.e. the record's "
            f"val_bpb {sig.against_bpb} as a loss ({sig.against_loss:.6f} nats) minus {MIN_GAIN_NATS} nats. "
            f"The record's val_bpb is converted with this run's own ratio mean val_bpb / mean val_loss = "
            f"{sig.bpb_per_nat:.6f} bpb per nat (the same for every seed: same tokenizer and validation bytes), "
            f"so {MIN_GAIN_NATS} nats = {sig.threshold_bpb:.6f} bpb.",
            f"One-sided one-sample t-test over {sig.n} seeds (scipy.stats.ttest_1samp, alternative='less'): "
            f"t = {sig.t_statistic:.4f}, p = {sig.p_value:.4g}; a record needs p < {ALPHA}.", ""]
    else:
        out += ["No test was run: " + "; ".join(sig.reasons) + ".", ""]
    out += ["## Configuration", "",
            f"From trial {cfg.trial} of experiment `{cfg.experiment_name}`; parameters that differ from the space's defaults:", ""]
    out += [f"- `{k}={v}`" for k, v in sorted(cfg.changed.items())] or ["- (none: the defaults)"]
    if cfg.trial_bytes_code is not None and cfg.trial_bytes_code != sub["bytes_code"]:
        out += ["", f"Note: the script changed since the search: the trial counted {cfg.trial_bytes_code:,} code bytes, "
                f"this rerun {sub['bytes_code']:,} (the `train_gpt.py` here is the rerun's)."]
    out += ["", "## Reproduce", "", "Every seed, from this folder, with the full environment the script got "
            "(data paths as on the machine that ran it):", "",
            "```bash", _command(cfg, [r.seed for r in results]), "```", ""]
    out += ["The whole promotion, from the search repository:", "", "```bash",
            "python -m search.promote " + " ".join(shlex.quote(a) for a in argv), "```", ""]
    return "\n".join(out)


def write_record(cfg: PromoteConfig, results: list[SeedResult], sig: Significance, script_bytes: bytes,
                 argv: Sequence[str], when: dt.datetime | None = None) -> Path:
    """Create the record folder; refuse if it exists (never overwrite)."""
    for r in results:
        if r.bytes_code != len(script_bytes):
            raise PromoteError(f"seed {r.seed} counted {r.bytes_code} code bytes but {cfg.script} has {len(script_bytes)}; "
                               "the script changed during the promotion, promote again")
    cfg.record_dir.parent.mkdir(parents=True, exist_ok=True)
    try:
        cfg.record_dir.mkdir()
    except FileExistsError:
        raise PromoteError(f"{cfg.record_dir} already exists and is never overwritten; "
                           "pass another --name or remove the folder") from None
    sub = submission(cfg, results, sig, when or dt.datetime.now(dt.timezone.utc))
    (cfg.record_dir / "train_gpt.py").write_bytes(script_bytes)
    for r in results:
        shutil.copyfile(r.log_path, cfg.record_dir / f"train_seed{r.seed}.log")
    (cfg.record_dir / "submission.json").write_text(json.dumps(sub, indent=2) + "\n")
    (cfg.record_dir / "README.md").write_text(readme(cfg, results, sig, sub, argv))
    return cfg.record_dir
