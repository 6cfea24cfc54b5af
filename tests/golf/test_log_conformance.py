"""`python -m pgolf.logs check` on the competition's real record folders (../shared/conformance).

The misses must be exactly the ones docs/log_conformance.md explains: a new miss (the parser got
worse) or a documented miss that now matches (the docs are stale) fails the test.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from pgolf.logs import check_record

ROOT = Path(__file__).resolve().parents[2]
RECORDS = ROOT.parent / "shared" / "conformance" / "records"
needs_corpus = pytest.mark.skipif(not RECORDS.is_dir(), reason=f"conformance corpus absent: {RECORDS} "
                                  "(present on development machines and in CI, not in a user's clone)")


def documented_misses() -> set[str]:
    text = (ROOT / "docs" / "log_conformance.md").read_text()
    block = text.split("<!-- misses")[1].split("<!-- end of misses -->")[0]
    return set(re.findall(r"^- `([^`]+)`", block, flags=re.MULTILINE))


@pytest.mark.records
@needs_corpus
def test_check_on_the_conformance_corpus() -> None:
    out = subprocess.run([sys.executable, "-m", "pgolf.logs", "check", str(RECORDS)], capture_output=True,
                         text=True, cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr
    last = out.stdout.strip().splitlines()[-1]
    m = re.fullmatch(r"records: (\d+), matching: (\d+) \((\d+) %\)", last)
    assert m, last
    counted, matching = int(m.group(1)), int(m.group(2))
    misses = {block.splitlines()[0] for block in re.split(r"\n(?=\S)", out.stdout)
              if "MISS" in block.splitlines()[-1]}
    assert misses == documented_misses()
    assert counted - matching == len(misses)
    assert f"records: {counted}, matching: {matching}" in (ROOT / "docs" / "log_conformance.md").read_text()


@pytest.mark.records
@needs_corpus
def test_known_records_read_right() -> None:
    baseline = check_record(RECORDS / "track_10min_16mb" / "2026-03-17_NaiveBaseline")
    assert baseline.matching and baseline.scores == {"train.log": 1.2243657}
    reruns = check_record(RECORDS / "track_10min_16mb" / "2026-04-29_SmearGateBOSFix_3Seed_1.06141")
    assert reruns.matching and len(reruns.scores) == 6 and len(reruns.used) == 3
    assert all("original" in name for name in reruns.used)


def test_check_folder_rules(tmp_path: Path) -> None:
    """Dedup of identical logs, logs/ subfolder, per-seed lists as a repr string, no val_bpb."""
    record = tmp_path / "rec"
    (record / "logs").mkdir(parents=True)
    line = "final_int6_roundtrip_exact val_loss:2.0 val_bpb:{:.8f}\n"
    (record / "logs" / "train_seed1.log").write_text(line.format(1.1))
    (record / "logs" / "train_seed2.log").write_text(line.format(1.2))
    (record / "train.log").write_text(line.format(1.1))  # same bytes as seed 1: read once
    (record / "submission.json").write_text('{"val_bpb": 1.15, "seed_results": "{\'1\': {\'val_bpb\': 1.1}, '
                                            '\'2\': {\'val_bpb\': 1.2}}"}')
    check = check_record(record)
    assert len(check.scores) == 2 and check.listed == {"1": 1.1, "2": 1.2} and check.matching
    (record / "submission.json").write_text('{"val_bpb": 1.16}')
    assert check_record(record).counted and not check_record(record).matching
    (record / "submission.json").write_text('{"val_loss": 1.15}')
    assert not check_record(record).counted
