"""How fast `pgolf.data prepare` turns documents into a tokenizer and shards, next to the competition's exporter.

Each row is one fresh process on the same documents file, run one after the
other in this one run: our `prepare` with 1 worker (this process, its encoder
threads) and with 2 workers (Ray tasks on a local Ray), and, when given
`--exporter PATH` (a copy of openai/parameter-golf's
`data/download_hf_docs_and_tokenize.py`, never part of this project), that
exporter's `build_sentencepiece_tokenizer` + `export_shards` in one process with
its own threads. Printed: wall seconds (tokenizer training included), documents
and tokens per second, the ratio to the exporter's time, and the memory peak
(summed resident memory of the process tree, Ray's processes included, sampled
every 0.1 s); then our rows' phases from their manifests (tokenizer training,
Ray's start, encoding, writing the shards). The shards of every row are
compared byte for byte.

    .venv/bin/python bench/data_throughput.py [--exporter /tmp/upstream/data/download_hf_docs_and_tokenize.py]
                                              [--copies 4] [--vocab 1024] [--out bench/results/data_throughput.txt]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pgolf.data import load_corpus  # noqa: E402
from search.runner.process import descendants  # noqa: E402

SHARD_TOKENS = 1_000_000

EXPORTER_DRIVER = """
import sys, types
from pathlib import Path
hub = types.ModuleType("huggingface_hub"); hub.hf_hub_download = None  # the exporter's download is not used
utils = types.ModuleType("huggingface_hub.utils"); utils.EntryNotFoundError = LookupError
sys.modules.update({"huggingface_hub": hub, "huggingface_hub.utils": utils})
exporter, docs, out, vocab, val, shard = sys.argv[1:7]
sys.path.insert(0, str(Path(exporter).parent))
module = __import__(Path(exporter).stem)
tok = module.build_sentencepiece_tokenizer(spec={"vocab_size": int(vocab)}, docs_jsonl=Path(docs),
                                           tokenizers_dir=Path(out) / "tokenizers")
module.export_shards(Path(docs), tok, Path(out) / "datasets", num_val_docs=int(val), shard_size=int(shard),
                     docs_total=module.count_docs(Path(docs)))
"""


PAGE = os.sysconf("SC_PAGE_SIZE")


def _tree_rss(pid: int) -> int:
    """Resident bytes of a process and all its descendants (Ray's workers included), from /proc."""
    total = 0
    for p in [pid, *descendants(pid)]:
        try:
            total += int(Path(f"/proc/{p}/statm").read_text().split()[1]) * PAGE
        except (OSError, ValueError, IndexError):
            pass
    return total


def timed(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, int]:
    """Run `cmd`; its wall seconds and the peak resident memory of its process tree."""
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})})
    peak = [0]

    def sample() -> None:
        while proc.poll() is None:
            peak[0] = max(peak[0], _tree_rss(proc.pid))
            time.sleep(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, err = proc.communicate()
    seconds = time.perf_counter() - started
    sampler.join()
    if proc.returncode != 0:
        raise SystemExit(f"error: {' '.join(cmd[:4])}… failed: {err.strip().splitlines()[-1] if err.strip() else ''}")
    return seconds, peak[0]


def shard_digest(folder: Path) -> tuple[str, int]:
    h, tokens = hashlib.sha256(), 0
    for shard in sorted(folder.glob("fineweb_*.bin")):
        data = shard.read_bytes()
        h.update(shard.name.encode() + data)
        tokens += (len(data) - 1024) // 2
    return h.hexdigest(), tokens


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--exporter", type=Path, default=None, help="a copy of the competition's exporter script")
    parser.add_argument("--copies", type=int, default=16, help="the bundled corpus this many times over")
    parser.add_argument("--vocab", type=int, default=1024)
    parser.add_argument("--out", type=Path, default=None, help="also write the table here")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="pgolf-data-bench-"))
    docs_path = work / "docs.jsonl"
    texts = load_corpus().docs
    with open(docs_path, "w") as f:
        for _ in range(args.copies):
            f.writelines(json.dumps({"text": t}) + "\n" for t in texts)
    n_docs, val = len(texts) * args.copies, 500
    prepare = [sys.executable, "-m", "pgolf.data", "prepare", "--vocab", str(args.vocab), "--docs", str(docs_path),
               "--val-docs", str(val), "--shard-tokens", str(SHARD_TOKENS), "--quiet", "--part-docs", "2000"]
    runs = [("pgolf prepare, 1 worker", f"this process, {min(4, os.cpu_count() or 1)} threads", prepare + [
        "--out", str(work / "one")], work / "one" / "datasets" / f"docs_sp{args.vocab}"),
            ("pgolf prepare, 2 workers", "2 Ray tasks, 1 thread each", prepare + [
        "--out", str(work / "two"), "--workers", "2"], work / "two" / "datasets" / f"docs_sp{args.vocab}")]
    if args.exporter is not None:
        runs.append(("competition exporter", f"one process, {os.cpu_count()} threads", [
            sys.executable, "-c", EXPORTER_DRIVER, str(args.exporter.resolve()), str(docs_path), str(work / "up"),
            str(args.vocab), str(val), str(SHARD_TOKENS)], work / "up" / "datasets"))

    results = []
    for name, how, cmd, shards in runs:
        print(f"running: {name} ({how})", file=sys.stderr, flush=True)
        seconds, peak = timed(cmd)
        digest, tokens = shard_digest(shards)
        manifest = shards / "prepared.json"
        phases = json.loads(manifest.read_text())["phase_seconds"] if manifest.is_file() else None
        results.append((name, how, seconds, peak, digest, tokens, phases))

    base = results[-1][2]
    lines = [f"documents: the bundled corpus x{args.copies} = {n_docs} docs, "
             f"{docs_path.stat().st_size / 1e6:.1f} MB; vocab {args.vocab}; {os.cpu_count()} CPUs",
             f"{'run':26} {'how':34} {'seconds':>8} {'docs/s':>8} {'tokens/s':>10} {'time ratio':>10} {'peak MB':>8}"]
    for name, how, seconds, peak, _, tokens, _ in results:
        lines.append(f"{name:26} {how:34} {seconds:8.1f} {n_docs / seconds:8.0f} {tokens / seconds:10.0f} "
                     f"{seconds / base:10.2f} {peak / 1e6:8.0f}")
    lines.append("")
    lines.append(f"{'run':26} {'tokenizer s':>11} {'ray start s':>11} {'encode s':>9} {'assemble s':>10} "
                 f"{'encode docs/s':>13} {'encode tokens/s':>15}")
    for name, _, _, _, _, tokens, phases in results:
        if phases:
            lines.append(f"{name:26} {phases['tokenizer']:11.1f} {phases['ray_start']:11.1f} {phases['encode']:9.1f} "
                         f"{phases['assemble']:10.1f} {n_docs / phases['encode']:13.0f} "
                         f"{tokens / phases['encode']:15.0f}")
    same = len({r[4] for r in results}) == 1
    lines.append(f"time ratio: seconds / the last row's; shards byte-identical across rows: {'yes' if same else 'NO'}")
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
