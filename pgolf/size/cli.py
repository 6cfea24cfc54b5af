"""The command line: `python -m pgolf.size KEY=VALUE ...` (a prediction), `python -m pgolf.size calibrate`
(rebuild the whole calibration table) and `python -m pgolf.size calibrate-forms` (re-measure only the
GPTQ / clip-search / pruning / brotli ratios, a few minutes)."""

from __future__ import annotations

import re
import sys

from pgolf.size.calibration_runs import calibrate
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


def format_prediction(p: Prediction) -> str:
    names = {"embed": "embeddings", "attn": "attention", "mlp": "MLP", "other": "other"}
    lines = [f"predicted total {p.total_bytes} bytes = code {p.code_bytes} + model {p.model_bytes} ({p.compressor})"]
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
        calibrate()
        return 0
    if args and args[0] == "calibrate-forms":  # the GPTQ / clip / pruning / brotli ratios only (minutes)
        from pgolf.size.forms import calibrate_forms

        if len(args) > 1:
            print("error: `calibrate-forms` takes no arguments (it updates pgolf/size_calibration.json)", file=sys.stderr)
            return 2
        calibrate_forms()
        return 0
    if args and args[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    try:
        p = predict(parse_settings(args))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_prediction(p))
    return 0
