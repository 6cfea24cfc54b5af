"""The house keeps its shape: the import contract (pyproject.toml's import-linter contracts: search's
packages in one order, pgolf in its own and never importing search, no circle among siblings), no
private name used outside its module, and no module over 400 lines but the trainer. Each check is
shown to fail on a copy of the house with the fault put in."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("search", "pgolf")
MAX_LINES = 400
TRAINER = Path("pgolf/train_gpt.py")
LINT = Path(sys.executable).with_name("lint-imports")


def _lint(root: Path) -> subprocess.CompletedProcess:
    """import-linter on the house at `root` (it reads root's pyproject.toml and imports from root)."""
    return subprocess.run([str(LINT), "--no-cache", "--no-logo"], cwd=root, capture_output=True, text=True,
                          timeout=120)


def _copy(tmp_path: Path) -> Path:
    house = tmp_path / "house"
    house.mkdir()
    for name in PACKAGES:
        shutil.copytree(ROOT / name, house / name, ignore=shutil.ignore_patterns("__pycache__", "*.json", "corpus"))
    shutil.copy(ROOT / "pyproject.toml", house / "pyproject.toml")
    return house


def test_the_import_contract_holds() -> None:
    proc = _lint(ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "Contracts: 4 kept, 0 broken." in proc.stdout


@pytest.mark.parametrize("module, line, broken", [
    # the leaf reaching up to the driver
    ("search/core/limits.py", "import search.engine.driver", "search: the commands"),
    # the review reaching into the engine, its sibling layer
    ("search/review/report.py", "from search.engine.study import open_study", "search: the commands"),
    # the golf domain importing the service
    ("pgolf/logs/parse.py", "import search.core.attrs", "pgolf (the golf domain) never imports search"),
    # a circle inside one package: the ladder's promotions asking the searcher, which asks the ladder
    ("search/engine/ladder.py", "import search.engine.searcher", "no import circle among siblings"),
])
def test_a_deliberate_bad_import_breaks_the_contract(tmp_path: Path, module: str, line: str, broken: str) -> None:
    house = _copy(tmp_path)
    assert _lint(house).returncode == 0  # the copy holds as the house does
    path = house / module
    path.write_text(path.read_text() + f"\n{line}  # put in by the test\n")
    proc = _lint(house)
    assert proc.returncode != 0, proc.stdout[-2000:]
    report = proc.stdout[proc.stdout.index("Broken contracts"):]
    assert broken in report and "0 broken" not in proc.stdout


def _modules(root: Path) -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (root / package).rglob("*.py"):
            name = ".".join(path.relative_to(root).with_suffix("").parts)
            found[name.removesuffix(".__init__")] = path
    return found


def private_uses(root: Path) -> list[str]:
    """Every use of a module's private name (`_name`) from another module of the house: imported by name,
    or read as an attribute of an imported module."""
    modules = _modules(root)
    found = []
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), str(path))
        aliases = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module in modules and node.module != name:
                found += [f"{path.relative_to(root)}:{node.lineno}: from {node.module} import {a.name}"
                          for a in node.names if a.name.startswith("_") and not a.name.startswith("__")]
                aliases.update({a.asname or a.name: f"{node.module}.{a.name}" for a in node.names
                                if f"{node.module}.{a.name}" in modules})
            elif isinstance(node, ast.Import):
                aliases.update({a.asname or a.name: a.name for a in node.names if a.name in modules})
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
                base = node.value
                if isinstance(base, ast.Name) and aliases.get(base.id, name) != name:
                    found.append(f"{path.relative_to(root)}:{node.lineno}: {base.id}.{node.attr}")
    return found


def test_no_private_name_is_used_outside_its_module(tmp_path: Path) -> None:
    assert private_uses(ROOT) == []
    house = _copy(tmp_path)
    path = house / "search/engine/driver.py"
    path.write_text(path.read_text() + "\nfrom search.runner.cluster import _not_incomplete_trials\n"
                    "import search.engine.tuning as tuning\nSCHEDULER = tuning._scheduler\n")
    assert len(private_uses(house)) == 2


def long_modules(root: Path) -> list[str]:
    return [f"{path.relative_to(root)}: {n} lines" for path in _modules(root).values()
            if path.relative_to(root) != TRAINER and (n := len(path.read_text().splitlines())) > MAX_LINES]


def test_no_module_is_over_400_lines_but_the_trainer(tmp_path: Path) -> None:
    assert long_modules(ROOT) == []
    assert len((ROOT / TRAINER).read_text().splitlines()) < 1500  # the competition's convention
    house = _copy(tmp_path)
    path = house / "search/core/limits.py"
    path.write_text(path.read_text() + "\n" * MAX_LINES)
    assert long_modules(house) == [f"search/core/limits.py: {len(path.read_text().splitlines())} lines"]
