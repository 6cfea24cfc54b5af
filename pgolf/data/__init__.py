"""Data for Parameter Golf trainings: corpus, SentencePiece tokenizers and token shards.

Everything is written in the competition's layout and binary format, so the
upstream `train_gpt.py` and ours read it unchanged. CLI: `python -m pgolf.data`.
"""

from .corpus import BUNDLED_CORPUS, Corpus, CorpusError, load_corpus
from .download import DownloadError, DownloadSpec, download, plan_downloads
from .prepare import Prepared, default_cache_dir, prepare
from .shards import ShardFormatError, read_shard, shard_name, write_shard
from .tokenizer import TokenizerError, TokenizerSettings

__all__ = [
    "BUNDLED_CORPUS",
    "Corpus",
    "CorpusError",
    "DownloadError",
    "DownloadSpec",
    "Prepared",
    "ShardFormatError",
    "TokenizerError",
    "TokenizerSettings",
    "default_cache_dir",
    "download",
    "load_corpus",
    "plan_downloads",
    "prepare",
    "read_shard",
    "shard_name",
    "write_shard",
]
