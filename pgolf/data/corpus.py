"""Where documents come from: the bundled Gutenberg corpus or a user's JSONL file.

A document is one string; the training stream puts BOS before each one. Documents
are streamed from the file, so a large `--docs` file never has to fit in memory,
and `Corpus.parts` cuts it into ranges that workers read independently.
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
class DocRange:
    """Documents [start, stop) of a corpus; the first is on the line after `lineno` lines, at byte `offset`
    of the (decompressed) file, so a worker reads its range without scanning what comes before."""

    start: int
    stop: int
    offset: int
    lineno: int


def _text(raw: bytes, path: Path, lineno: int) -> str:
    try:
        obj = json.loads(raw.decode("utf-8"))
    except json.JSONDecodeError as exc:
        raise CorpusError(
            f"{path}:{lineno}: not valid JSON ({exc.msg}); each line must be {{\"text\": \"...\"}}"
        ) from None
    text = obj.get("text") if isinstance(obj, dict) else obj
    if not isinstance(text, str):
        raise CorpusError(f"{path}:{lineno}: no string \"text\" field; each line must be {{\"text\": \"...\"}}")
    return text


@dataclass(frozen=True)
class Corpus:
    """A named JSONL documents file and its content hash (the cache key); documents are read on demand."""

    name: str
    path: Path
    sha256: str

    def _open(self):
        return gzip.open(self.path, "rb") if self.path.name.endswith(".gz") else open(self.path, "rb")

    def iter_docs(self, part: DocRange | None = None) -> Iterator[str]:
        """The documents in file order (all of them, or those of `part`): one `{"text": ...}` (or a bare JSON
        string) per line. Blank lines are not documents; an empty text is one (the exporter gives it a lone BOS)."""
        path = self.path
        try:
            with self._open() as f:
                lineno, left = 0, None
                if part is not None:
                    f.seek(part.offset)
                    lineno, left = part.lineno, part.stop - part.start
                for raw in f:
                    lineno += 1
                    if not raw.strip():
                        continue
                    if left is not None:
                        if left == 0:
                            return
                        left -= 1
                    yield _text(raw, path, lineno)
        except UnicodeDecodeError:
            raise CorpusError(f"{path}: not UTF-8 text; convert the file to UTF-8 JSONL") from None
        except (OSError, EOFError) as exc:
            raise CorpusError(f"{path}: cannot read ({exc}); check the file is complete") from None

    def parts(self, docs_per_part: int, cuts: tuple[int, ...] = ()) -> list[DocRange]:
        """Consecutive document ranges of at most `docs_per_part`, also cut at each index in `cuts` (the
        validation boundary), found in one streaming pass over the file's lines (no JSON parsing)."""
        if docs_per_part < 1:
            raise ValueError(f"docs_per_part={docs_per_part} must be positive")
        parts: list[DocRange] = []
        start = start_offset = start_line = 0
        doc = offset = lineno = 0
        try:
            with self._open() as f:
                for raw in f:
                    if raw.strip():
                        if doc > start and (doc - start == docs_per_part or doc in cuts):
                            parts.append(DocRange(start, doc, start_offset, start_line))
                            start, start_offset, start_line = doc, offset, lineno
                        doc += 1
                    offset += len(raw)
                    lineno += 1
        except (OSError, EOFError) as exc:
            raise CorpusError(f"{self.path}: cannot read ({exc}); check the file is complete") from None
        if doc > start:
            parts.append(DocRange(start, doc, start_offset, start_line))
        return parts

    @property
    def docs(self) -> list[str]:
        """All documents in memory (convenient for small corpora such as the bundled one)."""
        return list(self.iter_docs())

    def count_docs(self) -> int:
        """Number of documents; also validates every line. Needs at least 2 (validation + training)."""
        n = sum(1 for _ in self.iter_docs())
        if n < 2:
            raise CorpusError(f"{self.path}: {n} documents; need at least 2 (validation + training)")
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
