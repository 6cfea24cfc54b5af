"""A record folder, as the leaderboard takes it: `submission.json`, `README.md`, the counted
`train_gpt.py` and one log per seed (`search.records.promote` reruns the seeds and calls `write_record`)."""

from __future__ import annotations

import datetime as dt
import json
import math
import shlex
import shutil
from pathlib import Path
from typing import Any, Sequence

from search.core.layout import HARDWARE_FILE
from search.records.config import ALPHA, LEADERBOARD_ALPHA, MIN_GAIN_NATS, PromoteConfig, PromoteError, SeedResult
from search.records.stats import Judgement, Significance


def _hardware(cfg: PromoteConfig, results: list[SeedResult]) -> str:
    """`--hardware`, else what the first seed ran on: GPU names from its worker, or the CPU."""
    if cfg.hardware:
        return cfg.hardware
    info_path = cfg.work_dir / f"seed{results[0].seed}" / HARDWARE_FILE
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
