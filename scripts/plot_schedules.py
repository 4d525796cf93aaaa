"""Plot learning-rate schedules on one figure: see ``noamt_study.plots``."""

from noamt_study.plots import main

raise SystemExit(main())
