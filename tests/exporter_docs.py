"""The small documents file on which our `prepare` is compared with the competition's exporter.

The first 300 bundled documents (a third of them longer than SentencePiece's 4,192-byte sentence
limit, so the tokenizer's sentence filter is exercised) plus edge cases the exporter treats in its
own way: an empty document (a lone BOS in the shards, skipped by tokenizer training), a blank one,
NUL bytes (spaces for the tokenizer, kept in the shards), surrounding whitespace (stripped for the
tokenizer only) and non-Latin text (byte fallback). `tests/fixtures/exporter_reference.json` holds the
exporter's output for this file and says how it was made.
"""

from __future__ import annotations

import json
from pathlib import Path

from pgolf.data import load_corpus

VOCAB = 512
VAL_DOCS = 60
SHARD_TOKENS = 50_000
EDGE_CASES = {
    5: "",
    17: "   \n\t  ",
    23: "Tab\x00separated\x00fields\x00with NULs, and a trailing one\x00",
    41: "\n\n   Surrounded by whitespace: the exporter strips it for its tokenizer only.   \n\n",
    77: "Ünïcödé — “quotes”, 汉字, 日本語のテキスト, emoji 🙂🚀 and math ∑∫√ for byte fallback.",
    150: "Digits 1234567890 split one by one: 3.14159, 2026-12-01, 0xDEADBEEF.",
}


def reference_docs() -> list[str]:
    docs = load_corpus().docs[:300]
    for position, text in sorted(EDGE_CASES.items()):
        docs.insert(position, text)
    return docs


def write_reference_docs(path: Path) -> Path:
    with open(path, "w", encoding="utf-8") as f:
        for text in reference_docs():
            f.write(json.dumps({"text": text}) + "\n")
    return path
