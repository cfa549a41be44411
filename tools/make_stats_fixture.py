#!/usr/bin/env python3
"""Reference values for src/method/stats.ts, with statsmodels (and scipy) as the independent reference.

    python tools/make_stats_fixture.py [--out test/fixtures/expected/stats/stats.json]

Needs scipy and statsmodels (not in the project's venv: `python -m venv V && V/bin/pip install scipy statsmodels`).
Writes, for a spread of counts (empty, zero, all, small, large, lopsided):
  - Wilson 95% score intervals: statsmodels.stats.proportion.proportion_confint(k, n, alpha=0.05, method="wilson");
  - exact McNemar p-values on a paired 2x2 table [[a, b], [c, d]]:
    statsmodels.stats.contingency_tables.mcnemar(table, exact=True).pvalue (two-sided binomial test on b, c).
test/stats.test.ts reads it. The file sits in a subfolder because the parity tests read every expected/*.json.
Deterministic: two runs give identical bytes.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import scipy
import statsmodels
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.proportion import proportion_confint

WILSON_CASES = [(0, 1), (1, 1), (0, 10), (10, 10), (1, 132), (40, 132), (5, 20), (50, 100), (99, 100), (250, 250),
                (174, 250), (1, 1000), (3, 7), (731, 1182)]
# (b, c): the discordant counts; the concordant cells do not enter the exact test but are kept in the table.
MCNEMAR_CASES = [(0, 0), (1, 0), (0, 1), (3, 3), (5, 0), (10, 2), (2, 10), (39, 0), (40, 1), (25, 15), (100, 90),
                 (7, 30), (600, 500), (1, 40)]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "test/fixtures/expected/stats/stats.json"))
    out = Path(ap.parse_args().out)
    wilson = []
    for k, n in WILSON_CASES:
        lo, hi = proportion_confint(k, n, alpha=0.05, method="wilson")
        wilson.append({"k": k, "n": n, "lo": float(lo), "hi": float(hi)})
    tests = []
    for b, c in MCNEMAR_CASES:
        table = [[7, b], [c, 11]]
        tests.append({"b": b, "c": c, "p": float(mcnemar(table, exact=True).pvalue)})
    doc = {
        "source": "tools/make_stats_fixture.py",
        "scipy_version": scipy.__version__,
        "statsmodels_version": statsmodels.__version__,
        "wilson_95": wilson,
        "mcnemar_exact": tests,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=2) + "\n")
    os.replace(tmp, out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
