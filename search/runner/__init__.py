"""Trainings on Ray: how one is launched, watched, stopped and read back, on whichever node runs it.

- `trainable`: `train_trial`, the Ray Tune trainable (one training, its log streamed, its metrics);
- `launch`: `TrialLaunch`, how a proposal becomes the trainable's config;
- `cluster`: joining or starting Ray, and what one trial holds;
- `process`: the training's processes, and stopping every one of them;
- `failures`: why a trial ended without a result (its root cause, a lost node, a full disk);
- `metrics`: a finished training's metrics, from its folder or its log;
- `data`: a trial's data (the bundled corpus, or a space's DOCS);
- `trial_files`: a trial's files sent to the driver's disk from another node;
- `replay`: a results table replayed as if trained (`--replay`, the benchmarks);
- `rank_guard.py`: run by torchrun around each rank.
"""
