"""The leaf of the house: every name and rule the rest of the search shares, importing nothing of it.

- `attrs`: the keys of trial and study attributes, and the reasons a trial ends for;
- `layout`: the experiment and trial folders, file by file;
- `limits`: the limits and feasibility (`judge`, `is_feasible`, `row_over`): one owner;
- `errors`: one-line errors (`OneLineError`, its exit code) and a full disk;
- `trials`: a trial's configuration key, rung, and whether it is this experiment's own;
- `front`: Pareto-front arithmetic and hypervolume;
- `cost`: device hours used and saved;
- `files`: writing a file whole.
"""
