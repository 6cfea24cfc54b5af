"""Tokenize a corpus into shards, in one process or across a Ray cluster, resumably.

The documents are cut into ranges (`Corpus.parts`). Each range is encoded, as the
exporter's `export_shards` does (BOS, then the document's pieces; no EOS), into a
part file under `work_dir`, written atomically with a JSON marker beside it. When
every part exists they are streamed, in document order, into the split's shards
(`ShardSequenceWriter`), so the shards are the same bytes however many workers
made the parts, and a run killed midway keeps its finished parts: rerun it and
only the missing ones are encoded. Memory holds one part per worker plus one shard.
With Ray, every node must see `work_dir` and the documents file at the same path
(the shared folder of a search).
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .corpus import Corpus, DocRange
from .shards import ShardSequenceWriter
from .tokenizer import BOS_ID

ENCODE_BATCH_DOCS = 1024  # the exporter's SP_BATCH_SIZE
READ_BLOCK_TOKENS = 1 << 24  # tokens read from a part at a time while assembling


@dataclass(frozen=True)
class PartDone:
    """An encoded range: its documents and tokens."""

    part: DocRange
    tokens: int

    @property
    def docs(self) -> int:
        return self.part.stop - self.part.start


def _part_paths(work_dir: Path, part: DocRange) -> tuple[Path, Path]:
    stem = f"part_{part.start:012d}_{part.stop:012d}"
    return work_dir / f"{stem}.tok", work_dir / f"{stem}.json"


def finished_part(work_dir: Path, part: DocRange) -> PartDone | None:
    """The part's result if an earlier run finished it (marker present, token file complete)."""
    tokens_path, marker = _part_paths(work_dir, part)
    try:
        tokens = int(json.loads(marker.read_text())["tokens"])
        if tokens_path.stat().st_size == 2 * tokens:
            return PartDone(part, tokens)
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return None


def encode_part(model_proto: bytes, corpus: Corpus, part: DocRange, work_dir: Path, threads: int = 1) -> PartDone:
    """Encode the documents of `part` (each as BOS + pieces) into its part file; atomic."""
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_proto=model_proto)
    tokens_path, marker = _part_paths(work_dir, part)
    tmp = tokens_path.with_name(f".{tokens_path.name}.tmp-{os.getpid()}")
    total, batch = 0, []
    with open(tmp, "wb") as out:
        def flush() -> None:
            nonlocal total
            for ids in sp.encode(batch, out_type=int, num_threads=max(1, threads)):
                arr = np.empty(len(ids) + 1, dtype="<u2")
                arr[0], arr[1:] = BOS_ID, ids
                out.write(arr.tobytes())
                total += arr.size
            batch.clear()

        for text in corpus.iter_docs(part):
            batch.append(text)
            if len(batch) == ENCODE_BATCH_DOCS:
                flush()
        flush()
    os.replace(tmp, tokens_path)
    marker_tmp = marker.with_name(f".{marker.name}.tmp-{os.getpid()}")
    marker_tmp.write_text(json.dumps({"start": part.start, "stop": part.stop, "tokens": total}) + "\n")
    os.replace(marker_tmp, marker)
    return PartDone(part, total)


def _progress(parts: list[DocRange], done: list[PartDone], quiet: bool) -> tqdm:
    bar = tqdm(total=sum(p.stop - p.start for p in parts), initial=sum(d.docs for d in done), desc="tokenize",
               unit="doc", file=sys.stderr, disable=quiet, leave=False, dynamic_ncols=True)
    bar.set_postfix(tokens=f"{sum(d.tokens for d in done):,}")
    return bar


def encode_parts(model_proto: bytes, corpus: Corpus, parts: list[DocRange], work_dir: Path, *,
                 workers: int = 1, threads: int = 1, task_cpus: float = 1, quiet: bool = False
                 ) -> tuple[list[PartDone], int]:
    """Encode every part not finished before: here (workers=1) or as `workers` Ray tasks at a time
    (on the cluster `ray.init` connected to), each asking Ray for `task_cpus` (0 inside a search, whose
    trials may hold every CPU while they wait for the data). Returns all parts' results in order and how
    many were reused."""
    work_dir.mkdir(parents=True, exist_ok=True)
    results = {p: finished_part(work_dir, p) for p in parts}
    reused = [r for r in results.values() if r is not None]
    todo = [p for p in parts if results[p] is None]
    with _progress(parts, reused, quiet) as bar:
        def record(r: PartDone) -> None:
            results[r.part] = r
            bar.update(r.docs)
            bar.set_postfix(tokens=f"{sum(x.tokens for x in results.values() if x):,}")

        if workers <= 1:
            for part in todo:
                record(encode_part(model_proto, corpus, part, work_dir, threads))
        else:
            import ray

            remote = ray.remote(num_cpus=task_cpus, max_retries=2)(encode_part)
            proto_ref = ray.put(model_proto)
            pending, queue = [], list(todo)
            while queue or pending:
                while queue and len(pending) < workers:
                    pending.append(remote.remote(proto_ref, corpus, queue.pop(0), work_dir, 1))
                ready, pending = ray.wait(pending, num_returns=1)
                try:
                    record(ray.get(ready[0]))
                except ray.exceptions.RayTaskError as exc:  # the task's own error (a bad line), in one line
                    raise exc.cause if isinstance(exc.cause, Exception) else exc from None
    return [results[p] for p in parts], len(reused)


def assemble(work_dir: Path, done: list[PartDone], val_docs: int, dataset_dir: Path,
             shard_tokens: int) -> tuple[dict[str, int], dict[str, int]]:
    """Stream the parts, in order, into `fineweb_val_*.bin` (documents before `val_docs`) and
    `fineweb_train_*.bin`; returns each split's shard name -> token count."""
    writers = {split: ShardSequenceWriter(dataset_dir, split, shard_tokens) for split in ("val", "train")}
    for r in done:
        writer = writers["val" if r.part.stop <= val_docs else "train"]
        tokens_path, _ = _part_paths(work_dir, r.part)
        with open(tokens_path, "rb") as f:
            while block := f.read(2 * READ_BLOCK_TOKENS):
                writer.add(np.frombuffer(block, dtype="<u2"))
    return writers["val"].close(), writers["train"].close()
