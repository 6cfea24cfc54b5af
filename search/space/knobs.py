"""python -m search.knobs SCRIPT: the environment variables a training script reads, found statically.

Tuning on top of a record means knowing its knobs. This reads the script without running it
(`ast`) and lists every variable read through `os.environ.get("NAME", default)`,
`os.getenv("NAME", default)` or `os.environ["NAME"]` (with `int(...)`, `float(...)`,
`bool(int(...))` around them: the default is shown as written), and the fields of a
`Hyperparameters` dataclass read by a `from_env` method (our own trainer's way). A script shipped
packed, `exec(lzma.decompress(base64.b85decode("...")))` as the later records ship it, is unpacked
(only known decoders are applied, nothing is executed) and read the same way.

`--write-space FILE` writes a starter space file: `SCRIPT` set, every knob in a commented
`space()`, the script's defaults as the baseline point.
"""

from __future__ import annotations

import argparse
import ast
import base64
import bz2
import gzip
import lzma
import re
import sys
import zlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Sequence

from search.space.spec import SpaceError, SpaceSpec

# Set by torchrun or the search itself, never knobs to tune.
LAUNCHER_VARIABLES = {"RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT",
                      "CUDA_VISIBLE_DEVICES", "OUT_DIR", "GROUP_RANK", "TORCHELASTIC_RUN_ID"}
_DECODERS = {("lzma", "decompress"): lzma.decompress, ("zlib", "decompress"): zlib.decompress,
             ("bz2", "decompress"): bz2.decompress, ("gzip", "decompress"): gzip.decompress,
             ("base64", "b85decode"): base64.b85decode, ("base64", "b64decode"): base64.b64decode,
             ("base64", "a85decode"): base64.a85decode, ("base64", "b32decode"): base64.b32decode}


class KnobsError(ValueError):
    """A script that cannot be read (one line)."""


@dataclass(frozen=True)
class Knob:
    """One environment variable a script reads."""

    name: str
    default: str | None  # as written in the script; None: read without a default (required)
    kind: str = ""       # the conversion around the read: int, float, bool, or "" for a string


def _module_aliases(tree: ast.AST) -> dict[str, str]:
    """Local name -> module for `import lzma as L` and `import base64`."""
    out = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                out[alias.asname or alias.name] = alias.name
    return out


def _unpack(node: ast.AST, aliases: dict[str, str]) -> bytes | None:
    """The bytes a chain of known decoders over a literal yields, else None (nothing executed)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, (str, bytes)):
        return node.value.encode() if isinstance(node.value, str) else node.value
    if isinstance(node, ast.Call) and len(node.args) == 1 and isinstance(node.func, ast.Attribute) \
            and isinstance(node.func.value, ast.Name):
        module = aliases.get(node.func.value.id, node.func.value.id)
        decoder = _DECODERS.get((module, node.func.attr))
        inner = _unpack(node.args[0], aliases)
        if decoder is not None and inner is not None:
            try:
                if decoder is lzma.decompress and _raw_lzma2(node.keywords):
                    # `format=lzma.FORMAT_RAW, filters=[{"id": lzma.FILTER_LZMA2}]`, as the later records pack
                    return lzma.decompress(inner, format=lzma.FORMAT_RAW, filters=[{"id": lzma.FILTER_LZMA2}])
                return decoder(inner)
            except Exception:  # noqa: BLE001 - not what it looked like
                return None
    return None


def _raw_lzma2(keywords: list[ast.keyword]) -> bool:
    """The call's keywords ask for a raw LZMA2 stream (names only are read, nothing is evaluated)."""
    named = {k.arg: ast.dump(k.value) for k in keywords}
    return "FORMAT_RAW" in named.get("format", "") and "FILTER_LZMA2" in named.get("filters", "")


@lru_cache(maxsize=8)
def _lines(source: str) -> tuple[bytes, ...]:
    return tuple(line.encode() for line in re.split(r"(?<=\r\n)|(?<=\r)(?!\n)|(?<=\n)", source))


def _segment(source: str, node: ast.AST) -> str | None:
    """`ast.get_source_segment`, the source split once (ast splits it again for every node: seconds
    on a trainer)."""
    end = getattr(node, "end_lineno", None)
    if end is None or getattr(node, "end_col_offset", None) is None:
        return None
    lines, first = _lines(source), node.lineno - 1
    if first == end - 1:
        return lines[first][node.col_offset:node.end_col_offset].decode()
    middle = b"".join(lines[first + 1:end - 1])
    return (lines[first][node.col_offset:] + middle + lines[end - 1][:node.end_col_offset]).decode()


def _is_environ(node: ast.AST) -> bool:
    return (isinstance(node, ast.Attribute) and node.attr == "environ") or (
        isinstance(node, ast.Name) and node.id == "environ")


def _env_read(node: ast.AST, source: str) -> Knob | None:
    """A knob when `node` is one read of an environment variable by a literal name."""
    if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) \
            and isinstance(node.args[0].value, str):
        func = node.func
        getenv = isinstance(func, ast.Attribute) and func.attr == "getenv" or (
            isinstance(func, ast.Name) and func.id == "getenv")
        get = isinstance(func, ast.Attribute) and func.attr == "get" and _is_environ(func.value)
        if getenv or get:
            default = node.args[1] if len(node.args) > 1 else next(
                (k.value for k in node.keywords if k.arg == "default"), None)
            if default is None:  # .get("NAME") / getenv("NAME"): None when unset, an optional knob
                return Knob(node.args[0].value, "")
            if isinstance(default, ast.Constant):
                return Knob(node.args[0].value, "" if default.value is None else str(default.value))
            return Knob(node.args[0].value, _segment(source, default) or "?")
    if isinstance(node, ast.Subscript) and _is_environ(node.value) and isinstance(node.slice, ast.Constant) \
            and isinstance(node.slice.value, str) and isinstance(node.ctx, ast.Load):
        return Knob(node.slice.value, None)
    return None


def _kind(parents: list[ast.AST]) -> str:
    """int / float / bool from the conversions wrapped around a read (outermost wins)."""
    kind = ""
    for parent in parents:
        if isinstance(parent, ast.Call) and isinstance(parent.func, ast.Name) \
                and parent.func.id in ("int", "float", "bool"):
            kind = parent.func.id
        else:
            break
    return kind


def _dataclass_fields(tree: ast.AST, source: str) -> list[Knob]:
    """Fields of a `class Hyperparameters` with a `from_env` method: NAME.upper() = default."""
    knobs = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and node.name == "Hyperparameters" and any(
                isinstance(item, ast.FunctionDef) and item.name == "from_env" for item in node.body):
            for item in node.body:
                if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name) and item.value is not None:
                    value = item.value
                    default = (str(value.value) if isinstance(value, ast.Constant)
                               else _segment(source, value) or "?")
                    kind = _segment(source, item.annotation) or ""
                    knobs.append(Knob(item.target.id.upper(), default, kind if kind in ("int", "float", "bool") else ""))
    return knobs


def scan_source(source: str, depth: int = 0) -> list[Knob]:
    """Every knob a script's source reads (packed code included), first read of each name kept."""
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        raise KnobsError(f"is not Python the scan can read (syntax error at line {exc.lineno})") from None
    aliases = _module_aliases(tree)
    found: dict[str, Knob] = {k.name: k for k in _dataclass_fields(tree, source)}

    def visit(node: ast.AST, parents: list[ast.AST]) -> None:
        knob = _env_read(node, source)
        if knob is not None and knob.name not in found:
            found[knob.name] = Knob(knob.name, knob.default, _kind(list(reversed(parents))))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("exec", "eval") \
                and node.args and depth < 3:
            packed = _unpack(node.args[0], aliases)
            if packed is not None:
                for inner in scan_source(packed.decode("utf-8", errors="replace"), depth + 1):
                    found.setdefault(inner.name, inner)
        for child in ast.iter_child_nodes(node):
            visit(child, parents + [node])

    visit(tree, [])
    return list(found.values())


_COMPRESSOR_NAMES = ("zlib", "zstd", "lzma", "brotli")


def _sources(source: str, depth: int = 0) -> list[str]:
    """The source and every packed source inside it (known decoders only, nothing executed)."""
    out = [source]
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return out
    aliases = _module_aliases(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("exec", "eval") \
                and node.args and depth < 3:
            packed = _unpack(node.args[0], aliases)
            if packed is not None:
                out += _sources(packed.decode("utf-8", errors="replace"), depth + 1)
    return out


def export_format(script: str | Path, env: dict[str, str] | None = None) -> str | None:
    """`int<bits>+<compressor>` a script exports by default, read statically, or None.

    The compressor: a knob named `*COMPRESSOR` (its value in `env`, else its default), else a string
    constant `zlib`/`zstd`/`lzma`/`brotli` assigned to a name holding `COMPRESS`. The width: the
    largest of the knobs named `*_BITS` (the larger width is the safe side of a byte prior), else the
    largest `int<b>+` in the script's strings (its log line, e.g. `Serialized model int6+...`).
    """
    try:
        text = Path(script).read_text(encoding="utf-8", errors="replace")
        knobs = scan_source(text)
    except (OSError, KnobsError):
        return None
    env = env or {}
    value = {k.name: env.get(k.name, k.default) for k in knobs}
    compressor = next((v for n, v in value.items() if n.endswith("COMPRESSOR") and v in _COMPRESSOR_NAMES), None)
    called: set[str] = set()
    widths = [int(v) for n, v in value.items() if n.endswith("_BITS") and v and v.isdigit() and 4 <= int(v) <= 8]
    literal_widths = []
    for source in _sources(text):
        try:
            tree = ast.parse(source)
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if compressor is None and isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) \
                    and node.value.value in _COMPRESSOR_NAMES and any(
                        isinstance(t, ast.Name) and "COMPRESS" in t.id.upper() for t in node.targets):
                compressor = node.value.value
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                literal_widths += [int(b) for b in re.findall(r"\bint([4-8])\+", node.value)]
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):  # zlib.compress(...)
                module = {"zstandard": "zstd", "zstd": "zstd", "zlib": "zlib", "lzma": "lzma", "brotli": "brotli"}
                if node.attr in ("compress", "ZstdCompressor") and node.value.id in module:
                    called.add(module[node.value.id])
    if compressor is None and len(called) == 1:  # the one compressor the script calls
        compressor = called.pop()
    bits = max(widths or literal_widths or [0])
    return f"int{bits}+{compressor}" if bits and compressor else None


def scan(script: str | Path) -> list[Knob]:
    path = Path(script)
    try:
        return scan_source(path.read_text(encoding="utf-8", errors="replace"))
    except OSError as exc:
        raise KnobsError(f"cannot be read ({exc.strerror or type(exc).__name__})") from None


def starter_space(script: Path, knobs: list[Knob]) -> str:
    """A space file for `script`: its knobs commented out in space(), its defaults as the baseline."""
    tunable = [k for k in knobs if k.name not in LAUNCHER_VARIABLES]
    lines = [f'"""Starter space for {script} (written by python -m search.knobs).',
             "", "Uncomment the knobs to search, give each a range, and set the limits you are held to.",
             '"""', "", f"SCRIPT = {str(script)!r}", "GPUS_PER_TRIAL = 8",
             'LIMITS = {"bytes_total": 16_000_000, "train_seconds": 600, "eval_seconds": 600}',
             "# No pruning before launch: every proposal runs. To prune, replace this with",
             "# PARAM_COUNT = lambda env: <the model's parameter count> (the search learns bytes per parameter).",
             "PREDICT_BYTES = lambda env: 0",
             "# The script's defaults: the baseline, run first.", "POINTS_TO_EVALUATE = [{}]", "", "",
             "def space(trial):", "    env = {}"]
    for knob in tunable:
        default = "required: no default" if knob.default is None else knob.default
        suggest = {"int": f"trial.suggest_int({knob.name!r}, LOW, HIGH)",
                   "float": f"trial.suggest_float({knob.name!r}, LOW, HIGH)",
                   "bool": f"trial.suggest_categorical({knob.name!r}, [0, 1])"}.get(
            knob.kind, f"trial.suggest_categorical({knob.name!r}, [...])")
        lines.append(f"    # env[{knob.name!r}] = {suggest}  # default {default}")
    lines.append("    return env")
    return "\n".join(lines) + "\n"


def check_space_variables(spec: SpaceSpec) -> None:
    """Stop a search before any launch when its space sets a variable its script never reads.

    The names checked: one proposal's (drawn on a throwaway in-memory study), FIXED_ENV and SMOKE_ENV
    (POINTS_TO_EVALUATE holds parameter names, which `search.space.points.check_points` checks). Names the
    script reads: `scan(SCRIPT)`, plus the space's EXTRA_ENV_OK and the variables the search itself sets. A script the scan finds no variable in is not checked.
    Raises SpaceError (one line) naming the variable and the nearest name the script reads.
    """
    import difflib

    import optuna


    try:
        read = {k.name for k in scan(spec.script)}
    except KnobsError:
        return
    if not read:
        return
    read |= set(spec.extra_env_ok) | LAUNCHER_VARIABLES | {"DATA_PATH", "TOKENIZER_PATH", "VOCAB_SIZE", "SEED",
                                                          "RUN_ID"}
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    probe = optuna.create_study()
    trial = probe.ask()
    try:
        proposed = spec.space(trial)
    except Exception:  # noqa: BLE001 - the searcher reports a failing space function in its own line
        proposed = {}
    names: dict[str, str] = {}
    for where, keys in (("space(trial)", proposed if isinstance(proposed, dict) else {}),
                        ("FIXED_ENV", spec.fixed_env), ("SMOKE_ENV", spec.smoke_env)):
        for key in keys:
            names.setdefault(str(key), where)
    for name, where in names.items():
        if name in read:
            continue
        close = difflib.get_close_matches(name, sorted(read), n=1, cutoff=0.6)
        hint = f"did you mean {close[0]}?" if close else "check the name against python -m search.knobs SCRIPT"
        raise SpaceError(f"error: {spec.path}: {name} (in {where}) is not a variable {spec.script} reads ({hint}; "
                         "a deliberate extra goes in EXTRA_ENV_OK)")


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m search.knobs", description=__doc__.splitlines()[0])
    p.add_argument("script", type=Path, help="a train_gpt.py (plain or packed)")
    p.add_argument("--write-space", type=Path, metavar="FILE", help="write a starter space file for the script")
    args = p.parse_args(argv)
    if not args.script.is_file():
        print(f"error: {args.script} is not a file (give a training script, e.g. records/.../train_gpt.py)",
              file=sys.stderr)
        return 2
    try:
        knobs = scan(args.script)
    except KnobsError as exc:
        print(f"error: {args.script} {exc} (give the Python training script itself)", file=sys.stderr)
        return 2
    for knob in knobs:
        print(f"{knob.name}=" + ("  # required: read without a default" if knob.default is None else knob.default))
    if args.write_space:
        if args.write_space.exists():
            print(f"error: {args.write_space} already exists (give a new file name)", file=sys.stderr)
            return 2
        try:
            args.write_space.write_text(starter_space(args.script, knobs))
        except OSError as exc:
            print(f"error: cannot write {args.write_space}: {exc.strerror} (give a writable path)", file=sys.stderr)
            return 2
        print(f"wrote {args.write_space}: {len(knobs)} knob(s), run it with python -m search.run {args.write_space}",
              file=sys.stderr)
    return 0
