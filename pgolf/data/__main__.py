"""`python -m pgolf.data prepare|download`: make training data in the competition's layout.

prepare   make a tokenizer and shards from the bundled corpus (or --docs FILE.jsonl) exactly as the
          competition's exporter does; --address/--workers encode on a Ray cluster, resumably
download  fetch published shards and tokenizer (the competition's, or a community export) from the hub

Bad input exits with code 2 and one `error:` line on stderr.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..cluster import ClusterError
from .corpus import CorpusError
from .download import DEFAULT_REMOTE_ROOT, DEFAULT_REPO_ID, DownloadError, DownloadSpec, download, plan_downloads
from .prepare import COMPETITION_VAL_DOCS, DEFAULT_PART_DOCS, DEFAULT_SHARD_TOKENS, default_cache_dir, prepare
from .shards import ShardFormatError
from .tokenizer import TokenizerError, TokenizerSettings


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, same shape as our other errors
        self.exit(2, f"error: {message}; see `{self.prog} --help`\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m pgolf.data", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("prepare", help="train a tokenizer and write train/val shards (cached)")
    p.add_argument("--vocab", type=int, required=True, help="SentencePiece vocabulary size, e.g. 1024")
    p.add_argument("--docs", type=Path, default=None,
                   help="JSONL file, one {\"text\": ...} per line (default: bundled Gutenberg corpus)")
    p.add_argument("--out", type=Path, default=None,
                   help=f"output root holding tokenizers/ and datasets/ (default: $PGOLF_CACHE or {default_cache_dir()})")
    p.add_argument("--val-docs", type=int, default=None,
                   help=f"first N documents form the validation split (default: {COMPETITION_VAL_DOCS:,} for "
                        "--docs, as the competition; ~6%% of the bundled corpus)")
    p.add_argument("--shard-tokens", type=int, default=DEFAULT_SHARD_TOKENS, help="tokens per shard file")
    p.add_argument("--tokenizer-train-docs", type=int, default=None,
                   help="train the tokenizer on the first N documents only (the exporter's option of the same "
                        "name; a deterministic sample for huge --docs files; default: all)")
    p.add_argument("--threads", type=int, default=None, help="encoder threads here (default: min(4, CPUs))")
    p.add_argument("--address", default=None,
                   help="encode on this Ray cluster ('auto': the one `ray start` runs here); every node must "
                        "see --docs and --out at the same path")
    p.add_argument("--workers", type=int, default=1,
                   help="Ray tasks encoding at once (default: 1 = this process; with --address: the cluster's CPUs)")
    p.add_argument("--part-docs", type=int, default=DEFAULT_PART_DOCS,
                   help="documents per encoding task; finished parts survive a crash (default %(default)s)")
    p.add_argument("--force", action="store_true", help="rebuild even when a matching cached result exists")
    p.add_argument("--quiet", action="store_true", help="no progress bars")

    d = sub.add_parser("download", help="fetch published FineWeb shards from the Hugging Face hub")
    d.add_argument("--variant", default="sp1024", help="tokenizer variant sp<VOCAB> (default sp1024)")
    d.add_argument("--train-shards", type=int, default=1, help="how many training shards (100M tokens each)")
    d.add_argument("--out", type=Path, default=Path("data"), help="output root (default ./data)")
    d.add_argument("--repo-id", default=DEFAULT_REPO_ID, help=f"hub dataset (default {DEFAULT_REPO_ID})")
    d.add_argument("--remote-root", default=DEFAULT_REMOTE_ROOT, help="folder in the hub dataset (default datasets)")
    d.add_argument("--skip-manifest", action="store_true",
                   help="do not fetch manifest.json; assume 1 validation shard and the usual tokenizer names")
    d.add_argument("--with-docs", action="store_true",
                   help="also fetch docs_selected.jsonl (the raw documents, large) to re-tokenize with `prepare --docs`")
    d.add_argument("--list", action="store_true", help="print the files that would be fetched, fetch nothing")
    d.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "prepare":
            if args.tokenizer_train_docs is not None and args.tokenizer_train_docs < 1:
                raise ValueError(f"--tokenizer-train-docs {args.tokenizer_train_docs} must be positive")
            if args.part_docs < 1 or args.workers < 1:
                raise ValueError("--part-docs and --workers must be positive")
            settings = TokenizerSettings(train_docs=args.tokenizer_train_docs)
            result = prepare(args.vocab, args.out, args.docs, val_docs=args.val_docs, shard_tokens=args.shard_tokens,
                             settings=settings, threads=args.threads, workers=args.workers, address=args.address,
                             part_docs=args.part_docs, quiet=args.quiet, force=args.force)
            for name, value in result.env().items():
                print(f"{name}={value}")
            print(f"# {result.train_tokens} train tokens, {result.val_tokens} val tokens, "
                  f"{result.val_docs} val docs{' (cached)' if result.cached else ''}")
        else:
            spec = DownloadSpec(args.variant, args.train_shards, args.out, args.repo_id, args.remote_root,
                                args.with_docs)
            if args.list:
                for relative in ["manifest.json"] * (not args.skip_manifest) + plan_downloads(spec).files():
                    print(spec.remote(relative))
                return 0
            plan = download(spec, quiet=args.quiet, use_manifest=not args.skip_manifest)
            V = spec.vocab_size
            print(f"DATA_PATH={spec.local('datasets/' + spec.dataset_name)}")
            print(f"TOKENIZER_PATH={spec.local(plan.tokenizer_files[0])}")
            print(f"VOCAB_SIZE={V}")
            if spec.with_docs:
                print(f"# re-tokenize: python -m pgolf.data prepare --vocab N "
                      f"--docs {spec.local('docs_selected.jsonl')} --val-docs 50000")
    except (CorpusError, TokenizerError, ShardFormatError, DownloadError, ValueError, ClusterError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
