"""`python -m search.pareto results/<name>`: review an experiment's Pareto front. The command lives in
`search.review.cli`."""

from search.review.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
