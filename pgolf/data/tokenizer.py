"""SentencePiece BPE training with the competition's settings (REFERENCE §1).

Kept separate so the settings live in one dataclass that is also part of the
preparation cache key: change a setting and every cached vocabulary is rebuilt.
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
    """SentencePiece trainer options; the first block matches the competition exactly."""

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
    # Speed caps: at most this many input lines (sampled), lines longer than this are skipped.
    input_sentence_size: int = 1_000_000
    max_sentence_length: int = 4192
    shuffle_input_sentence: bool = True
    hard_vocab_limit: bool = True

    def trainer_kwargs(self) -> dict:
        return asdict(self)


def check_vocab_size(vocab_size: int) -> None:
    if not isinstance(vocab_size, int) or isinstance(vocab_size, bool):
        raise TokenizerError(f"vocab size must be an integer, got {vocab_size!r}")
    if not MIN_VOCAB <= vocab_size <= MAX_VOCAB:
        raise TokenizerError(
            f"vocab size {vocab_size} is out of range; use {MIN_VOCAB}..{MAX_VOCAB} "
            "(byte fallback needs 260 pieces plus characters; shards hold uint16 ids)"
        )


def training_lines(docs: Iterable[str], max_lines: int) -> Iterator[str]:
    """Non-empty lines of the documents (SentencePiece's 'sentences'), at most `max_lines`."""
    n = 0
    for doc in docs:
        for line in doc.split("\n"):
            if line.strip():
                yield line
                n += 1
                if n >= max_lines:
                    return


def train_tokenizer(
    docs: Iterable[str],
    vocab_size: int,
    model_path: Path,
    settings: TokenizerSettings = TokenizerSettings(),
    num_threads: int = 2,
) -> spm.SentencePieceProcessor:
    """Train a BPE model on `docs`, write `model_path` (+ `.vocab`) atomically, and check its size is exact."""
    check_vocab_size(vocab_size)
    model_path = Path(model_path)
    if not model_path.name.endswith(".model"):
        raise TokenizerError(f"tokenizer path must end in .model, got {model_path}")
    model_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=model_path.parent, prefix=".sp-train-") as tmp:
        prefix = os.path.join(tmp, "sp")
        try:
            spm.SentencePieceTrainer.train(
                sentence_iterator=training_lines(docs, settings.input_sentence_size * 4),
                model_prefix=prefix,
                vocab_size=vocab_size,
                num_threads=max(1, num_threads),
                minloglevel=2,
                **settings.trainer_kwargs(),
            )
        except RuntimeError as exc:
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
                f"trained tokenizer has {sp.get_piece_size()} pieces, not {vocab_size}; use a smaller --vocab"
            )
        os.replace(prefix + ".vocab", model_path.with_suffix(".vocab"))
        os.replace(prefix + ".model", model_path)
    return spm.SentencePieceProcessor(model_file=str(model_path))
