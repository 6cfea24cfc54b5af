"""A space file and the script it searches: what the user writes, checked before anything starts.

- `spec`: `SpaceSpec` (a space file resolved, the settings a space file may set) and a trial's
  environment (`SpaceSpec.trial_env`);
- `load`: `load_space`, every setting checked with a one-line `SpaceError`;
- `ladder`: a space's fidelity ladder (`FIDELITIES`);
- `points`: `check_points`, the space's distributions, and the size of a finite space;
- `knobs`: the variables a training script reads, found statically (`python -m search.knobs`).
"""
