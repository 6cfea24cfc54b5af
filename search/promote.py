"""`python -m search.promote results/<name> --trial N`: rerun a trial with new seeds and write a record
folder. The command lives in `search.records.promote`."""

from search.records.promote import main

if __name__ == "__main__":
    raise SystemExit(main())
