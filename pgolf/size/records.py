"""The competition's records as measurements of trained weights: which record folders our trainer
can express, with which settings, and what their logs say the real artifact weighed.

Why: `pgolf.size`'s CPU calibration comes from short CPU trainings, whose weights sit near their
initialisation; weights trained 10 minutes on 8xH100 compress better. Every record's training log
prints `model_params:N` and `Serialized model <format>: B bytes` for a real training, so a record
whose model our trainer builds is one measurement of how trained weights compress.

A mapping is checked, never trusted: the trainer's own model, built on `meta` from `env`, must
have exactly the log's `model_params`. `stored` names tensors the record's script stored in
another form than `env` gives ours (its own quantization code decides, e.g. a BigramHash table at
int6 beside an fp16 embedding, which our EMBED_BITS cannot say); it describes the record, it is
never a fitted factor. `HELD_OUT` records are never fitted: their error is the blind test.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

BASE = {"VOCAB_SIZE": "1024", "NUM_LAYERS": "9", "MODEL_DIM": "512", "NUM_HEADS": "8", "NUM_KV_HEADS": "4",
        "MLP_MULT": "2", "MLP_BITS": "8", "ATTN_BITS": "8", "EMBED_BITS": "8", "COMPRESSOR": "zlib",
        "COMPRESSOR_LEVEL": "9"}  # the public baseline: 9x512, int8 per row + zlib-9


def _env(**changes) -> dict[str, str]:
    return {**BASE, **{k: str(v) for k, v in changes.items()}}


@dataclass(frozen=True)
class RecordShape:
    """A record folder (its name), our trainer's settings for it, and stored forms env cannot say."""

    folder: str
    env: dict[str, str]
    stored: dict[str, str] = field(default_factory=dict)  # tensor name -> storage (`int6`, `fp16`, ...)
    note: str = ""


_INT6_SMEAR = dict(MLP_MULT=3, MLP_BITS=6, ATTN_BITS=6, SMEAR_GATE=1, BIGRAM_DIM=128, COMPRESSOR="zstd",
                   COMPRESSOR_LEVEL=22, MUON_WEIGHT_DECAY=0.04)

RECORD_SHAPES: tuple[RecordShape, ...] = (
    RecordShape("2026-03-17_NaiveBaseline", _env(), note="the public baseline"),
    RecordShape("2026-03-17_LoRA_TTT", _env(), note="baseline training; LoRA only at test time"),
    RecordShape("2026-03-18_LongContextSeq2048", _env(TRAIN_SEQ_LEN=2048), note="baseline at seq 2048"),
    RecordShape("2026-03-18_LowerLR", _env(MATRIX_LR=0.02, SCALAR_LR=0.02, TIED_EMBED_LR=0.03),
                note="baseline, lower rates"),
    RecordShape("2026-03-19_SlidingWindowEval", _env(), note="baseline training, sliding evaluation"),
    RecordShape("2026-03-19_MixedQuant_Int6Int8_SlidingWindow",
                _env(MLP_MULT=3, MLP_BITS=6, ATTN_BITS=6, QAT_START_FRAC=1.0),
                note="int6 blocks (STE fake-quantized all training), int8 embedding, zlib-9; three runs in one log"),
    RecordShape("2026-03-20_10L_Int5MLP_MuonWD04_SWA50",
                _env(**{**_INT6_SMEAR, "NUM_LAYERS": 10, "MLP_BITS": 5, "EMBED_BITS": 16, "BIGRAM_BUCKETS": 10240,
                        "KEEP_FLOAT_LAST": 1, "KEEP_FLOAT_TENSORS": "attn.c_k", "PRUNE_FRAC": 0.03,
                        "SWA_EVERY": 50}),
                stored={"bigram.table.weight": "int6", "bigram.proj.weight": "int6"},
                note="int5 MLP, int6 attention and BigramHash(10240), fp16 embedding and one layer's K, 3% pruning"),
    RecordShape("2026-03-20_Int6_MLP3x_SmearGate_BigramHash_MuonWD_SWA",
                _env(**{**_INT6_SMEAR, "EMBED_BITS": 16, "BIGRAM_BUCKETS": 4096, "KEEP_FLOAT_LAST": 1,
                        "KEEP_FLOAT_TENSORS": "attn.c_k", "ORTHO_INIT": 1, "SWA_EVERY": 50}),
                stored={"bigram.table.weight": "int8"},
                note="int6 blocks, fp16 embedding and last layer's K, BigramHash(4096) at int8"),
)

# Never fitted: two of the baseline's shape, and the only int5 record (a width no fitted record has).
HELD_OUT = frozenset({"2026-03-18_LongContextSeq2048", "2026-03-19_SlidingWindowEval",
                      "2026-03-20_10L_Int5MLP_MuonWD04_SWA50"})

_FLOOR = ("our model, another quantizer: its export floors each row's scale at 1/qmax, and with Muon weight "
          "decay most rows fall under the floor (a fixed grid); ours scales every row by its maximum")

# Record folders of ../shared/conformance/records that are not used, and why (read from their
# scripts, READMEs and logs).
NOT_EXPRESSED = {
    "2026-03-19_MLP3x_QAT_Int6_SlidingWindow": "its log (9 layers, int8+zlib) is not the run its README describes "
                                               "(11 layers, int6+zstd): the export cannot be checked",
    "2026-03-19_WarmdownQuantization": "its log's payload (22,690,080 bytes) fits no stored form of its 21.8M "
                                       "parameters our trainer writes",
    "2026-03-19_int6_STE QAT_ MLP_bigram _U_Net": "its logs print no Serialized model line",
    # Same models as ours, another quantizer: these scripts floor every row's scale at 1/qmax
    # (`(row_max / 31).clamp_min(1 / 31)`; the int8 path `clamp_min(1 / 127)`), so a row whose
    # largest weight is under 1 is stored on a fixed grid, and Muon weight decay makes most rows
    # that small: fewer levels, fewer bytes (6.2 bits an int8 value, where the records without
    # weight decay or without the floor show 7.3). Our trainer scales every row by its maximum.
    "2026-03-19_SlidingWindow_FP16Emb_10L_MuonWD_OvertoneInit": _FLOOR,
    "2026-03-20_11L_EfficientPartialXSA_FA3_SWA120": _FLOOR,
    "2026-03-21_11L_XSA4_EMA_PartialRoPE_LateQAT_1.1248": _FLOOR,
    "2026-03-23_LeakyReLU_LegalTTT_ParallelMuon": "value embeddings (VE128), which our trainer lacks",
    "2026-03-29_Loader_FullGPTQ_XSA11_BigramHash2816": "value embeddings (VE128), which our trainer lacks",
    "2026-03-18_Quasi10Bfrom50B_SP1024_9x512_KV4_4h_pgut3": "trained 4 hours, not the 10-minute regime",
}
_LATER = ("no mapping: not shown to be a model our trainer builds (the later records stack parts it lacks: "
          "parallel residuals, their own recurrence and gate tensors, value embeddings, SDClip exports)")


@dataclass(frozen=True)
class RecordRun:
    """One run of a record: its log, the printed parameter count and the compressed model's bytes."""

    log: str
    model_params: int
    model_bytes: int
    format: str


@dataclass
class RecordPoint:
    """A mapped record and its distinct runs (identical byte counts in two logs are one run)."""

    shape: RecordShape
    path: Path
    runs: list[RecordRun]
    trainer_params: int = 0

    @property
    def model_bytes(self) -> float:
        return sum(r.model_bytes for r in self.runs) / len(self.runs)

    @property
    def held_out(self) -> bool:
        return self.shape.folder in HELD_OUT


def shape_for(folder: str | Path) -> RecordShape | None:
    name = Path(folder).name
    return next((s for s in RECORD_SHAPES if s.folder == name), None)


def why_not(folder: str | Path) -> str:
    """Why a record folder is not a measurement (for a folder without a mapping)."""
    return NOT_EXPRESSED.get(Path(folder).name, _LATER)


def read_runs(folder: str | Path) -> list[RecordRun]:
    """Every distinct (model_params, compressed model bytes) a record folder's logs print."""
    from pgolf.logs import parse_log

    folder = Path(folder)
    runs: dict[int, RecordRun] = {}
    logs = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix in (".log", ".txt"))
    for log in logs:
        summary = parse_log(log)
        if not summary.model_params:
            continue
        for artifact in summary.artifacts:
            runs.setdefault(artifact.bytes, RecordRun(str(log.relative_to(folder)), summary.model_params[-1],
                                                      artifact.bytes, artifact.format))
    return list(runs.values())


def trainer_params(env: Mapping[str, str]) -> int:
    """Parameters of our trainer's model for env (all stored float and int entries, from `meta`)."""
    import pgolf.train_gpt as tg
    from pgolf.size.layout import stored_entries

    hp = tg.Hyperparameters.from_env(dict(env))
    hp.validate()
    return sum(e.numel for e in stored_entries(hp) if e.storage != "raw")


def find_record_dirs(roots: list[str | Path]) -> list[Path]:
    """Record folders under each root (a folder holding submission.json or logs), sorted by name."""
    found: dict[str, Path] = {}
    for root in map(Path, roots):
        if not root.is_dir():
            raise ValueError(f"{root} is not a folder (give record folders or a folder of them, e.g. "
                             f"../shared/conformance/records)")
        candidates = [root] if (root / "submission.json").is_file() else \
            [p.parent for p in root.rglob("submission.json")]
        for c in candidates:
            found.setdefault(c.name, c)
    return [found[k] for k in sorted(found)]


def load_points(roots: list[str | Path]) -> tuple[list[RecordPoint], list[tuple[str, str]]]:
    """(mapped records with their runs, [(folder, why it is skipped)]). A mapping whose parameter
    count differs from its logs' raises ValueError: the table in this module is wrong."""
    points, skipped = [], []
    for folder in find_record_dirs(roots):
        shape = shape_for(folder)
        if shape is None:
            skipped.append((folder.name, why_not(folder)))
            continue
        runs = read_runs(folder)
        if not runs:
            skipped.append((folder.name, "its logs print no model_params and Serialized model <format> lines"))
            continue
        n = trainer_params(shape.env)
        wrong = [r for r in runs if r.model_params != n]
        if wrong:
            raise ValueError(f"{folder.name}: our trainer builds {n:,} parameters from its mapping, its log "
                             f"{wrong[0].log} prints model_params:{wrong[0].model_params:,}; fix RECORD_SHAPES in "
                             f"pgolf/size/records.py")
        points.append(RecordPoint(shape, folder, runs, n))
    return points, skipped


def storage_overrides(shape_stored: Mapping[str, str], name: str) -> str | None:
    """The stored form a record gave tensor `name`, where it differs from our trainer's."""
    return shape_stored.get(re.sub(r"^_orig_mod\.", "", name))
