"""`python -m search.run SPACE.py`: run (or resume) a search. The command lives in `search.engine.cli`."""

from search.engine.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
