"""Make tests/fixtures/exporter_reference.json: run the competition's exporter on the documents of tests/helpers.py (`write_reference_docs`).

The exporter is not part of this project: pass the path of a temporary copy of
openai/parameter-golf's `data/download_hf_docs_and_tokenize.py`, e.g.

    git -C parameter-golf show 4908dc4:data/download_hf_docs_and_tokenize.py > /tmp/up/download_hf_docs_and_tokenize.py
    .venv/bin/python tests/scripts/exporter_reference.py /tmp/up/download_hf_docs_and_tokenize.py /tmp/upref

It calls the exporter's `build_sentencepiece_tokenizer` and `export_shards` (its
download, the only use of `huggingface_hub`, is stubbed out) and prints the
digests the test compares with.
"""

import hashlib
import json
import sys
import types
from pathlib import Path

hub = types.ModuleType("huggingface_hub")
hub.hf_hub_download = None
utils = types.ModuleType("huggingface_hub.utils")
utils.EntryNotFoundError = LookupError
sys.modules.update({"huggingface_hub": hub, "huggingface_hub.utils": utils})

exporter, out = Path(sys.argv[1]).resolve(), Path(sys.argv[2])
sys.path.insert(0, str(exporter.parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
up = __import__(exporter.stem)
import sentencepiece as spm  # noqa: E402

import helpers  # noqa: E402

out.mkdir(parents=True, exist_ok=True)
docs = helpers.write_reference_docs(out / "docs.jsonl")
tok = up.build_sentencepiece_tokenizer(spec={"vocab_size": helpers.EXPORTER_VOCAB}, docs_jsonl=docs, tokenizers_dir=out / "tokenizers")
stats = up.export_shards(docs, tok, out / "datasets", num_val_docs=helpers.EXPORTER_VAL_DOCS, shard_size=helpers.EXPORTER_SHARD_TOKENS,
                         docs_total=up.count_docs(docs))
sp = spm.SentencePieceProcessor(model_file=str(out / "tokenizers" / f"fineweb_{helpers.EXPORTER_VOCAB}_bpe.model"))
pieces = "".join(f"{sp.id_to_piece(i)}\t{sp.get_score(i)!r}\n" for i in range(sp.get_piece_size()))
print(json.dumps({
    "docs_sha256": hashlib.sha256(docs.read_bytes()).hexdigest(),
    "pieces": sp.get_piece_size(),
    "pieces_sha256": hashlib.sha256(pieces.encode()).hexdigest(),
    "shards": {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted((out / "datasets").glob("*.bin"))},
    "stats": stats,
}, indent=2))
