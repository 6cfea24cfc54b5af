"""Shared test fixtures: one real data preparation per test session, reused by every test file."""

from __future__ import annotations

from pathlib import Path

import pytest

from pgolf.data import Prepared, prepare


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A session-wide output directory for prepared vocabularies (tokenizers/ and datasets/)."""
    return tmp_path_factory.mktemp("pgolf_data")


@pytest.fixture(scope="session")
def prepared_512(data_dir: Path) -> Prepared:
    """The bundled Gutenberg corpus with a real 512-piece SentencePiece BPE and competition shards.

    Use `prepared_512.env()` for DATA_PATH / TOKENIZER_PATH / VOCAB_SIZE.
    """
    return prepare(512, data_dir, quiet=True)
