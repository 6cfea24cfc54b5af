"""Records from a search's trials: rerun with new seeds, tested by both promotion rules, written as the
leaderboard takes them.

- `promote`: `python -m search.promote` (resolve the trial, run the seeds, judge, write);
- `seeds`: the seeds on Ray, their results read back;
- `stats`: both rules' tests; `config`: their settings, `PromoteConfig`, `SeedResult`;
- `folder`: the record folder; `significance`: `python -m search.significance`.
"""
