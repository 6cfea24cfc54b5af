"""How a proposal becomes a training: the config the trainable (`search.runner.trainable.train_trial`) is
handed by Ray Tune. The config is a contract (docs/design.md): `search.promote`'s seeds use it too."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from search.core.layout import PREP_LOG
from search.runner.trial_files import Sink, trial_config


@dataclass(frozen=True)
class TrialLaunch:
    """How the searcher turns a feasible proposal into a runner config."""

    folder: Path          # experiment folder: trials go to folder/trials/<number>
    script: Path
    nproc: int            # processes per trial (0 = plain python)
    prepare_data: bool    # fill DATA_PATH/TOKENIZER_PATH per vocab: from `docs`, else (--smoke) the bundled corpus
    timeout_s: float | None = None  # the space's TRIAL_TIMEOUT_SECONDS
    score_line: str | None = None   # the space's SCORE_LINE
    docs: Path | None = None        # the space's DOCS
    docs_val_docs: int | None = None
    data_dir: Path | None = None    # where DOCS' vocabularies are prepared (the shared results folder's data/)
    sink: Sink | None = None        # the driver's FileSink (search.runner.trial_files.start_sink)

    def config(self, env: Mapping[str, str], trial_dir: Path, rung: int | None,
               nproc: int | None = None) -> dict[str, Any]:
        """The trainable's config of one trial (`nproc`: a ladder rung's own GPUs, else the space's)."""
        nproc = self.nproc if nproc is None else nproc
        config = {"env": dict(env), "script": str(self.script.resolve()), "trial_dir": str(trial_dir),
                  "nproc": nproc, "gpus": nproc, "fidelity": rung, "prepare_data": self.prepare_data,
                  "timeout_s": self.timeout_s, "score_line": self.score_line}
        config |= trial_config(self.sink)
        if self.docs is not None:
            config |= {"docs": str(self.docs), "docs_val_docs": self.docs_val_docs,
                       "data_dir": str(self.data_dir), "prep_log": str(self.folder / PREP_LOG)}
        return config
