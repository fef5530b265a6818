"""``python -m alexnet`` — the same as the ``alexnet`` command."""

from alexnet.cli import main

raise SystemExit(main())
