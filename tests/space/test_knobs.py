"""search.knobs: the variables a script reads (plain and packed), the starter space it writes, typos."""

from __future__ import annotations

import pytest
import base64
import lzma
import subprocess
import sys
from pathlib import Path

import optuna
from optuna.trial import TrialState

from search.space.knobs import scan, scan_source
from search.core.layout import storage_url
from search.engine.driver import run_search
from search.engine.options import RunOptions

ROOT = Path(__file__).resolve().parents[2]
UPSTREAM = ROOT / "tests" / "scripts" / "upstream_style.py"
EXPECTED = {"DATA_PATH": "./data/datasets/fineweb10B_sp1024", "RUN_ID": "str(uuid.uuid4())", "ITERATIONS": "4",
            "NUM_LAYERS": "9", "MATRIX_LR": "0.04", "TIE_EMBEDDINGS": "1", "X": "1.0", "ROUNDTRIP_PAUSE": "0.0",
            "EVAL_MS": "1000", "FAIL_WITH": "", "REQUIRE_DATA": ""}


def test_lists_every_variable_with_its_default() -> None:
    knobs = scan(UPSTREAM)
    assert {k.name: k.default for k in knobs} == EXPECTED
    kinds = {k.name: k.kind for k in knobs}
    assert (kinds["ITERATIONS"], kinds["MATRIX_LR"], kinds["TIE_EMBEDDINGS"], kinds["DATA_PATH"]) == (
        "int", "float", "bool", "")
    required = scan_source('import os\nA = os.environ["NEEDED"]\nB = os.environ.get("OPT")\n')
    assert [(k.name, k.default) for k in required] == [("NEEDED", None), ("OPT", "")]


def test_reads_a_packed_script(tmp_path: Path) -> None:
    blob = base64.b85encode(lzma.compress(UPSTREAM.read_bytes())).decode()
    packed = tmp_path / "train_gpt.py"
    packed.write_text(f'import lzma as L,base64 as B\nexec(L.decompress(B.b85decode("{blob}")))\n')
    assert {k.name: k.default for k in scan(packed)} == EXPECTED


@pytest.mark.slow
def test_cli_and_the_space_it_writes_runs(local_ray, tmp_path: Path) -> None:
    space = tmp_path / "starter.py"
    out = subprocess.run([sys.executable, "-m", "search.knobs", str(UPSTREAM), "--write-space", str(space)],
                         capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [f"{k}={v}" for k, v in EXPECTED.items()]
    text = space.read_text()
    assert "# env['NUM_LAYERS'] = trial.suggest_int('NUM_LAYERS', LOW, HIGH)  # default 9" in text
    space.write_text(text.replace("GPUS_PER_TRIAL = 8", "GPUS_PER_TRIAL = 0"))
    summary = run_search(RunOptions(space=space, name="starter", num_samples=1, results_dir=tmp_path / "results"))
    study = optuna.load_study(study_name="starter", storage=storage_url(summary.folder))
    (trial,) = study.get_trials()
    assert trial.state == TrialState.COMPLETE and trial.values[0] == 5.0  # the script's defaults: X=1.0


def test_a_typo_in_a_variable_stops_before_launch(tmp_path: Path) -> None:
    space = tmp_path / "typo.py"
    space.write_text("def space(trial):\n    return {'NUM_LAYER': trial.suggest_int('NUM_LAYER', 2, 3)}\n")
    out = subprocess.run([sys.executable, "-m", "search.run", str(space), "--smoke", "--results-dir",
                          str(tmp_path / "results")], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and "NUM_LAYER (in space(trial))" in out.stderr
    assert "did you mean NUM_LAYERS?" in out.stderr
    assert not (tmp_path / "results").exists()  # nothing launched, nothing written
    space.write_text("EXTRA_ENV_OK = {'NUM_LAYER'}\nFIXED_ENV = {'MODEL_DIMM': 64}\n"
                     "def space(trial):\n    return {'NUM_LAYER': 2}\n")
    out = subprocess.run([sys.executable, "-m", "search.run", str(space), "--smoke", "--results-dir",
                          str(tmp_path / "results")], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 2 and "MODEL_DIMM (in FIXED_ENV)" in out.stderr and "MODEL_DIM?" in out.stderr


def test_export_format_read_from_a_script(tmp_path: Path) -> None:
    """The size prior of an external script needs its export: from a COMPRESSOR knob and *_BITS knobs, or
    from the one compressor it calls and its log line's `int<b>+` (the baseline's way); packed too,
    as the later records ship (raw LZMA2)."""
    from search.space.knobs import export_format

    knobbed = tmp_path / "knobbed.py"
    knobbed.write_text('import os\nC = os.environ.get("COMPRESSOR", "lzma")\nM = int(os.environ.get("MLP_BITS", 5))\n'
                       'A = int(os.environ.get("ATTN_BITS", "6"))\n')
    assert export_format(knobbed) == "int6+lzma"
    assert export_format(knobbed, {"COMPRESSOR": "brotli"}) == "int6+brotli"
    baseline_like = ('import zlib\ndef save(raw, log0):\n    blob = zlib.compress(raw, level=9)\n'
                     '    log0(f"Serialized model int8+zlib: {len(blob)} bytes")\n')
    plain = tmp_path / "baseline_like.py"
    plain.write_text(baseline_like)
    assert export_format(plain) == "int8+zlib"
    raw = lzma.compress(baseline_like.encode(), format=lzma.FORMAT_RAW, filters=[{"id": lzma.FILTER_LZMA2}])
    packed = tmp_path / "packed.py"
    packed.write_text('import lzma as L,base64 as B\nexec(L.decompress(B.b85decode("'
                      + base64.b85encode(raw).decode() + '"),format=L.FORMAT_RAW,filters=[{"id":L.FILTER_LZMA2}]))\n')
    assert export_format(packed) == "int8+zlib"
    (tmp_path / "unknown.py").write_text("print('no export here')\n")
    assert export_format(tmp_path / "unknown.py") is None
