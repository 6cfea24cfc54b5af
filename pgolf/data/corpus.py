"""Where documents come from: the bundled Gutenberg corpus or a user's JSONL file.

A document is one string; the training stream puts BOS before each one. Documents
are streamed from the file, so a large `--docs` file never has to fit in memory.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

BUNDLED_CORPUS = Path(__file__).resolve().parent / "corpus" / "gutenberg.jsonl.gz"
BUNDLED_NAME = "gutenberg"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class CorpusError(ValueError):
    """A documents file is missing or malformed (the message names the line and the fix)."""


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
            f"{path}: cannot derive a corpus name from {path.name!r}; "
            "rename the file to letters, digits, '.', '_' or '-'"
        )
    return name


@dataclass(frozen=True)
class Corpus:
    """A named JSONL documents file and its content hash (the cache key); documents are read on demand."""

    name: str
    path: Path
    sha256: str

    def iter_docs(self) -> Iterator[str]:
        """The non-empty documents, in file order: one `{"text": ...}` (or a bare JSON string) per line."""
        path = self.path
        opener = gzip.open if path.name.endswith(".gz") else open
        try:
            with opener(path, "rt", encoding="utf-8") as f:
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
                        yield text
        except UnicodeDecodeError:
            raise CorpusError(f"{path}: not UTF-8 text; convert the file to UTF-8 JSONL") from None
        except (OSError, EOFError) as exc:
            raise CorpusError(f"{path}: cannot read ({exc}); check the file is complete") from None

    @property
    def docs(self) -> list[str]:
        """All documents in memory (convenient for small corpora such as the bundled one)."""
        return list(self.iter_docs())

    def count_docs(self) -> int:
        """Number of documents; also validates every line. Needs at least 2 (validation + training)."""
        n = sum(1 for _ in self.iter_docs())
        if n < 2:
            raise CorpusError(f"{self.path}: {n} non-empty documents; need at least 2 (validation + training)")
        return n


def file_identity(path: Path) -> list:
    """(absolute path, size, mtime) of a file: if unchanged, its content hash is too."""
    st = path.stat()
    return [str(path.absolute()), st.st_size, st.st_mtime_ns]


def load_corpus(docs: str | os.PathLike | None = None, known_hashes: dict | None = None) -> Corpus:
    """The bundled corpus (docs=None) or a user's JSONL documents file (`.jsonl` or `.jsonl.gz`).

    `known_hashes` maps a `file_identity` (as a JSON string) to a sha256 recorded earlier, so a
    large unchanged file is not re-hashed on every call.
    """
    path = BUNDLED_CORPUS if docs is None else Path(docs)
    if not path.is_file():
        if docs is None:
            raise CorpusError(f"{path}: bundled corpus missing; reinstall pgolf-search or rebuild it "
                              "with `python -m pgolf.data.build_corpus`")
        raise CorpusError(f"{path}: documents file not found; pass a JSONL file with one {{\"text\": ...}} per line")
    known = (known_hashes or {}).get(json.dumps(file_identity(path)))
    return Corpus(name=corpus_name(path), path=path, sha256=known or file_sha256(path))
