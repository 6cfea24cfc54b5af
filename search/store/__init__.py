"""The experiment folder (`results/<name>/`) and its files, the one owner of how they are written and read.

- `experiment`: `Experiment`, the open folder and the one driver that holds it (its lock in `lock`);
- `settings`: `experiment.json` (`ExperimentSettings`);
- `trials_csv`: `trials.csv`, the study's flat view (its columns are a contract).
"""
