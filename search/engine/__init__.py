"""The search itself: proposals drawn, judged against the byte budget, trained through Ray Tune, told back.

- `cli`: `python -m search.run` (`main`); `options`: `RunOptions`, `RunSummary`, `RunError`;
- `driver`: `run_search`, from the checks on the input to a consistent study on every exit path;
- `tuning`: the trials through Ray Tune;
- `searcher`: `BudgetedOptunaSearcher`, the Tune searcher that prunes before launch;
- `history`: what was trained, at which rung (no training twice; a finite space's end);
- `study`: the Optuna study, and how each trial's end is told to it (`constraints`: in both forms);
- `samplers`: the sampler wrappers (`ForgivingSampler`), `gp_sampler` and `gp`: the known-budget GP;
- `ladder`: a fidelity ladder's promotions and the sampler's rung;
- `predictors`: the byte predictors; `warm_start`: earlier experiments' trials; `progress`: the progress line.
"""
