"""`python -m search.significance` (issue 16, item 1 in part): both promotion rules on two record folders."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from scipy import stats

from search.records import stats as sg

ROOT = Path(__file__).resolve().parents[2]
RECORDS = ROOT.parent / "shared" / "conformance" / "records"
needs_corpus = pytest.mark.skipif(not RECORDS.is_dir(), reason=f"conformance corpus absent: {RECORDS} "
                                  "(it lives beside the project in ../shared; a user's clone has none)")


def run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "search.significance", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=120, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})


@pytest.mark.records
@needs_corpus
def test_the_leaderboards_p_value_of_a_real_record() -> None:
    """The competition's README states p=0.020 for this record against the one before it."""
    proc = run("track_10min_16mb/2026-04-09_A2_Muon097_3Seed", "--against-record",
               "track_10min_16mb/2026-04-09_SP8192_3LayerRecur_ParResid_QK525_LegalTTT", cwd=RECORDS)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert any(line.startswith("leaderboard p=0.020 ") and line.endswith(": record") for line in lines)
    assert any(line.startswith("readme p=") and line.endswith(": not a record") for line in lines)


def _log(path: Path, loss: float, bpb: float) -> None:
    path.write_text(f"step:10/10 val_loss:{loss + 0.1:.4f} val_bpb:{bpb + 0.05:.4f} train_time:1000ms step_avg:100.00ms\n"
                    f"final_int8_zstd_roundtrip_exact val_loss:{loss:.8f} val_bpb:{bpb:.8f}\n")


def test_scores_from_logs_against_seeds_match_scipy(tmp_path: Path) -> None:
    new = tmp_path / "new"
    new.mkdir()
    bpbs, losses = [1.1001, 1.1012, 1.0995], [2.5001, 2.5030, 2.4990]
    for seed, (loss, bpb) in enumerate(zip(losses, bpbs)):
        _log(new / f"train_seed{seed}.log", loss, bpb)
    old = [1.1020, 1.1031, 1.1015]
    proc = run(str(new), "--against-seeds", ",".join(map(str, old)))
    assert proc.returncode == 0, proc.stderr
    want = stats.ttest_ind(bpbs, old, equal_var=False, alternative="less").pvalue
    assert f"leaderboard p={want:.3f} " in proc.stdout and "(3 logs)" in proc.stdout
    readme = sg.significance(losses, bpbs, sum(old) / 3)
    assert f"readme p={readme.p_value:.3f} " in proc.stdout


@pytest.mark.parametrize("args, words", [
    (["{empty}", "--against-seeds", "1.1,1.2"], "fewer than 2 per-seed scores"),
    (["{new}", "--against-seeds", "1.1"], "at least 2 positive val_bpb"),
    (["{new}", "--against-seeds", "a,b"], "not a comma-separated list"),
    (["{new}", "--against-record", "{nowhere}"], "is not a folder"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, args, words) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "new").mkdir()
    for seed in range(2):
        _log(tmp_path / "new" / f"train_seed{seed}.log", 2.5 + seed / 100, 1.1 + seed / 100)
    filled = [a.format(empty=tmp_path / "empty", new=tmp_path / "new", nowhere=tmp_path / "nowhere") for a in args]
    proc = run(*filled)
    assert proc.returncode == 2 and proc.stdout == ""
    assert len(proc.stderr.strip().splitlines()) == 1 and proc.stderr.startswith("error: ") and words in proc.stderr
