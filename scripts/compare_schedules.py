"""Compare learning-rate schedules, as ``noamt-compare`` does: see ``noamt_study.cli``."""

from noamt_study.cli import main

raise SystemExit(main())
