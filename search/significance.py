"""`python -m search.significance NEW_RECORD --against-record OLD_RECORD`: both promotion rules on record
folders, without training. The command lives in `search.records.significance`."""

from search.records.significance import main

if __name__ == "__main__":
    raise SystemExit(main())
