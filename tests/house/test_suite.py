"""The suite's own machinery does what the suite relies on: `--dist loadgroup` (pyproject.toml's addopts) runs
the tests of one `xdist_group` on one worker, so a module's costly fixture runs once and the `ray start`
tests run one after another. pytest 9.2's structured node ids undid this without a word (pytest-xdist#1386):
this runs the installed pytest and xdist on a small suite of its own and looks at which worker ran what."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path


def test_an_xdist_group_runs_on_one_worker(tmp_path: Path) -> None:
    (tmp_path / "test_grouped.py").write_text(
        "import pytest\npytestmark = pytest.mark.xdist_group('one')\n"
        + "".join(f"def test_g{i}():\n    pass\n" for i in range(6)))
    (tmp_path / "test_free.py").write_text("".join(f"def test_f{i}():\n    pass\n" for i in range(6)))
    (tmp_path / "pytest.ini").write_text("[pytest]\n")  # not the project's addopts: the flags below only
    proc = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-n", "2", "--dist",
                           "loadgroup", "-v", str(tmp_path)], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stdout[-2000:]
    ran = re.findall(r"\[(gw\d)\] .*PASSED .*::(test_\w+)", proc.stdout)
    assert len(ran) == 12, proc.stdout[-2000:]
    grouped = {worker for worker, name in ran if name.startswith("test_g")}
    assert len(grouped) == 1, f"the group ran on {sorted(grouped)}: is pytest 9.2 or later installed? " \
                              "(pyproject.toml pins it below 9.2 until pytest-xdist#1386 is fixed)"
    assert len({worker for worker, _ in ran}) == 2  # the others were shared out, so two workers were there
