"""Check that the commands in the docs still work, so the docs cannot drift from the code.

    python scripts/check_docs.py [--no-run] [--list]

- Every `python -m MODULE …` command in a fenced ```sh block of README.md and docs/**/*.md:
  the module must import and each `--flag` it uses must appear in its `--help` (or its
  subcommand's, e.g. `pgolf.data prepare --help`).
- Every file of the repository the docs name in backticks (`tests/golf/test_data.py`, `bench/grid_table.csv`)
  must exist, and a test named as `FILE::test_name` must be defined there: files move and tests are
  renamed, and the docs that point at them must follow.
- Blocks fenced as ```sh run are run with bash, in order (README.md, docs/guide/running.md,
  then the other files by name), in one scratch folder that links to the repository's folders:
  what they write (results/, data/, records/) stays out of the repository. They are written at
  smoke scale. A block that exits non-zero fails the check.

Prints one line per problem and exits 1 when there is any; 0 otherwise.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WRITTEN = {"results", "data", "records", "logs", ".git"}  # made fresh in the scratch folder, never linked
_FENCE = re.compile(r"^```(\w*)([^\n]*)\n(.*?)^```", re.M | re.S)
_MODULE = re.compile(r"(?:^|\s)(?:\S*/)?python3?\s+-m\s+([\w.]+)(.*)$")
# a repository file named in backticks: a top-level folder of ours, a path, an extension, maybe ::test_name
_PATH = re.compile(r"`((?:tests|bench|spaces|scripts|pgolf|search|docs|clusters)/[\w./-]+"
                   r"\.(?:py|md|csv|json|sh|yaml|png|html))(?:::(\w+)[\w\[\]-]*)?`")


def _place(path: Path, line: int, root: Path = ROOT) -> str:
    """PATH:LINE of a place in the docs, the path relative to the repository where it is inside."""
    return f"{path.relative_to(root) if path.is_relative_to(root) else path}:{line}"


@dataclass(frozen=True)
class Block:
    path: Path
    line: int
    text: str
    runnable: bool

    @property
    def where(self) -> str:
        return _place(self.path, self.line)


def doc_files(root: Path = ROOT) -> list[Path]:
    guide_first = [root / "README.md", root / "docs" / "guide" / "running.md"]
    rest = sorted(p for p in (root / "docs").rglob("*.md") if p not in guide_first)
    return [p for p in guide_first if p.is_file()] + rest


def blocks(path: Path) -> list[Block]:
    """The fenced sh blocks of one Markdown file."""
    text = path.read_text()
    found = []
    for match in _FENCE.finditer(text):
        if match.group(1) != "sh":
            continue
        found.append(Block(path, text[:match.start()].count("\n") + 1, match.group(3),
                           runnable=match.group(2).strip() == "run"))
    return found


def commands(block: Block) -> list[str]:
    """The shell commands of a block: continuation lines joined, comments dropped, `&&` split."""
    joined = re.sub(r"\\\n\s*", " ", block.text)
    out = []
    for line in joined.splitlines():
        line = re.sub(r"\s+#.*$", "", line).strip()
        if line and not line.startswith("#"):
            out.extend(part.strip() for part in line.split("&&") if part.strip())
    return out


def module_flags(command: str) -> tuple[str, list[str], str | None] | None:
    """(module, --flags used, subcommand) of a `python -m MODULE …` command, else None."""
    match = _MODULE.search(command)
    if not match:
        return None
    try:
        words = shlex.split(match.group(2).replace("…", ""))
    except ValueError:
        words = match.group(2).split()
    flags = sorted({w.split("=")[0].strip("[]") for w in words if w.strip("[").startswith("--")})
    sub = words[0] if words and re.fullmatch(r"[a-z][a-z_-]*", words[0]) else None
    return match.group(1), flags, sub


def help_text(module: str, sub: str | None, cache: dict) -> str | None:
    """`python -m MODULE [SUB] --help` output (None when the module cannot even start)."""
    key = (module, sub)
    if key not in cache:
        texts = []
        for args in ([module, "--help"], [module, sub, "--help"] if sub else None):
            if args is None:
                continue
            proc = subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True,
                                  timeout=120)
            if proc.returncode == 0:
                texts.append(proc.stdout)
            elif args[-2] == module:
                texts = None
                break
        cache[key] = None if texts is None else "\n".join(texts)
    return cache[key]


def check_flags(all_blocks: list[Block]) -> list[str]:
    problems, cache = [], {}
    for block in all_blocks:
        for command in commands(block):
            parsed = module_flags(command)
            if parsed is None:
                continue
            module, flags, sub = parsed
            text = help_text(module, sub, cache)
            where = block.where
            if text is None:
                problems.append(f"{where}: `python -m {module} --help` fails (the module the docs run is broken)")
                continue
            for flag in flags:
                if not re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", text):
                    problems.append(f"{where}: `python -m {module}` has no option {flag} (docs out of date)")
    return problems


def check_paths(paths: list[Path], root: Path = ROOT) -> list[str]:
    """The repository files the docs name in backticks that do not exist (under `root`), and the tests
    named as FILE::test_name that their file does not define."""
    problems = []
    for path in paths:
        text = path.read_text()
        for match in _PATH.finditer(text):
            named, test = root / match.group(1), match.group(2)
            at = _place(path, text[:match.start()].count("\n") + 1, root)
            if not named.exists():
                problems.append(f"{at}: names {match.group(1)}, which does not exist (moved? fix the path)")
            elif test and not re.search(rf"^\s*def {test}\(", named.read_text(), re.M):
                problems.append(f"{at}: names {match.group(1)}::{test}, which that file does not define "
                                "(renamed? fix the name)")
    return problems


def scratch_folder() -> Path:
    """A folder that looks like the repository (links to its folders) but keeps what commands write."""
    folder = Path(tempfile.mkdtemp(prefix="pgolf-docs-"))
    for entry in ROOT.iterdir():
        if entry.name not in WRITTEN:
            (folder / entry.name).symlink_to(entry)
    return folder


def run_blocks(all_blocks: list[Block], out=sys.stdout) -> list[str]:
    runnable = [b for b in all_blocks if b.runnable]
    if not runnable:
        return []
    folder = scratch_folder()
    problems = []
    for block in runnable:
        where = block.where
        start = time.time()
        # `python` in a block is the interpreter running the check (the project's .venv in the tests)
        env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
        proc = subprocess.run(["bash", "-euo", "pipefail", "-c", block.text], cwd=folder, capture_output=True,
                              text=True, timeout=1200, env=env)
        print(f"ran {where} in {time.time() - start:.0f}s: exit {proc.returncode}", file=out, flush=True)
        if proc.returncode != 0:
            tail = (proc.stderr.strip() or proc.stdout.strip()).splitlines()[-1:] or [""]
            problems.append(f"{where}: exit {proc.returncode}: {tail[0][:300]}")
    shutil.rmtree(folder, ignore_errors=True)
    return problems


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python scripts/check_docs.py", description=__doc__.splitlines()[0])
    p.add_argument("--no-run", action="store_true", help="check the flags only, run nothing")
    p.add_argument("--list", action="store_true", help="print the commands found, and which run")
    args = p.parse_args(argv)
    all_blocks = [b for path in doc_files() for b in blocks(path)]
    if args.list:
        for block in all_blocks:
            for command in commands(block):
                print(f"{'run  ' if block.runnable else 'check'} {block.where}: {command}")
        return 0
    problems = check_paths(doc_files()) + check_flags(all_blocks)
    if not args.no_run:
        problems += run_blocks(all_blocks)
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    n_run = sum(b.runnable for b in all_blocks)
    print(f"docs: {sum(len(commands(b)) for b in all_blocks)} commands in {len(all_blocks)} blocks, "
          f"{n_run} blocks run; {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
