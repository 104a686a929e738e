"""``python -m companion``: the command line of :mod:`companion.cli`."""

from companion.cli import main

raise SystemExit(main())
