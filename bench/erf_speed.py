"""erf on 10^6 float64 values: gtool's vectorized fits (gtool/ops/erf.py) against math.erf per
element (np.frompyfunc) and scipy.special.erf when installed. Medians of 5 runs, one thread,
in CPU time of this process (time.process_time: a loaded shared machine inflates wall time).

    .venv/bin/python bench/erf_speed.py
"""

from __future__ import annotations

import math
import statistics
import time

import numpy as np

from gtool.ops import REGISTRY
from gtool.ops.erf import erf, erfc


def median_ms(fn, x, repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        t = time.process_time()
        fn(x)
        times.append(time.process_time() - t)
    return 1e3 * statistics.median(times)


def main() -> None:
    x = np.random.default_rng(0).uniform(-5, 5, 1_000_000)
    rows = [("gtool erf", median_ms(erf, x)), ("gtool erfc", median_ms(erfc, x)),
            ("gtool gelu (exact)", median_ms(REGISTRY["gelu"].forward, x)),
            ("math.erf per element", median_ms(lambda a: np.frompyfunc(math.erf, 1, 1)(a).astype(np.float64), x))]
    try:
        from scipy.special import erf as sp_erf

        rows.append(("scipy.special.erf", median_ms(sp_erf, x)))
    except ImportError:
        pass
    base = rows[3][1]
    for name, ms in rows:
        print(f"{name:24s} {ms:8.1f} ms   ({base / ms:4.1f}x math.erf)")


if __name__ == "__main__":
    main()
