"""SentencePiece BPE training exactly as the competition's exporter does it.

The recipe of openai/parameter-golf `data/download_hf_docs_and_tokenize.py`
(`build_sentencepiece_tokenizer`): every document, validation ones included, is
one SentencePiece sentence after NUL bytes become spaces and the text is
stripped; empty ones are skipped, and so (by SentencePiece's default
`max_sentence_length` of 4,192 bytes) are longer ones; every sentence is used
(no sampling) and the vocabulary limit is soft. `tests/golf/test_data.py` checks the
pieces and scores against that exporter's output. The settings live in one
dataclass that is part of the preparation cache key.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import sentencepiece as spm

PAD_ID, BOS_ID, EOS_ID, UNK_ID = 0, 1, 2, 3
MIN_VOCAB = 320  # 4 control + 256 byte-fallback pieces + the corpus's characters
MAX_VOCAB = 65536  # shards store uint16 tokens


class TokenizerError(ValueError):
    """The tokenizer could not be trained as asked (the message says what to change)."""


@dataclass(frozen=True)
class TokenizerSettings:
    """SentencePiece trainer options, the exporter's; options it leaves at SentencePiece's defaults are left out.

    `train_docs` is the exporter's `--tokenizer-train-docs`: train on the first N documents only
    (a deterministic sample for documents files too large to hold in memory; None = all).
    """

    model_type: str = "bpe"
    byte_fallback: bool = True
    split_digits: bool = True
    normalization_rule_name: str = "nmt_nfkc"
    add_dummy_prefix: bool = False
    pad_id: int = PAD_ID
    bos_id: int = BOS_ID
    eos_id: int = EOS_ID
    unk_id: int = UNK_ID
    character_coverage: float = 0.999
    hard_vocab_limit: bool = False
    train_docs: int | None = None

    def trainer_kwargs(self) -> dict:
        kwargs = asdict(self)
        del kwargs["train_docs"]
        return kwargs


def check_vocab_size(vocab_size: int) -> None:
    if not isinstance(vocab_size, int) or isinstance(vocab_size, bool):
        raise TokenizerError(f"vocab size must be an integer, got {vocab_size!r}")
    if not MIN_VOCAB <= vocab_size <= MAX_VOCAB:
        raise TokenizerError(
            f"vocab size {vocab_size} is out of range; use {MIN_VOCAB}..{MAX_VOCAB} "
            "(byte fallback needs 260 pieces plus characters; shards hold uint16 ids)"
        )


def training_text(docs: Iterable[str], max_docs: int | None = None) -> Iterator[str]:
    """The exporter's sentences: each of the first `max_docs` documents with NULs as spaces, stripped, if non-empty."""
    for i, doc in enumerate(docs):
        if max_docs is not None and i >= max_docs:
            return
        text = doc.replace("\x00", " ").strip()
        if text:
            yield text


def train_tokenizer(
    docs: Iterable[str],
    vocab_size: int,
    model_path: Path,
    settings: TokenizerSettings = TokenizerSettings(),
    num_threads: int = 2,
) -> spm.SentencePieceProcessor:
    """Train a BPE model on `docs` (all of them: training and validation), write `model_path` (+ `.vocab`)
    atomically, and check it reached `vocab_size` pieces (the limit is soft, as the exporter's)."""
    check_vocab_size(vocab_size)
    model_path = Path(model_path)
    if not model_path.name.endswith(".model"):
        raise TokenizerError(f"tokenizer path must end in .model, got {model_path}")
    model_path.parent.mkdir(parents=True, exist_ok=True)
    reading_errors: list[Exception] = []  # SentencePiece turns an exception of the iterator into a RuntimeError

    def sentences() -> Iterator[str]:
        try:
            yield from training_text(docs, settings.train_docs)
        except Exception as exc:
            reading_errors.append(exc)
            raise

    with tempfile.TemporaryDirectory(dir=model_path.parent, prefix=".sp-train-") as tmp:
        prefix = os.path.join(tmp, "sp")
        try:
            spm.SentencePieceTrainer.train(
                sentence_iterator=sentences(),
                model_prefix=prefix,
                vocab_size=vocab_size,
                num_threads=max(1, num_threads),
                minloglevel=2,
                **settings.trainer_kwargs(),
            )
        except RuntimeError as exc:
            if reading_errors:
                raise reading_errors[0] from None
            detail = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
            too_small = re.search(r"smaller than required_chars\. (\d+) vs (\d+)", detail)
            if too_small:
                raise TokenizerError(
                    f"vocab size {vocab_size} is too small for this corpus: its characters and control "
                    f"pieces alone need {too_small.group(2)}; use --vocab {too_small.group(2)} or more"
                ) from None
            raise TokenizerError(
                f"SentencePiece could not train a {vocab_size}-piece BPE on this corpus ({detail}); "
                "use a smaller --vocab or a larger --docs corpus"
            ) from None
        sp = spm.SentencePieceProcessor(model_file=prefix + ".model")
        if sp.get_piece_size() != vocab_size:
            raise TokenizerError(
                f"this corpus gives a {sp.get_piece_size()}-piece tokenizer, not {vocab_size}; "
                f"use --vocab {sp.get_piece_size()} or a larger --docs corpus"
            )
        os.replace(prefix + ".vocab", model_path.with_suffix(".vocab"))
        os.replace(prefix + ".model", model_path)
    return spm.SentencePieceProcessor(model_file=str(model_path))
