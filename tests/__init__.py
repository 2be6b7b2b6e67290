"""mia-audit's test suite (tests/unit: pure; tests/e2e: the console script on real models).

OpenMP threads wait by sleeping, not spinning, in every process the tests start (pytest imports
this package before any conftest, so before torch loads OpenMP): two xdist workers each running
torch on all cores oversubscribe a 2-core runner, and spinning waits then made training several
times slower (bench/omp_wait.py). It changes no thread count and no result.
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
