"""The command line:

    python -m pgolf.size [--smoke] KEY=VALUE ...     a prediction: weights trained at full scale (the
                                                     records' regime), or with --smoke as a short CPU
                                                     training leaves them (the CPU calibration)
    python -m pgolf.size calibrate                   rebuild the CPU calibration table (about 25 min)
    python -m pgolf.size calibrate-forms             re-measure the GPTQ / clip / pruning / brotli ratios
    python -m pgolf.size calibrate-records DIR ...   refit the trained regime on record folders (about
                                                     half a minute) and print each record's predicted bytes
    python -m pgolf.size records DIR ...             that table with the committed fit (nothing written)
"""

from __future__ import annotations

import re
import sys

from pgolf.size.calibration_runs import calibrate
from pgolf.size.forms import calibrate_forms
from pgolf.size.layout import GROUPS
from pgolf.size.prediction import Prediction, predict


def parse_settings(args: list[str]) -> dict[str, str]:
    """KEY=VALUE arguments -> env dict; ValueError naming the bad argument and the fix. A KEY the
    trainer does not read is refused with the nearest name (a typo would predict the default)."""
    import difflib
    from dataclasses import fields

    import pgolf.train_gpt as tg

    known = sorted(f.name.upper() for f in fields(tg.Hyperparameters))
    env = {}
    for arg in args:
        key, sep, value = arg.partition("=")
        if not sep or not re.fullmatch(r"[A-Z][A-Z0-9_]*", key):
            raise ValueError(f"{arg!r} is not KEY=VALUE with an upper-case KEY (pass settings like NUM_LAYERS=11)")
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            raise ValueError(f"{key} is not a setting of pgolf/train_gpt.py ("
                             + (f"did you mean {close[0]}?)" if close else "see its Hyperparameters)"))
        env[key] = value
    return env


def format_prediction(p: Prediction, regime: str = "") -> str:
    names = {"embed": "embeddings", "attn": "attention", "mlp": "MLP", "other": "other"}
    lines = [f"predicted total {p.total_bytes} bytes = code {p.code_bytes} + model {p.model_bytes} ({p.compressor}"
             + (f", {regime})" if regime else ")")]
    for g in GROUPS:
        lines.append(f"  {names[g]:<11s} {p.groups.get(g, 0):>12d} bytes  {p.params.get(g, 0):>12d} params")
    lines.append(f"  {'container':<11s} {p.container_bytes:>12d} bytes  (header and frame overheads)")
    lines.append(f"  {'code':<11s} {p.code_bytes:>12d} bytes")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] == "calibrate":
        if len(args) > 1:
            print("error: `calibrate` takes no arguments (it rebuilds pgolf/size_calibration.json)", file=sys.stderr)
            return 2
        calibrate()  # the rates, frame factors and MATRIX_LR factors
        calibrate_forms()  # then the stored forms' ratios and brotli, on top of the rates
        return 0
    if args and args[0] == "calibrate-forms":  # the GPTQ / clip / pruning / brotli ratios only (minutes)
        if len(args) > 1:
            print("error: `calibrate-forms` takes no arguments (it updates pgolf/size_calibration.json)", file=sys.stderr)
            return 2
        calibrate_forms()
        return 0
    if args and args[0] in ("calibrate-records", "records"):
        from pgolf.size.calibrate_records import calibrate_records, report_records

        if len(args) < 2 or any(a.startswith("-") for a in args[1:]):
            print(f"error: `{args[0]}` takes record folders (e.g. ../shared/conformance/records)", file=sys.stderr)
            return 2
        try:
            (calibrate_records if args[0] == "calibrate-records" else report_records)(args[1:])
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        return 0
    if args and args[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    smoke = "--smoke" in args
    args = [a for a in args if a != "--smoke"]
    try:
        from pgolf.size.trained import load_trained

        regime = None if smoke else load_trained()
        p = predict(parse_settings(args), regime=regime)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_prediction(p, "short CPU training (--smoke)" if smoke else f"trained weights, nu {regime.nu:.1f}"))
    return 0
