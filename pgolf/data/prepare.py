"""Turn a corpus into a tokenizer plus train/val shards in the competition's layout, cached.

A search over vocabulary sizes calls `prepare` from many concurrent trials; each
(corpus content, vocab, settings) is built once under a file lock and then served
from its manifest.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import sys
import time
from collections.abc import Iterable
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from itertools import islice
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .corpus import BUNDLED_NAME, Corpus, corpus_name, file_identity, load_corpus
from .shards import ShardSequenceWriter, read_shard_header
from .tokenizer import BOS_ID, TokenizerSettings, check_vocab_size, train_tokenizer

MANIFEST_NAME = "prepared.json"
FORMAT_VERSION = 1
DEFAULT_VAL_FRACTION = 0.06  # ~6% of documents: ~5-10% of tokens, like a held-out split should be
DEFAULT_SHARD_TOKENS = 100_000_000  # upstream shard size
ENCODE_BATCH_DOCS = 256


def default_cache_dir() -> Path:
    """Where prepared vocabularies live by default: `$PGOLF_CACHE`, else `~/.cache/pgolf`."""
    env = os.environ.get("PGOLF_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "pgolf"


@dataclass(frozen=True)
class Prepared:
    """What a training needs: pass `tokenizer_path` as TOKENIZER_PATH and `data_path` as DATA_PATH."""

    tokenizer_path: Path
    data_path: Path
    vocab_size: int
    corpus: str
    train_tokens: int
    val_tokens: int
    train_docs: int
    val_docs: int
    train_shards: int
    key: str
    cached: bool = False

    def env(self) -> dict[str, str]:
        """The training-script variables this preparation sets."""
        return {
            "DATA_PATH": str(self.data_path),
            "TOKENIZER_PATH": str(self.tokenizer_path),
            "VOCAB_SIZE": str(self.vocab_size),
        }


def _cache_key(corpus: Corpus, vocab_size: int, val_docs: int | None, shard_tokens: int,
               settings: TokenizerSettings) -> str:
    """Identity of a preparation: corpus content, vocab, split (as requested), shard size, tokenizer settings."""
    blob = json.dumps(
        {
            "format": FORMAT_VERSION,
            "corpus_sha256": corpus.sha256,
            "vocab_size": vocab_size,
            "val_docs": val_docs if val_docs is not None else f"fraction:{DEFAULT_VAL_FRACTION}",
            "shard_tokens": shard_tokens,
            "settings": asdict(settings),
        },
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _resolve_val_docs(val_docs: int | None, n_docs: int) -> int:
    if val_docs is None:
        val_docs = max(1, round(n_docs * DEFAULT_VAL_FRACTION))
    if not isinstance(val_docs, int) or val_docs < 1 or val_docs >= n_docs:
        raise ValueError(
            f"val_docs={val_docs!r} must be between 1 and {n_docs - 1} for a corpus of {n_docs} documents"
        )
    return val_docs


def _load_manifest(dataset_dir: Path, key: str) -> dict | None:
    """The manifest if it matches `key` and its shards are intact, else None."""
    try:
        manifest = json.loads((dataset_dir / MANIFEST_NAME).read_text())
    except (OSError, ValueError):
        return None
    if manifest.get("key") != key:
        return None
    try:
        if not (dataset_dir.parent.parent / manifest["tokenizer_path"]).is_file():
            return None
        for name, count in manifest["shards"].items():
            if read_shard_header(dataset_dir / name) != count:
                return None
    except (KeyError, TypeError, ValueError, AttributeError):
        return None
    return manifest


def _from_manifest(manifest: dict, dataset_dir: Path, cached: bool) -> Prepared:
    return Prepared(
        tokenizer_path=dataset_dir.parent.parent / manifest["tokenizer_path"],
        data_path=dataset_dir,
        vocab_size=manifest["vocab_size"],
        corpus=manifest["corpus"],
        train_tokens=manifest["train_tokens"],
        val_tokens=manifest["val_tokens"],
        train_docs=manifest["train_docs"],
        val_docs=manifest["val_docs"],
        train_shards=manifest["train_shards"],
        key=manifest["key"],
        cached=cached,
    )


def _recorded_hashes(out: Path, docs, vocab_size: int) -> dict[str, str]:
    """The corpus hash a previous preparation recorded for the same unchanged file, if any."""
    try:
        path = Path(docs) if docs is not None else None
        name = corpus_name(path) if path is not None else BUNDLED_NAME
        manifest = json.loads((out / "datasets" / f"{name}_sp{vocab_size}" / MANIFEST_NAME).read_text())
        return {json.dumps(manifest["corpus_identity"]): manifest["corpus_sha256"]}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


@contextmanager
def _locked(lock_path: Path):
    """An exclusive fcntl lock held for the block: concurrent preparers of one vocab wait for each other."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _batches(docs: Iterable[str], size: int):
    it = iter(docs)
    while batch := list(islice(it, size)):
        yield batch


def _tokenize_to_shards(sp, corpus: Corpus, n_docs: int, val_docs: int, dataset_dir: Path, shard_tokens: int,
                        quiet: bool, threads: int) -> tuple[dict[str, int], dict[str, int]]:
    """Encode every document as BOS + pieces (no EOS); the first `val_docs` go to val shards, the rest to train."""
    writers = {split: ShardSequenceWriter(dataset_dir, split, shard_tokens) for split in ("val", "train")}
    done = 0
    with tqdm(total=n_docs, desc="tokenize", unit="doc", file=sys.stderr, disable=quiet, leave=False) as bar:
        for batch in _batches(corpus.iter_docs(), ENCODE_BATCH_DOCS):
            for ids in sp.encode(batch, num_threads=threads):
                arr = np.empty(len(ids) + 1, dtype=np.uint16)
                arr[0], arr[1:] = BOS_ID, ids
                writers["val" if done < val_docs else "train"].add(arr)
                done += 1
            bar.update(len(batch))
    return writers["val"].close(), writers["train"].close()


def prepare(
    vocab_size: int,
    out_dir: str | os.PathLike | None = None,
    docs: str | os.PathLike | None = None,
    *,
    val_docs: int | None = None,
    shard_tokens: int = DEFAULT_SHARD_TOKENS,
    settings: TokenizerSettings = TokenizerSettings(),
    threads: int | None = None,
    quiet: bool = False,
    force: bool = False,
) -> Prepared:
    """Train (or reuse) a `vocab_size` BPE tokenizer on `docs` and write train/val shards under `out_dir`.

    Layout: `out_dir/tokenizers/<corpus>_<V>_bpe.model` and
    `out_dir/datasets/<corpus>_sp<V>/fineweb_{train,val}_NNNNNN.bin`, where <corpus>
    is `gutenberg` for the bundled corpus (docs=None) or the docs file's stem.
    The first `val_docs` documents are the validation split. A second call with
    the same inputs returns the cached result without retraining.
    """
    check_vocab_size(vocab_size)
    if shard_tokens < 1:
        raise ValueError(f"shard_tokens={shard_tokens} must be positive")
    # Absolute, so DATA_PATH/TOKENIZER_PATH stay valid for a training started in another directory.
    out = (Path(out_dir) if out_dir is not None else default_cache_dir()).expanduser().absolute()
    threads = threads or max(1, min(4, os.cpu_count() or 1))
    corpus = load_corpus(docs, _recorded_hashes(out, docs, vocab_size))
    if val_docs is not None and (not isinstance(val_docs, int) or val_docs < 1):
        raise ValueError(f"val_docs={val_docs!r} must be a positive number of documents")
    key = _cache_key(corpus, vocab_size, val_docs, shard_tokens, settings)
    dataset_dir = out / "datasets" / f"{corpus.name}_sp{vocab_size}"
    tokenizer_path = out / "tokenizers" / f"{corpus.name}_{vocab_size}_bpe.model"

    if not force and (manifest := _load_manifest(dataset_dir, key)):
        return _from_manifest(manifest, dataset_dir, cached=True)

    with _locked(out / ".locks" / f"{corpus.name}_sp{vocab_size}.lock"):
        # Another process may have finished the same work while we waited.
        if not force and (manifest := _load_manifest(dataset_dir, key)):
            return _from_manifest(manifest, dataset_dir, cached=True)
        started = time.time()
        # Invalidate first: from here until the new manifest lands, nobody takes this entry as ready.
        (dataset_dir / MANIFEST_NAME).unlink(missing_ok=True)
        for old in dataset_dir.glob("fineweb_*.bin"):
            old.unlink()
        dataset_dir.mkdir(parents=True, exist_ok=True)
        n_docs = corpus.count_docs()
        val_docs = _resolve_val_docs(val_docs, n_docs)
        if not quiet:
            print(f"pgolf.data: training {vocab_size}-piece BPE on {corpus.name} "
                  f"({n_docs - val_docs} training documents)", file=sys.stderr)
        sp = train_tokenizer(islice(corpus.iter_docs(), val_docs, None), vocab_size, tokenizer_path, settings,
                             num_threads=threads)

        val_shards, train_shards = _tokenize_to_shards(sp, corpus, n_docs, val_docs, dataset_dir, shard_tokens,
                                                       quiet, threads)
        shards = {**val_shards, **train_shards}
        manifest = {
            "key": key,
            "format": FORMAT_VERSION,
            "corpus": corpus.name,
            "corpus_path": str(corpus.path),
            "corpus_sha256": corpus.sha256,
            "corpus_identity": file_identity(corpus.path),
            "vocab_size": vocab_size,
            "tokenizer_path": str(tokenizer_path.relative_to(out)),  # relative: the cache may be moved
            "settings": asdict(settings),
            "val_docs": val_docs,
            "train_docs": n_docs - val_docs,
            "val_tokens": sum(val_shards.values()),
            "train_tokens": sum(train_shards.values()),
            "train_shards": len(train_shards),
            "shard_tokens": shard_tokens,
            "shards": shards,
            "seconds": round(time.time() - started, 2),
        }
        tmp = dataset_dir / f".{MANIFEST_NAME}.tmp-{os.getpid()}"
        tmp.write_text(json.dumps(manifest, indent=2) + "\n")
        os.replace(tmp, dataset_dir / MANIFEST_NAME)
        if not quiet:
            print(f"pgolf.data: wrote {dataset_dir} ({manifest['train_tokens']} train + "
                  f"{manifest['val_tokens']} val tokens) in {manifest['seconds']} s", file=sys.stderr)
        return _from_manifest(manifest, dataset_dir, cached=False)

