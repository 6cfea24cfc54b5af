"""A space with DOCS: the search prepares each vocab's tokenizer and shards from the documents file once,
on the shared data folder, and its trials train on them (real Ray, real SentencePiece, the real trainer)."""

from __future__ import annotations

import pytest
import json
import subprocess
import sys
from pathlib import Path

from pgolf.data import load_corpus
from search.store.trials_csv import read_trials_csv

ROOT = Path(__file__).resolve().parents[2]
VOCABS = (512, 640, 768)


@pytest.mark.slow
def test_a_smoke_search_over_three_vocabs_prepares_each_once_from_docs(tmp_path: Path, experiment_intact) -> None:
    docs = tmp_path / "my_docs.jsonl"
    docs.write_text("".join(json.dumps({"text": d}) + "\n" for d in load_corpus().docs[:400]))
    space = tmp_path / "vocabs.py"
    points = [{"VOCAB_SIZE": v, "NUM_LAYERS": layers} for layers in (1, 2) for v in VOCABS]
    space.write_text(
        f"SCRIPT = {str(ROOT / 'pgolf' / 'train_gpt.py')!r}\n"
        f"DOCS = {str(docs)!r}\nDOCS_VAL_DOCS = 40\n"
        "SMOKE_ENV = {'ITERATIONS': 6, 'WARMDOWN_ITERS': 2, 'WARMUP_STEPS': 0, 'TRAIN_BATCH_TOKENS': 2048,\n"
        "             'TRAIN_SEQ_LEN': 64, 'MICRO_BATCHES': 1, 'VAL_BATCH_SIZE': 4096, 'VAL_MAX_TOKENS': 4096,\n"
        "             'VAL_LOSS_EVERY': 0, 'TRAIN_LOG_EVERY': 3, 'TORCH_COMPILE': 0, 'MAX_WALLCLOCK_SECONDS': 0,\n"
        "             'MODEL_DIM': 32, 'NUM_HEADS': 2, 'NUM_KV_HEADS': 1}\n"
        "SMOKE_BUDGET_BYTES = 400_000\n"
        f"SMOKE_POINTS_TO_EVALUATE = {points!r}\n"
        "def space(trial):\n"
        f"    return {{'VOCAB_SIZE': trial.suggest_categorical('VOCAB_SIZE', {list(VOCABS)!r}),\n"
        "            'NUM_LAYERS': trial.suggest_int('NUM_LAYERS', 1, 2)}\n")
    results = tmp_path / "results"
    proc = subprocess.run([sys.executable, "-m", "search.run", str(space), "--smoke", "--results-dir", str(results),
                           "--name", "vocabs", "--num-samples", str(len(points)), "--seed", "0",
                           "--num-cpus", "4", "--max-concurrent", "2"],
                          cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"data: {len(VOCABS)} vocab(s) prepared from DOCS in" in proc.stdout

    # Each vocab prepared exactly once, logged, on the shared data folder next to the experiment.
    log_lines = (results / "vocabs" / "data_prep.log").read_text().splitlines()
    assert sorted(int(line.split(" prepared sp")[1].split(" ")[0]) for line in log_lines) == sorted(VOCABS)
    data = results / "data" / "datasets"
    workers = []
    for vocab in VOCABS:
        manifest = json.loads((data / f"my_docs_sp{vocab}" / "prepared.json").read_text())
        assert (manifest["val_docs"], manifest["train_docs"]) == (40, 360)
        workers.append(manifest["workers"])
    assert max(workers) > 1, workers  # encoded by Ray tasks on the CPUs the two trials left idle

    trials = experiment_intact(results / "vocabs")
    assert sum(t.state.name == "COMPLETE" for t in trials) == len(points)
    rows = read_trials_csv(results / "vocabs")
    assert all(float(r["prep_seconds"]) >= 0 for r in rows)
    for t in trials:
        vocab = int(t.params["VOCAB_SIZE"])
        prep = json.loads((Path(t.user_attrs["trial_dir"]) / "data_prep.json").read_text())
        assert prep["DATA_PATH"] == str(data / f"my_docs_sp{vocab}")
        # the training ran on them (the trainer refuses a tokenizer whose size is not VOCAB_SIZE)
        env = json.loads((Path(t.user_attrs["trial_dir"]) / "env.json").read_text())
        assert (env["DATA_PATH"], env["TOKENIZER_PATH"]) == (prep["DATA_PATH"], prep["TOKENIZER_PATH"])
        assert env["VOCAB_SIZE"] == str(vocab)
    assert sum(json.loads((Path(t.user_attrs["trial_dir"]) / "data_prep.json").read_text())["prepared_now"]
               for t in trials) == len(VOCABS)
