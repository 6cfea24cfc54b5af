"""A record folder, as the leaderboard takes it: each seed's result, both promotion rules' tests,
`submission.json`, `README.md`, the counted `train_gpt.py` and one log per seed (`search.promote`
reruns the seeds and calls `write_record`).

The rules: `readme`, the competition README's gain of at least 0.005 nats at p < 0.01 (one-sided
one-sample t-test against the old record's mean); `leaderboard`, what the leaderboard as
maintained applied (openai/parameter-golf PR #1902): a one-sided Welch t-test of the seeds'
`val_bpb` against the previous record's seeds, p < 0.25."""

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
LEADERBOARD_ALPHA = 0.25
RULES = ("readme", "leaderboard")


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
    reproduction: str | None = None  # the log it was read from, for a seed run elsewhere (--reproductions)


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


@dataclass(frozen=True)
class Welch:
    """The leaderboard's rule: one-sided Welch t-test, H1 new mean val_bpb < old mean val_bpb."""

    n_new: int
    n_old: int
    t_statistic: float
    p_value: float
    alpha: float

    @property
    def significant(self) -> bool:
        return self.p_value < self.alpha


@dataclass(frozen=True)
class Judgement:
    """Both rules on one set of seeds; `rule` is the one the record flag follows."""

    rule: str
    readme: Significance
    leaderboard: Welch | None
    against_seeds: dict[str, float]  # the previous record's per-seed val_bpb (leaderboard rule)
    against_source: str

    @property
    def reasons(self) -> list[str]:
        if self.rule == "readme":
            return list(self.readme.reasons)
        if self.leaderboard is None and self.against_seeds:
            return [f"only {self.readme.n} seed: a Welch test needs at least 2 (use --seeds 3)"]
        if self.leaderboard is None:
            return ["no --against-record or --against-seeds given: nothing to test the seeds against"]
        if not self.leaderboard.significant:
            return [f"not significant by the leaderboard's rule: p={self.leaderboard.p_value:.4g} (needs p < "
                    f"{self.leaderboard.alpha:g}) against the previous record's seeds"]
        return []

    @property
    def p_value(self) -> float | None:
        return self.readme.p_value if self.rule == "readme" else (self.leaderboard and self.leaderboard.p_value)


# ---------------------------------------------------------------- statistics


def welch(new: Sequence[float], old: Sequence[float], alpha: float = LEADERBOARD_ALPHA) -> Welch:
    """scipy.stats.ttest_ind(new, old, equal_var=False, alternative="less")."""
    from scipy import stats

    if len(new) < 2 or len(old) < 2:
        raise PromoteError(f"a Welch test needs at least 2 seeds on each side (got {len(new)} and {len(old)})")
    test = stats.ttest_ind(list(new), list(old), equal_var=False, alternative="less")
    return Welch(len(new), len(old), float(test.statistic), float(test.pvalue), alpha)


def judge(results: Sequence[SeedResult], rule: str, against_bpb: float | None,
          against_seeds: dict[str, float] | None = None, against_source: str = "",
          alpha: float = LEADERBOARD_ALPHA) -> Judgement:
    """Both rules on the seeds (reproductions included). The readme rule's reference is `against_bpb`,
    else the previous record's mean; the leaderboard rule needs the previous record's seeds."""
    import statistics

    seeds = dict(against_seeds or {})
    if against_bpb is None and seeds:
        against_bpb = statistics.fmean(seeds.values())
    readme_test = significance([r.val_loss for r in results], [r.val_bpb for r in results], against_bpb)
    board = welch([r.val_bpb for r in results], list(seeds.values()), alpha) if seeds and len(results) >= 2 else None
    return Judgement(rule, readme_test, board, seeds, against_source)




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


def _tests(j: Judgement) -> dict[str, Any]:
    """Each rule's test, its inputs and p-value, as submission.json carries them."""
    r = j.readme
    out: dict[str, Any] = {"readme": {
        "test": "one-sided one-sample t-test of the seeds' val_loss (scipy.stats.ttest_1samp, alternative='less')",
        "against_val_bpb": r.against_bpb, "target_val_loss": _round(r.target_loss), "min_gain_nats": MIN_GAIN_NATS,
        "n": r.n, "t": _round(r.t_statistic, 6), "p_value": r.p_value, "alpha": ALPHA,
        "significant": not r.reasons}}
    w = j.leaderboard
    out["leaderboard"] = {
        "test": "one-sided Welch t-test of the seeds' val_bpb against the previous record's "
                "(scipy.stats.ttest_ind, equal_var=False, alternative='less')",
        "against_seeds": j.against_seeds or None, "against_source": j.against_source or None,
        "n_new": w.n_new if w else None, "n_old": w.n_old if w else None, "t": _round(w.t_statistic, 6) if w else None,
        "p_value": w.p_value if w else None, "alpha": w.alpha if w else LEADERBOARD_ALPHA,
        "significant": bool(w and w.significant)}
    return out


def submission(cfg: PromoteConfig, results: list[SeedResult], j: Judgement, when: dt.datetime) -> dict[str, Any]:
    """The competition's submission.json fields plus the seeds and both rules' tests."""
    sig = j.readme
    bytes_total = max(r.bytes_total for r in results)
    reasons = _reasons(cfg, results, j)
    own = [r for r in results if r.reproduction is None]
    return {
        "author": cfg.author,
        "github_id": cfg.github_id,
        "name": cfg.name,
        "blurb": cfg.blurb or _default_blurb(cfg, sig),
        "date": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "val_loss": _round(sig.mean_val_loss),
        "val_bpb": _round(sig.mean_val_bpb),
        "bytes_total": bytes_total,
        "bytes_code": own[0].bytes_code,
        "track": "10min_16mb",
        "record": not reasons,
        "non_record_reason": "; ".join(reasons) or None,
        "seeds": [r.seed for r in own],
        "seed_results": {str(r.seed): {"val_loss": r.val_loss, "val_bpb": r.val_bpb, "bytes_total": r.bytes_total,
                                       "steps": r.steps, "ms_per_step": _round(r.ms_per_step, 3)} for r in own},
        "reproductions": {r.reproduction: {"val_loss": r.val_loss, "val_bpb": r.val_bpb, "bytes_total": r.bytes_total,
                                           "train_seconds": r.train_seconds, "eval_seconds": r.eval_seconds}
                          for r in results if r.reproduction is not None} or None,
        "val_loss_std": _round(sig.std_val_loss),
        "val_bpb_std": _round(sig.std_val_bpb),
        "against_val_bpb": sig.against_bpb,
        "min_gain_nats": MIN_GAIN_NATS,
        "rule": j.rule,
        "p_value": j.p_value,
        "tests": _tests(j),
        "hardware": _hardware(cfg, own),
        "source": {"experiment": cfg.experiment_name, "trial": cfg.trial},
    }


def _label(r: SeedResult) -> str:
    return f"reproduction {r.reproduction}" if r.reproduction else f"seed {r.seed}"


def _reasons(cfg: PromoteConfig, results: list[SeedResult], j: Judgement) -> list[str]:
    """Why the folder is not a record: the chosen rule's test, then every seed over a limit."""
    reasons = list(j.reasons)
    for r in results:
        if r.bytes_total > cfg.budget_bytes:
            reasons.append(f"over budget: {_label(r)} bytes_total {r.bytes_total:,} > {cfg.budget_bytes:,}")
        for metric in ("train_seconds", "eval_seconds"):
            limit, measured = cfg.limits.get(metric), getattr(r, metric)
            if limit is not None and isinstance(measured, (int, float)) and measured > limit:
                reasons.append(f"over a limit: {_label(r)} {metric} {measured:.4g} > {limit:g}")
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


def readme(cfg: PromoteConfig, results: list[SeedResult], j: Judgement, sub: dict[str, Any],
           argv: Sequence[str]) -> str:
    sig = j.readme
    kind = "Record" if sub["record"] else "Non-record"
    out = [f"# {cfg.name} ({kind})", "", sub["blurb"], ""]
    if not sub["record"]:
        out += [f"**Non-record:** {sub['non_record_reason']}.", ""]
    out += ["## Results", "", "| seed | val_loss | val_bpb | bytes_total | steps | ms/step | log |",
            "|---:|---:|---:|---:|---:|---:|:---|"]
    for r in results:
        if r.reproduction:
            out.append(f"| {r.reproduction} (reproduction) | {r.val_loss:.8f} | {r.val_bpb:.8f} | {r.bytes_total:,} "
                       "| | | (run elsewhere) |")
            continue
        out.append(f"| {r.seed} | {r.val_loss:.8f} | {r.val_bpb:.8f} | {r.bytes_total:,} | {r.steps if r.steps is not None else ''} "
                   f"| {'' if r.ms_per_step is None else f'{r.ms_per_step:.2f}'} | `train_seed{r.seed}.log` |")
    std = lambda x: "n/a" if x is None else f"{x:.8f}"  # noqa: E731
    out += [f"| **mean** | **{sig.mean_val_loss:.8f}** | **{sig.mean_val_bpb:.8f}** | {sub['bytes_total']:,} (max) | | | |",
            f"| std | {std(sig.std_val_loss)} | {std(sig.std_val_bpb)} | | | | |", "",
            f"Artifact: `train_gpt.py` ({sub['bytes_code']:,} bytes of code) + compressed model; "
            f"largest total over the seeds {sub['bytes_total']:,} bytes against a budget of {cfg.budget_bytes:,}.",
            f"Hardware: {sub['hardware']}.", "", "## Significance", ""]
    out += [f"The record flag follows the `{j.rule}` rule (`--rule`); both are computed on the same "
            f"{sig.n} seeds{' (reproductions included)' if sub.get('reproductions') else ''}.", "",
            "**Leaderboard rule** (what the leaderboard as maintained applied, openai/parameter-golf PR #1902): "
            "one-sided Welch t-test of the seeds' val_bpb against the previous record's per-seed val_bpb "
            "(scipy.stats.ttest_ind, equal_var=False, alternative='less'), p below "
            f"{j.leaderboard.alpha if j.leaderboard else LEADERBOARD_ALPHA:g}."]
    if j.leaderboard is not None:
        w = j.leaderboard
        out += [f"Previous record ({j.against_source}): " + ", ".join(f"{k} {v:.8f}" for k, v in j.against_seeds.items())
                + f". t = {w.t_statistic:.4f}, p = {w.p_value:.4g}: "
                + ("significant." if w.significant else "not significant."), ""]
    else:
        out += ["Not computed: no --against-record or --against-seeds given.", ""]
    out += ["**README rule** (the competition README's): a gain of at least "
            f"{MIN_GAIN_NATS} nats at p < {ALPHA}."]
    if sig.target_loss is not None and sig.p_value is not None:
        out += [
            f"H0: the mean val_loss is at least {sig.target_loss:.6f} nats, i.e. the record's "
            f"val_bpb {sig.against_bpb:.8f} as a loss ({sig.against_loss:.6f} nats) minus {MIN_GAIN_NATS} nats. "
            f"The record's val_bpb is converted with this run's own ratio mean val_bpb / mean val_loss = "
            f"{sig.bpb_per_nat:.6f} bpb per nat (the same for every seed: same tokenizer and validation bytes), "
            f"so {MIN_GAIN_NATS} nats = {sig.threshold_bpb:.6f} bpb.",
            f"One-sided one-sample t-test over {sig.n} seeds (scipy.stats.ttest_1samp, alternative='less'): "
            f"t = {sig.t_statistic:.4f}, p = {sig.p_value:.4g}: "
            + ("significant." if not sig.reasons else "not significant."), ""]
    else:
        out += ["Not computed: " + "; ".join(sig.reasons) + ".", ""]
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


def write_record(cfg: PromoteConfig, results: list[SeedResult], j: Judgement, script_bytes: bytes,
                 argv: Sequence[str], when: dt.datetime | None = None) -> Path:
    """Create the record folder; refuse if it exists (never overwrite). `results` holds this promotion's
    seeds and then any reproductions (judged with them, their logs kept under reproductions/)."""
    for r in (r for r in results if r.reproduction is None):
        if r.bytes_code != len(script_bytes):
            raise PromoteError(f"seed {r.seed} counted {r.bytes_code} code bytes but {cfg.script} has {len(script_bytes)}; "
                               "the script changed during the promotion, promote again")
    cfg.record_dir.parent.mkdir(parents=True, exist_ok=True)
    try:
        cfg.record_dir.mkdir()
    except FileExistsError:
        raise PromoteError(f"{cfg.record_dir} already exists and is never overwritten; "
                           "pass another --name or remove the folder") from None
    sub = submission(cfg, results, j, when or dt.datetime.now(dt.timezone.utc))
    (cfg.record_dir / "train_gpt.py").write_bytes(script_bytes)
    for r in results:
        if r.reproduction:
            (cfg.record_dir / "reproductions").mkdir(exist_ok=True)
            shutil.copyfile(r.log_path, cfg.record_dir / "reproductions" / r.reproduction)
        else:
            shutil.copyfile(r.log_path, cfg.record_dir / f"train_seed{r.seed}.log")
    (cfg.record_dir / "submission.json").write_text(json.dumps(sub, indent=2) + "\n")
    (cfg.record_dir / "README.md").write_text(readme(cfg, results, j, sub, argv))
    return cfg.record_dir
