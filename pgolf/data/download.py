"""Fetch the published FineWeb shards and tokenizer from the Hugging Face hub.

Mirrors the layout of upstream `data/cached_challenge_fineweb.py`: the hub dataset
`willdepueoai/parameter-golf` holds, under the root prefix `datasets/`,
`manifest.json`, `datasets/fineweb10B_sp<V>/fineweb_{val,train}_NNNNNN.bin` and
`tokenizers/fineweb_<V>_bpe.{model,vocab}`. Locally they land as
`OUT/datasets/fineweb10B_sp<V>/…`, `OUT/tokenizers/…` and `OUT/manifest.json`,
the layout the training scripts expect (`DATA_PATH`, `TOKENIZER_PATH`).
Community exports of other vocabularies in the same layout are fetched with
`--repo-id`/`--remote-root`. A rerun keeps the files already whole, and what
landed is verified against the manifest (shard headers, token counts, pieces).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from tqdm import tqdm

from .shards import ShardFormatError, read_shard_header, shard_name

DEFAULT_REPO_ID = "willdepueoai/parameter-golf"
DEFAULT_REMOTE_ROOT = "datasets"
DOCS_FILES = ("docs_selected.jsonl", "docs_selected.source_manifest.json")
_VARIANT_RE = re.compile(r"^sp([1-9][0-9]*)$")


class DownloadError(RuntimeError):
    """The hub could not deliver a file (the message says which and what to do)."""


@dataclass(frozen=True)
class DownloadSpec:
    """What to fetch: a tokenizer variant (`sp1024`), a prefix of its training shards, and where to put it."""

    variant: str = "sp1024"
    train_shards: int = 1
    out_dir: Path = Path("data")
    repo_id: str = DEFAULT_REPO_ID
    remote_root: str = DEFAULT_REMOTE_ROOT
    with_docs: bool = False  # also the raw documents, to re-tokenize with `prepare --docs`

    def __post_init__(self) -> None:
        if not _VARIANT_RE.match(self.variant):
            raise ValueError(f"variant {self.variant!r} is not of the form sp<VOCAB>, e.g. sp1024")
        if not isinstance(self.train_shards, int) or self.train_shards < 0:
            raise ValueError(f"train_shards={self.train_shards!r} must be a non-negative integer")

    @property
    def vocab_size(self) -> int:
        return int(_VARIANT_RE.match(self.variant).group(1))

    @property
    def dataset_name(self) -> str:
        return f"fineweb10B_{self.variant}"

    def remote(self, relative: str) -> str:
        return f"{self.remote_root.strip('/')}/{relative}" if self.remote_root.strip("/") else relative

    def local(self, relative: str) -> Path:
        return Path(self.out_dir) / relative


@dataclass(frozen=True)
class DownloadPlan:
    """The files to fetch, as paths relative to the remote root (= relative to OUT locally)."""

    val_shards: int
    train_shards: int
    tokenizer_files: tuple[str, ...]
    dataset_name: str
    with_docs: bool = False

    def files(self) -> list[str]:
        prefix = f"datasets/{self.dataset_name}"
        out = list(DOCS_FILES) if self.with_docs else []
        out += [f"{prefix}/{shard_name('val', i)}" for i in range(self.val_shards)]
        out += [f"{prefix}/{shard_name('train', i)}" for i in range(self.train_shards)]
        return out + list(self.tokenizer_files)


def plan_downloads(spec: DownloadSpec, manifest: dict | None = None) -> DownloadPlan:
    """Which files to fetch; shard counts and tokenizer paths come from the hub's manifest when given."""
    V = spec.vocab_size
    tokenizer_files: tuple[str, ...] = (f"tokenizers/fineweb_{V}_bpe.model", f"tokenizers/fineweb_{V}_bpe.vocab")
    val_shards = 1
    if manifest is not None:
        entry = _dataset_entry(manifest, spec.dataset_name)
        if entry is None:
            known = sorted(d.get("name", "?") for d in manifest.get("datasets", []))
            raise ValueError(
                f"{spec.dataset_name} is not published on {spec.repo_id} (available: {', '.join(known) or 'none'}); "
                "pick another --variant"
            )
        stats = entry.get("stats") or {}
        val_shards = int(stats.get("files_val", val_shards))
        max_train = stats.get("files_train")
        if max_train is not None and spec.train_shards > int(max_train):
            raise ValueError(
                f"{spec.variant} has {int(max_train)} training shards on {spec.repo_id}, "
                f"asked for {spec.train_shards}; lower --train-shards"
            )
        tok = next((t for t in manifest.get("tokenizers", []) if t.get("name") == entry.get("tokenizer_name")), None)
        if tok:
            paths = tuple(str(tok[k]) for k in ("model_path", "vocab_path", "path") if tok.get(k))
            tokenizer_files = paths or tokenizer_files
    return DownloadPlan(val_shards, spec.train_shards, tokenizer_files, spec.dataset_name, spec.with_docs)


Fetcher = Callable[[DownloadSpec, str], Path]  # (spec, remote path) -> a local file holding it


def hub_fetcher(spec: DownloadSpec, remote_path: str) -> Path:
    """The one network call: a file of the hub dataset, through the hub's cache (which resumes a partial
    download itself). Everything around it is tested offline with a local folder in its place."""
    try:
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import (
            EntryNotFoundError,
            HfHubHTTPError,
            LocalEntryNotFoundError,
            RepositoryNotFoundError,
        )
    except ImportError:
        raise DownloadError("huggingface_hub is not installed; run `pip install huggingface_hub`") from None
    remote = Path(remote_path)
    try:
        return Path(hf_hub_download(
            repo_id=spec.repo_id,
            filename=remote.name,
            subfolder=remote.parent.as_posix() if remote.parent != Path(".") else None,
            repo_type="dataset",
        ))
    except LocalEntryNotFoundError:
        raise DownloadError(
            f"cannot fetch {remote} from {spec.repo_id}: the hub is unreachable or HF_HUB_OFFLINE is set, "
            f"and it is not in the local cache; go online or copy the files into {spec.out_dir}"
        ) from None
    except (EntryNotFoundError, RepositoryNotFoundError) as exc:
        raise DownloadError(
            f"{remote} is not on {spec.repo_id} ({type(exc).__name__}); check --variant/--repo-id/--remote-root"
        ) from None
    except (HfHubHTTPError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DownloadError(f"cannot fetch {remote} from {spec.repo_id}: {first}; retry or check the network") from None


def _fetch(spec: DownloadSpec, relative: str, fetcher: Fetcher) -> Path:
    """One file under OUT: kept if already there and whole (a shard's header and size agree), else fetched
    and placed atomically (hard link or copy), so an interrupted download leaves no partial file behind."""
    destination = spec.local(relative)
    if destination.is_file():
        if destination.suffix != ".bin":
            return destination
        try:
            read_shard_header(destination)
            return destination
        except ShardFormatError:
            destination.unlink()
    source = Path(fetcher(spec, spec.remote(relative))).resolve(strict=True)
    destination.parent.mkdir(parents=True, exist_ok=True)
    tmp = destination.with_name(f".{destination.name}.tmp-{os.getpid()}")
    try:
        os.link(source, tmp)
    except OSError:
        shutil.copyfile(source, tmp)
    if destination.suffix == ".bin":
        try:
            read_shard_header(tmp)
        except ShardFormatError as exc:
            tmp.unlink()
            raise DownloadError(f"{spec.remote(relative)} from {spec.repo_id} is not a whole shard "
                                f"({str(exc).split(': ', 1)[-1]}); run the download again") from None
    os.replace(tmp, destination)
    return destination


def verify(spec: DownloadSpec, plan: DownloadPlan, manifest: dict | None) -> dict[str, int]:
    """Check what landed against the manifest: every shard's header, the validation tokens, each training
    shard but the last full, and the tokenizer's piece count; returns shard name -> tokens."""
    counts = {}
    for relative in plan.files():
        if relative.endswith(".bin"):
            counts[Path(relative).name] = read_shard_header(spec.local(relative))
    entry = _dataset_entry(manifest, spec.dataset_name) if manifest else None
    stats = (entry or {}).get("stats") or {}
    val = sum(n for name, n in counts.items() if name.startswith("fineweb_val_"))
    if stats.get("tokens_val") is not None and val != int(stats["tokens_val"]):
        raise DownloadError(f"the validation shards hold {val} tokens, the manifest says {stats['tokens_val']}; "
                            f"delete {spec.local('datasets/' + spec.dataset_name)} and download again")
    shard_size = (manifest or {}).get("shard_size")
    total_train = stats.get("files_train")
    for i in range(plan.train_shards):
        name = shard_name("train", i)
        last = total_train is not None and i == int(total_train) - 1
        if shard_size and not last and counts[name] != int(shard_size):
            raise DownloadError(f"{name} holds {counts[name]} tokens, not the manifest's {shard_size} per shard; "
                                f"delete it and download again")
    for relative in plan.tokenizer_files:
        if relative.endswith(".model"):
            import sentencepiece as spm

            pieces = spm.SentencePieceProcessor(model_file=str(spec.local(relative))).get_piece_size()
            if pieces != spec.vocab_size:
                raise DownloadError(f"{relative} has {pieces} pieces, not {spec.vocab_size}; "
                                    "check --variant and --repo-id")
    return counts


def _dataset_entry(manifest: dict, name: str) -> dict | None:
    return next((d for d in manifest.get("datasets", []) if d.get("name") == name), None)


def download(spec: DownloadSpec, quiet: bool = False, use_manifest: bool = True,
             fetcher: Fetcher = hub_fetcher) -> DownloadPlan:
    """Fetch the manifest, the validation shards, the first `train_shards` training shards and the tokenizer,
    skipping files a previous (interrupted) run left whole, then `verify` them."""
    for stale in Path(spec.out_dir).glob("**/.*.tmp-*"):
        stale.unlink(missing_ok=True)
    manifest = None
    if use_manifest:
        manifest = json.loads(_fetch(spec, "manifest.json", fetcher).read_text(encoding="utf-8"))
    plan = plan_downloads(spec, manifest)
    for relative in tqdm(plan.files(), desc=f"download {spec.variant}", unit="file", file=sys.stderr, disable=quiet):
        _fetch(spec, relative, fetcher)
    verify(spec, plan, manifest)
    return plan
