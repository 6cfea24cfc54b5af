"""Data for a trial: DATA_PATH and TOKENIZER_PATH of its VOCAB_SIZE, from the bundled corpus (`--smoke`)
or prepared from a space's DOCS during the search (once per vocab, by a Ray task that takes no CPU
from the trials)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Mapping

from search.core.layout import DATA_PREP_FILE


def prepare_bundled(env: dict[str, str]) -> None:
    """Fill DATA_PATH/TOKENIZER_PATH from the bundled corpus for the trial's VOCAB_SIZE."""
    if "DATA_PATH" in env and "TOKENIZER_PATH" in env:
        return
    import pgolf.data

    vocab = int(env.get("VOCAB_SIZE", "1024"))
    prepared = pgolf.data.prepare(vocab, pgolf.data.default_cache_dir())
    env.setdefault("DATA_PATH", str(prepared.data_path))
    env.setdefault("TOKENIZER_PATH", str(prepared.tokenizer_path))


def prepare_vocab(vocab: int, docs: str, out: str, val_docs: int | None) -> tuple[dict[str, str], float, bool]:
    """`pgolf.data.prepare` of one vocab from a space's DOCS, timed: (its env, seconds, whether built now).
    Its file lock makes concurrent trials of one vocab prepare it once; the others wait and read it.
    The documents are encoded by as many Ray tasks as the cluster has idle CPUs (asking for none: trials
    that hold every CPU while they wait for these data must not starve them), else here."""
    import ray

    import pgolf.data

    started = time.time()
    idle = int(ray.available_resources().get("CPU", 0)) if ray.is_initialized() else 0
    prepared = pgolf.data.prepare(vocab, out, docs, val_docs=val_docs, quiet=True, workers=max(1, idle),
                                  task_cpus=0)
    return prepared.env(), time.time() - started, not prepared.cached


def prepare_from_docs(env: dict[str, str], config: Mapping[str, Any], trial_dir: Path) -> float:
    """Fill DATA_PATH/TOKENIZER_PATH from the space's DOCS for the trial's VOCAB_SIZE, prepared (once per
    vocab, on the shared data folder) by a Ray task that takes no CPU from the trials; returns its seconds.
    A preparation done now is one line of the experiment's PREP_LOG."""
    import ray

    vocab = int(env.get("VOCAB_SIZE", "1024"))
    args = (vocab, config["docs"], config["data_dir"], config.get("docs_val_docs"))
    if ray.is_initialized():
        data_env, seconds, built = ray.get(ray.remote(num_cpus=0)(prepare_vocab).remote(*args))
    else:
        data_env, seconds, built = prepare_vocab(*args)
    env["DATA_PATH"], env["TOKENIZER_PATH"] = data_env["DATA_PATH"], data_env["TOKENIZER_PATH"]
    trial_dir.mkdir(parents=True, exist_ok=True)
    (trial_dir / DATA_PREP_FILE).write_text(json.dumps({"vocab": vocab, "seconds": round(seconds, 2),
                                                          "prepared_now": built, **data_env}, indent=1))
    if built:
        with open(config["prep_log"], "a") as log:
            log.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} prepared sp{vocab} from {config['docs']} in "
                      f"{seconds:.1f} s: {data_env['DATA_PATH']} (trial folder {trial_dir.name})\n")
    return seconds


def missing_data(env: Mapping[str, str]) -> str | None:
    """One line naming the trial's DATA_PATH/TOKENIZER_PATH that does not exist and the
    `python -m pgolf.data` command that makes it; None when both exist (or are not set)."""
    import glob

    vocab = env.get("VOCAB_SIZE", "1024")
    for key in ("DATA_PATH", "TOKENIZER_PATH"):
        path = env.get(key)
        if path and not Path(path).exists() and not glob.glob(path):
            how = (f"`python -m pgolf.data download --variant sp{vocab}`" if vocab == "1024" else
                   f"`python -m pgolf.data prepare --vocab {vocab} --docs DOCS.jsonl --out data`")
            return (f"{key} {path} does not exist (make it with {how}, point FIXED_ENV's {key} at it, or set "
                    "DOCS in the space to prepare each vocab during the search)")
    return None
