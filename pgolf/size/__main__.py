"""`python -m pgolf.size`: see pgolf.size.cli."""

from pgolf.size.cli import main

raise SystemExit(main())
