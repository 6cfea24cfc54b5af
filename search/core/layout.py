"""The experiment folder (`results/<name>/`) and the trial folder, file by file: one owner of the names.

    results/<name>/                  an experiment (search.store.experiment owns it)
      experiment.json                how it was set up (search.store.settings)
      study.db                       the Optuna study: the source of truth
      trials.csv                     a flat view of the study (search.store.trials_csv)
      driver.lock                    who drives it now
      size_learner[.rung<k>].json    what the byte predictor learned (per rung of a ladder)
      data_prep.log                  one line per vocab prepared from a space's DOCS
      train_gpt.py                   PACK_SCRIPT's packed copy of the script
      trials/<number>/               one launched training (search.runner writes it)
        env.json metrics.json failure.json stdout.log train.log node.json training.pid ...
"""

from __future__ import annotations

from pathlib import Path

# -- the experiment folder
EXPERIMENT_FILE = "experiment.json"
STUDY_FILE = "study.db"
TRIALS_CSV = "trials.csv"
LOCK_FILE = "driver.lock"
LEARNER_FILE = "size_learner.json"
PREP_LOG = "data_prep.log"
PACKED_SCRIPT = "train_gpt.py"
TRIALS_DIR = "trials"
TOKEN_FILE = ".driver_token"      # in the synced root: its content is the driver's token (search.runner.trial_files)

# -- a trial folder
ENV_FILE = "env.json"              # the environment the training ran with
METRICS_FILE = "metrics.json"      # a finished training's metrics: written last, atomically
FAILURE_FILE = "failure.json"      # why a training failed (reason, message, log tail)
STDOUT_LOG = "stdout.log"          # everything the script printed
TRAIN_LOG = "train.log"            # the script's own log, where it writes one
NODE_FILE = "node.json"            # the node that ran it
LEFT_ON_NODE = "left_on_node.json"  # files too large to send, and where they are
TRAINING_PID = "training.pid"      # while its training runs: {"host", "pid"}
DATA_PREP_FILE = "data_prep.json"  # the vocab prepared for it from DOCS, and how long that took
HARDWARE_FILE = "hardware.json"    # a promotion seed's GPUs


def storage_url(folder: str | Path) -> str:
    """The Optuna RDB storage URL of an experiment folder (its `study.db`)."""
    return f"sqlite:///{Path(folder).resolve() / STUDY_FILE}"


def trial_folder(folder: str | Path, number: int) -> Path:
    """Where trial `number` of an experiment writes its files."""
    return (Path(folder) / TRIALS_DIR / str(number)).resolve()


def learner_file(rung: int | None = None) -> str:
    """The size learner's file of one rung of a ladder (rung 0 and no ladder: size_learner.json)."""
    return LEARNER_FILE if not rung else LEARNER_FILE.replace(".json", f".rung{rung}.json")


def log_path(trial_dir: Path) -> Path:
    """A training's log: the script's own train.log where it writes one, else what it printed."""
    return trial_dir / TRAIN_LOG if (trial_dir / TRAIN_LOG).is_file() else trial_dir / STDOUT_LOG
