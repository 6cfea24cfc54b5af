"""The Pareto report of one or more experiments (`python -m search.pareto`): data flows one way.

- `analysis`: experiment folders read and classified against the budget (`analyse`);
- `report`: what it builds (`ParetoReport`, `TrialPoint`);
- `render`: text, markdown, CSV, JSON; `plots`: `pareto.png` and `pareto.html`;
- `agreement`: how far a ladder's cheap rungs rank as the top one does; `importance`: which knobs matter;
- `cli`: the command.
"""
