"""val_bpb byte accounting (REFERENCE.md §1) on a real SentencePiece model, and a trained model vs unigram."""

from __future__ import annotations

import glob
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import sentencepiece as spm
import torch

import pgolf.train_gpt as tg

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "pgolf" / "train_gpt.py"
WORDS = ("the cat sat on the mat while the dog ran to the park and the bird sang over the old tree "
         "then the wind came and the cat went home to the house by the river").split()


@pytest.fixture(scope="module")
def sp(tmp_path_factory) -> spm.SentencePieceProcessor:
    """A tiny BPE trained here with the competition's settings (byte fallback, no dummy prefix)."""
    d = tmp_path_factory.mktemp("sp")
    rng = np.random.default_rng(0)
    lines = ["cat " + " ".join(rng.choice(WORDS, size=12)) + f" {rng.integers(0, 1000)} café" for _ in range(2000)]
    (d / "corpus.txt").write_text("\n".join(lines), encoding="utf-8")
    spm.SentencePieceTrainer.train(
        input=str(d / "corpus.txt"), model_prefix=str(d / "tok"), model_type="bpe", vocab_size=320,
        byte_fallback=True, split_digits=True, normalization_rule_name="nmt_nfkc", add_dummy_prefix=False,
        pad_id=0, bos_id=1, eos_id=2, unk_id=3, character_coverage=0.999, minloglevel=2)
    return spm.SentencePieceProcessor(model_file=str(d / "tok.model"))


def piece(sp: spm.SentencePieceProcessor, text: str) -> int:
    tid = sp.piece_to_id(text)
    assert tid != sp.unk_id(), f"piece {text!r} missing from the test tokenizer"
    return tid


def bytes_of(ids: list[int], luts: tg.ByteLuts) -> list[int]:
    t = torch.tensor(ids)
    return tg.count_target_bytes(t[:-1], t[1:], luts).tolist()


def test_special_and_byte_pieces(sp):
    luts = tg.token_byte_luts(sp, sp.vocab_size())
    for special in (sp.pad_id(), sp.bos_id(), sp.eos_id(), sp.unk_id()):
        assert bool(luts.is_boundary[special]) and int(luts.base_bytes[special]) == 0
    byte_e2 = piece(sp, "<0xE2>")
    assert not bool(luts.is_boundary[byte_e2]) and int(luts.base_bytes[byte_e2]) == 1
    assert not bool(luts.has_leading_space[byte_e2])


def test_table_padded_beyond_tokenizer_counts_zero_bytes(sp):
    luts = tg.token_byte_luts(sp, sp.vocab_size() + 8)
    assert luts.base_bytes.numel() == sp.vocab_size() + 8
    assert bool(luts.is_boundary[-1]) and int(luts.base_bytes[-1]) == 0


def test_hand_computed_sequence(sp):
    luts = tg.token_byte_luts(sp, sp.vocab_size())
    bos, eos, unk = sp.bos_id(), sp.eos_id(), sp.unk_id()
    the_, cat = piece(sp, "\u2581the"), piece(sp, "cat")
    e2, x82, xac = piece(sp, "<0xE2>"), piece(sp, "<0x82>"), piece(sp, "<0xAC>")
    ids = [bos, the_, cat, the_, e2, x82, xac, the_, eos, bos, cat, unk, the_, bos, the_]
    expected = [
        3,  # "▁the" right after BOS: the "▁" is not counted
        3,  # "cat"
        4,  # "▁the" mid-text: 1 for the space + 3
        1, 1, 1,  # byte-fallback pieces of "€": one byte each
        4,  # "▁the" after a byte piece (not a boundary)
        0,  # EOS (control)
        0,  # BOS (control)
        3,  # "cat" after BOS
        0,  # UNK
        3,  # "▁the" after UNK (a boundary): no space byte
        0,  # BOS
        3,  # "▁the" after BOS
    ]
    assert bytes_of(ids, luts) == expected


@pytest.mark.parametrize("text", ["the cat sat on the mat", "the  dog ran 1234 times", "café au lait",
                                  "the € and the 🐈 went home", "ünïcödé \u00e9t\u00e9 the end"])
def test_document_bytes_equal_utf8_length(sp, text):
    """Over a whole document after BOS, the counted bytes are exactly the UTF-8 bytes of its text."""
    luts = tg.token_byte_luts(sp, sp.vocab_size())
    ids = [sp.bos_id()] + sp.encode(text)
    normalized = sp.decode(ids[1:])
    assert sum(bytes_of(ids, luts)) == len(normalized.encode("utf-8"))


# ------------------------------------------------------------------ trained model vs unigram

RUN = {
    "NUM_LAYERS": "2", "MODEL_DIM": "64", "NUM_HEADS": "4", "NUM_KV_HEADS": "2",
    "ITERATIONS": "300", "WARMUP_STEPS": "0", "WARMDOWN_ITERS": "100", "MAX_WALLCLOCK_SECONDS": "0",
    "TRAIN_SEQ_LEN": "64", "TRAIN_BATCH_TOKENS": "2048", "MICRO_BATCHES": "2", "VAL_BATCH_SIZE": "8192",
    "VAL_MAX_TOKENS": "16384", "VAL_LOSS_EVERY": "0", "TRAIN_LOG_EVERY": "100", "KEEP_FLOAT_MAX_NUMEL": "1024",
}


def unigram_val_bpb(env: dict[str, str]) -> float:
    """bpb of the unigram distribution of the training tokens (add-one smoothed) on the same
    validation targets, with the same byte accounting as the trainer."""
    hp = tg.Hyperparameters.from_env(env)
    counts = np.zeros(hp.vocab_size, dtype=np.float64)
    for f in sorted(glob.glob(hp.train_pattern)):
        counts += np.bincount(tg.load_shard(f), minlength=hp.vocab_size)
    logp = torch.from_numpy(np.log((counts + 1) / (counts.sum() + hp.vocab_size)))
    val = tg.load_val_tokens(hp.val_pattern, hp.train_seq_len, hp.val_max_tokens)
    prev, tgt = val[:-1], val[1:]
    luts = tg.token_byte_luts(spm.SentencePieceProcessor(model_file=hp.tokenizer_path), hp.vocab_size)
    nats = -float(logp[tgt].sum())
    return nats / math.log(2) / float(tg.count_target_bytes(prev, tgt, luts).sum())


@pytest.mark.slow
def test_300_iterations_beat_unigram(prepared_512, tmp_path):
    env = {**prepared_512.env(), **RUN}
    proc = subprocess.run([sys.executable, str(SCRIPT)], env={**os.environ, **env, "OUT_DIR": str(tmp_path)},
                          cwd=REPO, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stderr[-3000:]
    trained = json.loads((tmp_path / "metrics.json").read_text())["val_bpb"]
    unigram = unigram_val_bpb(env)
    assert math.isfinite(trained) and math.isfinite(unigram)
    assert trained < unigram, f"trained {trained:.4f} vs unigram {unigram:.4f}"
