"""Space files: the shipped ones load and propose valid trials; bad ones fail before Ray, in one line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from pgolf.size import predict_bytes
from search.space.load import load_space
from search.space.spec import SpaceError

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = [ROOT / "spaces" / f"{name}.py" for name in ("tokenizer_width_depth", "lowrank_q", "bitwidths", "weight_decay")]


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
@pytest.mark.parametrize("smoke", [False, True], ids=["full", "smoke"])
def test_shipped_space_proposes_valid_trials(path: Path, smoke: bool, monkeypatch) -> None:
    monkeypatch.chdir(ROOT)
    spec = load_space(path.relative_to(ROOT), smoke=smoke)
    assert spec.gpus_per_trial == (0 if smoke else 8)
    study = optuna.create_study(directions=["minimize", "minimize"],
                                sampler=optuna.samplers.RandomSampler(seed=0))
    for point in spec.points_to_evaluate:
        study.enqueue_trial(point)
    sizes = []
    for _ in range(len(spec.points_to_evaluate) + 5):
        trial = study.ask()
        env = spec.trial_env(spec.space(trial))
        assert all(isinstance(v, str) for v in env.values())
        if smoke:
            assert "DATA_PATH" not in env  # the runner prepares the bundled corpus instead
        else:
            assert "{" not in env.get("DATA_PATH", "")
        sizes.append(predict_bytes(env, spec.script))  # also validates the configuration
        study.tell(trial, [0.0, 0.0])
    # the seed points (the baselines) fit the budget
    assert all(s <= spec.budget_bytes for s in sizes[:len(spec.points_to_evaluate)])


BAD_SPACES = {
    "syntax": ("def space(trial)\n    return {}\n", "syntax error at line 1"),
    "no_space": ("BUDGET_BYTES = 1000\n", "defines no space(trial) function"),
    "bad_budget": ("BUDGET_BYTES = 'big'\ndef space(trial):\n    return {}\n", "BUDGET_BYTES='big'"),
    "bad_gpus": ("GPUS_PER_TRIAL = -1\ndef space(trial):\n    return {}\n", "GPUS_PER_TRIAL=-1"),
    "unknown_setting": ("SMOKE_ENVS = {}\ndef space(trial):\n    return {}\n",
                        "unknown setting SMOKE_ENVS (did you mean SMOKE_ENV?)"),
    "bad_script": ("SCRIPT = 'nope/train_gpt.py'\ndef space(trial):\n    return {}\n", "SCRIPT='nope/train_gpt.py'"),
    "bad_env": ("FIXED_ENV = ['A']\ndef space(trial):\n    return {}\n", "FIXED_ENV must be a dict"),
    "import_error": ("import not_a_module_xyz\ndef space(trial):\n    return {}\n", "ModuleNotFoundError at line 1"),
    "bad_timeout": ("TRIAL_TIMEOUT_SECONDS = 0\ndef space(trial):\n    return {}\n", "TRIAL_TIMEOUT_SECONDS=0"),
    "bad_resources": ("RESOURCES_PER_TRIAL = {'h100_node': 'all'}\ndef space(trial):\n    return {}\n",
                      "RESOURCES_PER_TRIAL={'h100_node': 'all'} is not a dict of custom resource names"),
    "gpu_as_resource": ("RESOURCES_PER_TRIAL = {'GPU': 8}\ndef space(trial):\n    return {}\n",
                        "have their own settings"),
    "timeout_typo": ("TRIAL_TIMEOUT = 60\ndef space(trial):\n    return {}\n",
                     "unknown setting TRIAL_TIMEOUT (did you mean TRIAL_TIMEOUT_SECONDS?)"),
}


@pytest.mark.parametrize("kind", sorted(BAD_SPACES))
def test_bad_space_file_is_one_line_error(kind: str, tmp_path: Path) -> None:
    text, expected = BAD_SPACES[kind]
    path = tmp_path / f"{kind}.py"
    path.write_text(text)
    with pytest.raises(SpaceError) as info:
        load_space(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"error: {path}: ")
    assert expected in message


def test_bad_space_fails_from_cli_before_ray_starts(tmp_path: Path) -> None:
    path = tmp_path / "broken.py"
    path.write_text("def space(trial):\n    return {\n")
    proc = subprocess.run([sys.executable, "-m", "search.run", str(path), "--smoke",
                           "--results-dir", str(tmp_path / "results")],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {path}: syntax error")
    assert proc.stdout == ""  # no search started
    assert not (tmp_path / "results").exists()  # nothing created, no Ray session needed


def test_missing_space_file_is_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(SpaceError, match="no such space file"):
        load_space(tmp_path / "absent.py")


def test_templates_fill_from_trial_env(tmp_path: Path) -> None:
    path = tmp_path / "t.py"
    path.write_text("SCRIPT = %r\nFIXED_ENV = {'DATA_PATH': 'd/sp{VOCAB_SIZE}', 'X': '{NOPE}'}\n"
                    "def space(trial):\n    return {'VOCAB_SIZE': 1024, 'NOPE': True}\n"
                    % str(ROOT / "tests/scripts/fake_train.py"))
    spec = load_space(path)
    env = spec.trial_env(spec.space(None))
    assert env["DATA_PATH"] == str(Path.cwd() / "d" / "sp1024")  # a *_PATH is made absolute
    assert env["X"] == "1"  # bools become 0/1


def test_relative_paths_resolved_from_where_the_search_starts(tmp_path: Path) -> None:
    from search.space.spec import resolve_paths

    (tmp_path / "data" / "tokenizers").mkdir(parents=True)
    env = resolve_paths({"TOKENIZER_PATH": "data/tokenizers/x.model", "SHARDS": "./data/train_*.bin",
                         "GLOB": "data/tokenizers/*.model", "LR": "0.02", "ACT": "relu2",
                         "ABS": "/opt/x", "URL": "s3://bucket/x", "EMPTY": ""}, tmp_path)
    assert env == {"TOKENIZER_PATH": str(tmp_path / "data/tokenizers/x.model"),
                   "SHARDS": str(tmp_path / "data/train_*.bin"), "GLOB": str(tmp_path / "data/tokenizers/*.model"),
                   "LR": "0.02", "ACT": "relu2", "ABS": "/opt/x", "URL": "s3://bucket/x", "EMPTY": ""}


@pytest.mark.parametrize("body,named", [
    ('PARAM_COUNT = lambda env: 1\nEXPORT_FORMAT = "quantized+brotli"\n', "EXPORT_FORMAT='quantized+brotli'"),
    ('EXPORT_FORMAT = "int6+zstd"\n', "without PARAM_COUNT"),
])
def test_a_bad_export_format_is_one_line(tmp_path: Path, body: str, named: str) -> None:
    path = tmp_path / "space.py"
    path.write_text(f"SCRIPT = {str(ROOT / 'pgolf' / 'train_gpt.py')!r}\n{body}"
                    "def space(trial):\n    return {}\n")
    with pytest.raises(SpaceError) as info:
        load_space(path)
    assert named in str(info.value) and "\n" not in str(info.value)
