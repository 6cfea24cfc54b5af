"""pgolf-search: a Ray-distributed, byte-budget-aware hyperparameter search for OpenAI's Parameter Golf.

The commands: `python -m search.run`, `search.pareto`, `search.promote`, `search.knobs`,
`search.significance` (thin entry modules here). The house, in its one import order (each package
imports only those below it; the test suite holds it to that, `tests/house/`):

    search.run  search.pareto  search.promote  search.knobs  search.significance   the commands
    search.engine | search.records     the search itself | records from its trials
    search.runner | search.review      trainings on Ray  | the Pareto report
    search.store                       the experiment folder
    search.space                       a space file and the script's knobs
    search.core                        keys, limits, layout, errors, front, cost: imports nothing of search
"""
