"""The docs cannot drift: scripts/check_docs.py runs the runnable blocks of README.md and docs/ at
smoke scale and checks every other command's flags against its --help (about a minute)."""

from __future__ import annotations

import pytest
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

import check_docs  # noqa: E402


@pytest.mark.slow
def test_every_documented_command_works() -> None:
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "check_docs.py")], cwd=ROOT,
                          capture_output=True, text=True, timeout=1500)
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-2000:]
    assert "0 problem(s)" in proc.stdout
    ran = [line for line in proc.stdout.splitlines() if line.startswith("ran ")]
    assert len(ran) >= 5  # the smoke search, review and promotion, data, size, knobs


def test_the_check_fails_when_a_documented_command_breaks(tmp_path: Path) -> None:
    doc = tmp_path / "guide.md"
    doc.write_text("```sh\n.venv/bin/python -m search.run spaces/x.py --smoke --num-sample 8\n```\n\n"
                   "```sh\npython -m search.nosuchmodule --help\n```\n\n"
                   "```sh run\npython -m pgolf.size NUM_LAYER=11\n```\n")
    blocks = check_docs.blocks(doc)
    assert [b.runnable for b in blocks] == [False, False, True]
    problems = check_docs.check_flags(blocks)
    assert any("has no option --num-sample" in p for p in problems)
    assert any("search.nosuchmodule --help` fails" in p for p in problems)
    run = check_docs.run_blocks(blocks)
    assert len(run) == 1 and "exit 2" in run[0] and "did you mean NUM_LAYERS?" in run[0]


def test_the_check_names_a_file_the_docs_point_at_that_is_not_there(tmp_path: Path) -> None:
    """Test files moved into folders by package; docs that still named tests/test_data.py pointed nowhere."""
    doc = tmp_path / "guide.md"
    doc.write_text("`tests/golf/test_data.py::test_prepare_is_the_competition_exporter` checks it, as\n"
                   "`tests/test_data.py` did; `bench/grid_table.csv` is the table, `results/<name>/trials.csv` a\n"
                   "placeholder, `tests/golf/test_nothing.py::test_x` a typo and\n"
                   "`tests/golf/test_data.py::test_prepare_is_the_exporter` a test's old name.\n")
    problems = check_docs.check_paths([doc])
    assert len(problems) == 3, problems
    assert problems[0].endswith(":2: names tests/test_data.py, which does not exist (moved? fix the path)")
    assert ":3: names tests/golf/test_nothing.py, which does not exist" in problems[1]
    assert problems[2].endswith(":4: names tests/golf/test_data.py::test_prepare_is_the_exporter, which that "
                                "file does not define (renamed? fix the name)")
    assert check_docs.check_paths(check_docs.doc_files()) == []  # and every file our docs name is there


def test_the_readmes_example_space_loads_and_predicts_within_its_budget(tmp_path: Path) -> None:
    """The README's ten-line space file is a real one: it loads, sets only knobs the trainer reads,
    and the byte predictor prices its baseline-sized proposals."""
    from pgolf.size import load_trained, predict
    from search.space.knobs import check_space_variables
    from search.space.load import load_space

    text = (ROOT / "README.md").read_text()
    block = text.split("```python\n", 1)[1].split("```", 1)[0]
    assert len(block.strip().splitlines()) <= 12
    spec = load_space(_write(tmp_path / "example.py", block))
    check_space_variables(spec)
    assert spec.budget_bytes == 16_000_000 and spec.script.name == "train_gpt.py"
    env = {**spec.fixed_env, "NUM_LAYERS": 9, "MODEL_DIM": 512, "MLP_BITS": 6}
    assert 10_000_000 < predict(env, regime=load_trained()).total_bytes < 17_000_000


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path
