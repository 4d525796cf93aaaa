"""How often each significance test of the schedule comparison rejects when nothing differs.

Simulated null comparisons (``noamt_study.simulate``: two systems drawn from one population,
with seed and sentence noise) under several scenarios; for each, the rejection rate at 5% of the
paired bootstrap over sentences, the paired t-test over seeds and the seed-and-sentence test, with
its binomial standard error (and the seed-and-sentence statistic against n - 1 degrees of
freedom instead of Welch-Satterthwaite's); plus one scenario with a real difference (power).

    python scripts/calibrate_significance.py --replicates 1000 --out docs/results/significance_calibration
"""

import argparse
import json
import math
import platform
import sys
import time
from dataclasses import asdict
from datetime import datetime
from pathlib import Path

from noamt.bounds import positive_int, resample_count
from noamt_study.seed_sentence_test import seed_sentence_test_from
from noamt_study.simulate import Scenario, rejection_rates
from noamt_study.stats import compare_seeds, paired_bootstrap_from, t_two_sided_mass


def fixed_df(observed, resampled) -> float:
    """The seed-and-sentence statistic against Student's t with n - 1 degrees of freedom."""
    test = seed_sentence_test_from(observed, resampled)
    return 1.0 - t_two_sided_mass(test.delta / test.std_error, len(observed) - 1) if test.std_error else 1.0


TESTS = {
    "sentences only (paired bootstrap)": lambda d, r: paired_bootstrap_from(d, r).p_value,
    "seeds only (paired t-test)": lambda d, r: compare_seeds(list(d), [0.0] * len(d)).p_value,
    "seeds and sentences": lambda d, r: seed_sentence_test_from(d, r).p_value,
    "seeds and sentences, n - 1 df": fixed_df,
}
SCENARIOS = {
    "seed noise, 3 seeds": Scenario(seeds=3, seed_sd=0.06),
    "seed noise, 6 seeds": Scenario(seeds=6, seed_sd=0.06),
    "sentence noise only, 3 seeds": Scenario(seeds=3, seed_sd=0.0),
    "systems differ by sentence, 3 seeds": Scenario(seeds=3, seed_sd=0.03, system_sd=0.3),
    "systems differ by sentence, 6 seeds": Scenario(seeds=6, seed_sd=0.0, system_sd=0.3),
    "a real difference, 6 seeds (power)": Scenario(seeds=6, seed_sd=0.06, shift=0.15),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--replicates", type=positive_int, default=1000)
    parser.add_argument("--resamples", type=resample_count, default=200, help="sentence resamples per comparison")
    parser.add_argument("--out", type=Path, help="folder for results.json")
    args = parser.parse_args(argv)
    rows = []
    for name, scenario in SCENARIOS.items():
        start = time.monotonic()
        rates = rejection_rates(scenario, TESTS, args.replicates, args.resamples)
        rows.append({"scenario": name, "parameters": asdict(scenario), "rejection_rate_at_5pct": rates})
        cells = "  ".join(
            f"{test}: {rate:.3f} ± {math.sqrt(rate * (1 - rate) / args.replicates):.3f}" for test, rate in rates.items()
        )
        print(f"{name:38s} {cells}  ({time.monotonic() - start:.0f} s)", flush=True)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        meta = {
            "command": " ".join(["python", *sys.argv]),
            "date": datetime.now().astimezone().isoformat(timespec="seconds"),
            "machine": f"{platform.node()} ({platform.machine()}, Python {platform.python_version()})",
            "replicates": args.replicates,
            "resamples": args.resamples,
            "alpha": 0.05,
        }
        text = json.dumps({"meta": meta, "scenarios": rows}, indent=2) + "\n"
        (args.out / "results.json").write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
