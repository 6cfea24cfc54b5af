"""Where documents come from: the bundled Gutenberg corpus or a user's JSONL file.

A document is one string; the training stream puts BOS before each one.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

BUNDLED_CORPUS = Path(__file__).resolve().parent / "corpus" / "gutenberg.jsonl.gz"
BUNDLED_NAME = "gutenberg"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class CorpusError(ValueError):
    """A documents file is missing or malformed (the message names the line and the fix)."""


@dataclass(frozen=True)
class Corpus:
    """A named list of documents plus the hash of the file they came from (the cache key)."""

    name: str
    path: Path
    sha256: str
    docs: list[str]


def file_sha256(path: Path) -> str:
    """Content hash of a file, streamed."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def corpus_name(path: Path) -> str:
    """`gutenberg` for the bundled corpus, else the file stem without `.jsonl`/`.gz`."""
    if path.resolve() == BUNDLED_CORPUS:
        return BUNDLED_NAME
    name = path.name
    for suffix in (".gz", ".jsonl", ".json"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    if not _NAME_RE.match(name):
        raise CorpusError(
            f"{path}: cannot derive a corpus name from {path.name!r}; rename the file to letters, digits, '.', '_' or '-'"
        )
    return name


def _open_text(path: Path):
    if path.name.endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8")
    return open(path, "r", encoding="utf-8")


def read_jsonl_docs(path: Path) -> list[str]:
    """Documents from a JSONL file: one `{"text": ...}` object (or a bare JSON string) per line."""
    if not path.is_file():
        raise CorpusError(f"{path}: documents file not found; pass a JSONL file with one {{\"text\": ...}} per line")
    docs: list[str] = []
    try:
        with _open_text(path) as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise CorpusError(
                        f"{path}:{lineno}: not valid JSON ({exc.msg}); each line must be {{\"text\": \"...\"}}"
                    ) from None
                text = obj.get("text") if isinstance(obj, dict) else obj
                if not isinstance(text, str):
                    raise CorpusError(
                        f"{path}:{lineno}: no string \"text\" field; each line must be {{\"text\": \"...\"}}"
                    )
                if text:
                    docs.append(text)
    except UnicodeDecodeError:
        raise CorpusError(f"{path}: not UTF-8 text; convert the file to UTF-8 JSONL") from None
    except (OSError, EOFError) as exc:
        raise CorpusError(f"{path}: cannot read ({exc}); check the file is complete") from None
    if len(docs) < 2:
        raise CorpusError(f"{path}: {len(docs)} non-empty documents; need at least 2 (validation + training)")
    return docs


def load_corpus(docs: str | os.PathLike | None = None) -> Corpus:
    """Load the bundled corpus (docs=None) or a user's JSONL documents file."""
    path = BUNDLED_CORPUS if docs is None else Path(docs)
    if docs is None and not path.is_file():
        raise CorpusError(f"{path}: bundled corpus missing; reinstall pgolf-search or rebuild it with pgolf.data.build_corpus")
    name = corpus_name(path)
    return Corpus(name=name, path=path, sha256=file_sha256(path) if path.is_file() else "", docs=read_jsonl_docs(path))
