"""Plot learning-rate schedules on one figure: see ``noamt.compare.plots``."""

from noamt.compare.plots import main

raise SystemExit(main())
