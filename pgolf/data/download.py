"""Fetch the published FineWeb shards and tokenizer from the Hugging Face hub.

Mirrors the layout of upstream `data/cached_challenge_fineweb.py`: the hub dataset
`willdepueoai/parameter-golf` holds, under the root prefix `datasets/`,
`manifest.json`, `datasets/fineweb10B_sp<V>/fineweb_{val,train}_NNNNNN.bin` and
`tokenizers/fineweb_<V>_bpe.{model,vocab}`. Locally they land as
`OUT/datasets/fineweb10B_sp<V>/…`, `OUT/tokenizers/…` and `OUT/manifest.json`,
the layout the training scripts expect (`DATA_PATH`, `TOKENIZER_PATH`).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

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
        entry = next((d for d in manifest.get("datasets", []) if d.get("name") == spec.dataset_name), None)
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


def _fetch(spec: DownloadSpec, relative: str) -> Path:
    """Download one file through the hub cache and place it (hard link or copy) under OUT."""
    destination = spec.local(relative)
    if destination.is_file():
        if destination.suffix != ".bin":
            return destination
        try:
            read_shard_header(destination)
            return destination
        except ShardFormatError:
            destination.unlink()
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
    remote = Path(spec.remote(relative))
    try:
        cached = hf_hub_download(
            repo_id=spec.repo_id,
            filename=remote.name,
            subfolder=remote.parent.as_posix() if remote.parent != Path(".") else None,
            repo_type="dataset",
        )
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
    source = Path(cached).resolve(strict=True)
    destination.parent.mkdir(parents=True, exist_ok=True)
    tmp = destination.with_name(f".{destination.name}.tmp-{os.getpid()}")
    try:
        os.link(source, tmp)
    except OSError:
        shutil.copyfile(source, tmp)
    os.replace(tmp, destination)
    return destination


def download(spec: DownloadSpec, quiet: bool = False, use_manifest: bool = True) -> DownloadPlan:
    """Fetch the manifest, the validation shards, the first `train_shards` training shards and the tokenizer."""
    manifest = None
    if use_manifest:
        manifest = json.loads(_fetch(spec, "manifest.json").read_text(encoding="utf-8"))
    plan = plan_downloads(spec, manifest)
    for relative in tqdm(plan.files(), desc=f"download {spec.variant}", unit="file", file=sys.stderr, disable=quiet):
        _fetch(spec, relative)
    return plan
