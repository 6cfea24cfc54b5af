"""Turn a corpus into a tokenizer plus train/val shards, exactly as the competition's exporter would, cached.

The tokenizer is trained on one node (`pgolf.data.tokenizer`); the documents are
encoded here or across a Ray cluster (`pgolf.data.encode`), resumably. A search
over vocabulary sizes calls `prepare` from many concurrent trials; each (corpus
content, vocab, split, settings) is built once under a file lock and then served
from its manifest.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import sys
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from ..cluster import join_cluster
from .corpus import BUNDLED_NAME, Corpus, corpus_name, file_identity, load_corpus
from .encode import assemble, encode_parts
from .shards import read_shard_header
from .tokenizer import TokenizerSettings, check_vocab_size, train_tokenizer

MANIFEST_NAME = "prepared.json"
FORMAT_VERSION = 2  # 2: the exporter's recipe (whole documents, validation included, soft vocab limit)
DEFAULT_VAL_FRACTION = 0.06  # bundled corpus: ~6% of its 1,528 documents
COMPETITION_VAL_DOCS = 50_000  # the exporter's NUM_VAL_DOCS, the default for --docs
DEFAULT_SHARD_TOKENS = 100_000_000  # upstream shard size
DEFAULT_PART_DOCS = 10_000  # documents per encoding task (~20 MB of tokens on FineWeb)


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
            "val_docs": val_docs,
            "shard_tokens": shard_tokens,
            "settings": asdict(settings),
        },
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _check_val_docs(val_docs: int, n_docs: int, bundled: bool) -> None:
    if val_docs >= n_docs:
        hint = "" if bundled else f" (the competition's split takes the first {COMPETITION_VAL_DOCS:,})"
        raise ValueError(f"--val-docs {val_docs} leaves no training documents in a corpus of {n_docs}{hint}; "
                         f"pass --val-docs below {n_docs}")


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


def prepare(
    vocab_size: int,
    out_dir: str | os.PathLike | None = None,
    docs: str | os.PathLike | None = None,
    *,
    val_docs: int | None = None,
    shard_tokens: int = DEFAULT_SHARD_TOKENS,
    settings: TokenizerSettings = TokenizerSettings(),
    threads: int | None = None,
    workers: int = 1,
    address: str | None = None,
    task_cpus: float = 1,
    part_docs: int = DEFAULT_PART_DOCS,
    quiet: bool = False,
    force: bool = False,
) -> Prepared:
    """Train (or reuse) a `vocab_size` BPE tokenizer on `docs` and write train/val shards under `out_dir`.

    Layout: `out_dir/tokenizers/<corpus>_<V>_bpe.model` and
    `out_dir/datasets/<corpus>_sp<V>/fineweb_{train,val}_NNNNNN.bin`, where <corpus>
    is `gutenberg` for the bundled corpus (docs=None) or the docs file's stem.
    The first `val_docs` documents are the validation split (default: 50,000 for a
    docs file, as the competition; ~6% for the bundled corpus). With `workers` > 1 or
    an `address`, documents are encoded by Ray tasks (`pgolf.data.encode`); the result
    is the same bytes. A second call with the same inputs returns the cached result;
    one after a crash reuses the tokenizer and the parts already encoded.
    """
    check_vocab_size(vocab_size)
    if shard_tokens < 1:
        raise ValueError(f"shard_tokens={shard_tokens} must be positive")
    if val_docs is not None and (not isinstance(val_docs, int) or val_docs < 1):
        raise ValueError(f"val_docs={val_docs!r} must be a positive number of documents")
    # Absolute, so DATA_PATH/TOKENIZER_PATH stay valid for a training started in another directory.
    out = (Path(out_dir) if out_dir is not None else default_cache_dir()).expanduser().absolute()
    threads = threads or max(1, min(4, os.cpu_count() or 1))
    corpus = load_corpus(docs, _recorded_hashes(out, docs, vocab_size))
    if val_docs is None and docs is not None:
        val_docs = COMPETITION_VAL_DOCS
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
        work_dir = dataset_dir / f".work-{key}"  # the tokenizer's hash and encoded parts of this key: kept on a crash
        for stale in dataset_dir.glob(".work-*"):
            if stale != work_dir or force:
                shutil.rmtree(stale)
        work_dir.mkdir(parents=True, exist_ok=True)
        if val_docs is None:
            val_docs = max(1, round(corpus.count_docs() * DEFAULT_VAL_FRACTION))
        parts = corpus.parts(part_docs, cuts=(val_docs,))
        n_docs = parts[-1].stop if parts else 0
        if n_docs < 2:
            raise ValueError(f"{corpus.path}: {n_docs} documents; need at least 2 (validation + training)")
        _check_val_docs(val_docs, n_docs, docs is None)

        clock = [time.time()]
        model_proto = _tokenizer(corpus, vocab_size, tokenizer_path, settings, work_dir, threads, quiet)
        clock.append(time.time())
        with _ray(workers, address) as ray_workers:
            clock.append(time.time())
            done, reused = encode_parts(model_proto, corpus, parts, work_dir, workers=ray_workers, threads=threads,
                                        task_cpus=task_cpus, quiet=quiet)
            clock.append(time.time())
        if reused and not quiet:
            print(f"pgolf.data: resumed: {reused} of {len(parts)} parts were encoded by an earlier run",
                  file=sys.stderr)
        val_shards, train_shards = assemble(work_dir, done, val_docs, dataset_dir, shard_tokens)
        clock.append(time.time())
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
            "parts": len(parts),
            "parts_reused": reused,
            "workers": ray_workers,  # 1: encoded in this process
            "seconds": round(time.time() - started, 2),
            # tokenizer training, joining/starting Ray, encoding the parts, writing the shards
            "phase_seconds": dict(zip(("tokenizer", "ray_start", "encode", "assemble"),
                                      (round(b - a, 2) for a, b in zip(clock, clock[1:])))),
        }
        tmp = dataset_dir / f".{MANIFEST_NAME}.tmp-{os.getpid()}"
        tmp.write_text(json.dumps(manifest, indent=2) + "\n")
        os.replace(tmp, dataset_dir / MANIFEST_NAME)
        shutil.rmtree(work_dir, ignore_errors=True)
        if not quiet:
            print(f"pgolf.data: wrote {dataset_dir} ({manifest['train_tokens']} train + "
                  f"{manifest['val_tokens']} val tokens) in {manifest['seconds']} s", file=sys.stderr)
        return _from_manifest(manifest, dataset_dir, cached=False)


def _tokenizer(corpus: Corpus, vocab_size: int, path: Path, settings: TokenizerSettings, work_dir: Path,
               threads: int, quiet: bool) -> bytes:
    """The tokenizer's model bytes: trained on this node, or the one an interrupted run of this key left."""
    marker = work_dir / "tokenizer.sha256"
    if path.is_file() and marker.is_file():
        proto = path.read_bytes()
        if hashlib.sha256(proto).hexdigest() == marker.read_text().strip():
            return proto
    if not quiet:
        print(f"pgolf.data: training {vocab_size}-piece BPE on {corpus.name} (all documents, as the "
              "competition's exporter)", file=sys.stderr)
    train_tokenizer(corpus.iter_docs(), vocab_size, path, settings, num_threads=threads)
    proto = path.read_bytes()
    marker.write_text(hashlib.sha256(proto).hexdigest() + "\n")
    return proto


@contextmanager
def _ray(workers: int, address: str | None):
    """How many Ray tasks encode at once (1: none, encode here); connects to `address` or starts a local
    Ray when asked for workers and none is running, and disconnects what it started."""
    if workers <= 1 and address is None:
        yield 1
        return
    import ray

    started = not ray.is_initialized()
    if started and address:
        join_cluster(address, log_to_driver=False, logging_level="ERROR")
    elif started:
        ray.init(address="local", include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    try:
        yield workers if workers > 1 else max(1, int(ray.cluster_resources().get("CPU", 1)))
    finally:
        if started:
            ray.shutdown()
