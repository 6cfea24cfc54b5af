"""Every bad input the reliability review found gets one line (the problem and the fix) and the
documented exit code (2: the input is wrong), and changes nothing already on disk.

search.run cases run `main` in-process (their checks come before Ray starts); the trainer,
pgolf.size and search.pareto run as the user runs them. One real experiment, made once by a tiny
search on a real local Ray cluster, is copied for each way of damaging it.
"""

from __future__ import annotations

import csv
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from search.engine.cli import main
from search.engine.driver import run_search
from search.engine.options import RunOptions

ROOT = Path(__file__).resolve().parents[2]
# one xdist worker runs this module (its module fixture runs a real search on a Ray cluster,
# once per worker that runs any of its tests)
pytestmark = pytest.mark.xdist_group("bad_input")
FAKE = ROOT / "tests" / "scripts" / "fake_train.py"
SPACE = ("SCRIPT = {script!r}\nBUDGET_BYTES = 100_000\nGPUS_PER_TRIAL = 0\n"
         "def PREDICT_BYTES(env):\n    return int(5000 + 1000 * float(env['X']))\n"
         "def space(trial):\n    return {{'X': trial.suggest_float('X', 0.0, 2.0), {extra}}}\n")


def space_file(path: Path, extra: str = "", tail: str = "") -> Path:
    path.write_text(SPACE.format(script=str(FAKE), extra=extra) + tail)
    return path


def one_error_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, text
    assert lines[0].startswith("error: ") and "Traceback" not in text, text
    return lines[0]


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under folder with its sha256: what must not change."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def run_main(capsys, *args: str) -> tuple[int, str]:
    try:
        code = main([str(a) for a in args])
    except SystemExit as exc:  # argparse
        code = exc.code
    return code, capsys.readouterr().err


@pytest.fixture(scope="module")
def experiment(tmp_path_factory, start_cluster) -> tuple[Path, Path]:
    """(space file, results dir) of one finished 2-training experiment named `exp`."""
    base = tmp_path_factory.mktemp("bad_input")
    space = space_file(base / "space.py")
    with start_cluster(num_cpus=2):
        run_search(RunOptions(space=space, name="exp", num_samples=2, seed=0, results_dir=base / "results"))
    return space, base / "results"


def copy_of(experiment: tuple[Path, Path], tmp_path: Path) -> tuple[Path, Path]:
    space, results = experiment
    shutil.copytree(results / "exp", tmp_path / "results" / "exp")
    return space, tmp_path / "results"


# ----------------------------------------------------------------------------- command line

@pytest.mark.parametrize("args, words", [
    (["--name", ""], "--name ''"),
    (["--name", " x"], "--name ' x'"),
    (["--address", "garbage"], "--address 'garbage'"),
    (["--address", "127.0.0.1:abc"], "--address '127.0.0.1:abc'"),
    (["--num-samples", "0"], "--num-samples must be at least 1"),
    (["--force-space"], "--force-space only applies with --resume"),
])
def test_bad_command_line_is_one_line_exit_2(args, words, tmp_path: Path, capsys) -> None:
    space = space_file(tmp_path / "space.py")
    code, err = run_main(capsys, space, "--results-dir", tmp_path / "results", *args)
    assert code == 2 and words in one_error_line(err)
    assert not (tmp_path / "results").exists()


def test_help_and_usage_errors_start_neither_ray_nor_optuna(tmp_path: Path) -> None:
    """`search.run --help` and a usage error answer from argparse alone: the driver (Ray Tune, Optuna) is
    imported only once the arguments are good."""
    probe = ("import sys\nfrom search.engine.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit as e:\n"
             "    heavy = sorted({'ray', 'optuna', 'torch'} & set(sys.modules))\n"
             "    print('exit', e.code, 'imported', heavy, file=sys.stderr)\n")
    for args in (["--help"], [str(space_file(tmp_path / "space.py")), "--num-samples", "0"]):
        proc = subprocess.run([sys.executable, "-c", probe, *args], cwd=ROOT, capture_output=True, text=True,
                              timeout=120)
        assert f"exit {0 if args == ['--help'] else 2} imported []" in proc.stderr, proc.stderr[-2000:]


def test_results_dir_that_is_a_file(tmp_path: Path, capsys) -> None:
    space = space_file(tmp_path / "space.py")
    (tmp_path / "file").write_text("x")
    code, err = run_main(capsys, space, "--results-dir", tmp_path / "file")
    assert code == 2 and "is a file, not a folder" in one_error_line(err)
    assert (tmp_path / "file").read_text() == "x"


def test_results_dir_read_only(tmp_path: Path, capsys) -> None:
    space = space_file(tmp_path / "space.py")
    results = tmp_path / "ro"
    results.mkdir()
    mounted = False
    if os.geteuid() == 0:  # root writes through mode bits: a read-only mount is the real thing
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(results)],
                                 capture_output=True).returncode == 0
        if not mounted:
            pytest.skip("running as root without permission to mount a read-only tmpfs")
    else:
        results.chmod(0o555)
    try:
        code, err = run_main(capsys, space, "--results-dir", results)
        assert code == 2 and "cannot write in" in one_error_line(err) and "--results-dir" in err
    finally:
        if mounted:
            subprocess.run(["umount", str(results)], check=True)
        results.chmod(0o755)


# ----------------------------------------------------------------------------- the space's values

@pytest.mark.parametrize("value, kind", [("None", "NoneType"), ("[1, 2]", "list"), ("object()", "object")])
def test_space_value_that_is_not_plain(value, kind, tmp_path: Path, capsys) -> None:
    space = space_file(tmp_path / "space.py", extra=f"'FAKE_STEPS': {value}")
    code, err = run_main(capsys, space, "--results-dir", tmp_path / "results")
    line = one_error_line(err)
    assert code == 2 and "FAKE_STEPS=" in line and f"({kind})" in line and "plain value" in line
    assert not (tmp_path / "results").exists()


def test_points_key_not_in_the_space(tmp_path: Path, capsys) -> None:
    space = space_file(tmp_path / "space.py", tail="POINTS_TO_EVALUATE = [{'X': 1.0, 'XX': 2}]\n")
    code, err = run_main(capsys, space, "--results-dir", tmp_path / "results")
    line = one_error_line(err)
    assert code == 2 and "POINTS_TO_EVALUATE[0] sets XX" in line and "did you mean X?" in line
    assert not (tmp_path / "results").exists()


# ----------------------------------------------------------------------------- a damaged experiment

def _corrupt(db: Path) -> None:
    db.write_bytes(b"this is not a database" * 100)


def _truncate(db: Path) -> None:
    os.truncate(db, db.stat().st_size // 3)


def _empty(db: Path) -> None:
    db.write_bytes(b"")


@pytest.mark.slow
@pytest.mark.parametrize("damage, words", [(_corrupt, "is damaged"), (_truncate, "is damaged"), (_empty, "is empty")])
def test_damaged_study_db(damage, words, experiment, tmp_path: Path, capsys) -> None:
    space, results = copy_of(experiment, tmp_path)
    damage(results / "exp" / "study.db")
    before = snapshot(results / "exp")
    code, err = run_main(capsys, space, "--results-dir", results, "--name", "exp", "--resume")
    line = one_error_line(err)
    assert code == 2 and words in line and "restore it from a backup" in line
    assert snapshot(results / "exp") == before


def test_broken_experiment_json(experiment, tmp_path: Path, capsys) -> None:
    space, results = copy_of(experiment, tmp_path)
    (results / "exp" / "experiment.json").write_text('{"name": "exp", "space": ')
    before = snapshot(results / "exp")
    code, err = run_main(capsys, space, "--results-dir", results, "--name", "exp", "--resume")
    line = one_error_line(err)
    assert code == 2 and "experiment.json is not a valid experiment file" in line
    assert "remove the folder" not in line and "--force-space" in line and "untouched" in line
    assert snapshot(results / "exp") == before


def test_resume_with_another_space_changes_nothing(experiment, tmp_path: Path, capsys) -> None:
    space, results = copy_of(experiment, tmp_path)
    other = space_file(tmp_path / "other.py", tail="BUDGET_BYTES = 90_000\n")
    before = snapshot(results / "exp")
    code, err = run_main(capsys, other, "--results-dir", results, "--name", "exp", "--resume")
    line = one_error_line(err)
    assert code == 2 and "is not the space" in line and "budget_bytes 100000 -> 90000" in line
    assert "--force-space" in line
    assert snapshot(results / "exp") == before


@pytest.mark.parametrize("resume", [False, True])
def test_folder_without_study_gives_one_answer(resume, tmp_path: Path, capsys) -> None:
    space = space_file(tmp_path / "space.py")
    (tmp_path / "results" / "exp").mkdir(parents=True)
    (tmp_path / "results" / "exp" / "notes.txt").write_text("mine")
    code, err = run_main(capsys, space, "--results-dir", tmp_path / "results", "--name", "exp",
                         *(["--resume"] if resume else []))
    assert code == 2 and "holds no study.db" in one_error_line(err) and "remove it or pass another --name" in err
    assert sorted(p.name for p in (tmp_path / "results" / "exp").iterdir()) == ["notes.txt"]


# ----------------------------------------------------------------------------- search.pareto

@pytest.mark.slow
def test_pareto_garbage_row_and_unwritable_out(experiment, tmp_path: Path) -> None:
    _, results = copy_of(experiment, tmp_path)
    folder = results / "exp"
    good = (folder / "trials.csv").read_text()
    cmd = [sys.executable, "-m", "search.pareto", str(folder)]
    (folder / "trials.csv").write_text(good + "garbage,,,zz\n")
    proc = subprocess.run(cmd + ["--no-plots"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2 and "line 4 is not a trial row" in one_error_line(proc.stderr)
    (folder / "trials.csv").write_text(good + '"unterminated\0\n')
    proc = subprocess.run(cmd + ["--no-plots"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2 and "trials.csv" in one_error_line(proc.stderr)
    (folder / "trials.csv").write_text(good)
    (tmp_path / "a_file").write_text("x")
    proc = subprocess.run(cmd + ["--out", str(tmp_path / "a_file" / "plots")], cwd=ROOT, capture_output=True,
                          text=True)
    assert proc.returncode == 2 and "cannot write the plots" in one_error_line(proc.stderr)
    assert "Pareto" in proc.stdout or "front" in proc.stdout.lower()  # the report itself was printed
    assert len(list(csv.DictReader(good.splitlines()))) == 2


# ----------------------------------------------------------------------------- pgolf.size and the trainer

def test_size_refuses_a_variable_the_trainer_does_not_read() -> None:
    proc = subprocess.run([sys.executable, "-m", "pgolf.size", "NUM_LAYER=11"], cwd=ROOT, capture_output=True,
                          text=True)
    assert proc.returncode == 2 and "did you mean NUM_LAYERS?" in one_error_line(proc.stderr)
    assert proc.stdout == ""


@pytest.fixture
def trainer_data(prepared_512, tmp_path: Path) -> dict[str, str]:
    """A private copy of the prepared shards, with a second validation shard (a whole copy)."""
    data = tmp_path / "data"
    data.mkdir()
    for shard in Path(prepared_512.data_path).glob("*.bin"):
        shutil.copy(shard, data / shard.name)
    val = sorted(data.glob("fineweb_val_*.bin"))
    shutil.copy(val[-1], data / f"fineweb_val_{len(val):06d}.bin")
    return {**prepared_512.env(), "DATA_PATH": str(data), "OUT_DIR": str(tmp_path / "out"), "ITERATIONS": "1"}


def _train(env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "pgolf" / "train_gpt.py")], cwd=ROOT,
                          env={**os.environ, **env}, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("extra, words", [
    ({"MATRIX_LR": "-1"}, "MATRIX_LR=-1.0 must be >= 0"),
    ({"EMBED_LR": "nan"}, "EMBED_LR=nan must be finite"),
    ({"VAL_MAX_TOKENS": "100", "TRAIN_SEQ_LEN": "1024"}, "VAL_MAX_TOKENS=100 must be 0"),
])
def test_trainer_refuses_bad_settings(extra, words, trainer_data) -> None:
    proc = _train({**trainer_data, **extra})
    assert proc.returncode == 2 and words in one_error_line(proc.stderr)


def test_trainer_refuses_a_truncated_second_validation_shard(trainer_data) -> None:
    second = sorted(Path(trainer_data["DATA_PATH"]).glob("fineweb_val_*.bin"))[1]
    os.truncate(second, second.stat().st_size - 1000)
    proc = _train(trainer_data)
    assert proc.returncode == 2 and f"{second.name} is truncated" in one_error_line(proc.stderr)
    assert not (Path(trainer_data["OUT_DIR"]) / "train.log").exists()  # refused before training
