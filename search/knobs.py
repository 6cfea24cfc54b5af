"""`python -m search.knobs SCRIPT`: the environment variables a training script reads. The command lives in
`search.space.knobs`."""

from search.space.knobs import main

if __name__ == "__main__":
    raise SystemExit(main())
