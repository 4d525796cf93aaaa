"""Compare learning-rate schedules, as ``noamt-compare`` does: see ``noamt.cli.compare``."""

from noamt.cli.compare import main

raise SystemExit(main())
