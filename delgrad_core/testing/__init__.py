"""Backend conformance suite, shipped with the core and exposed as a pytest plugin.

Run it against an installed backend with::

    python -m pytest --pyargs delgrad_core.testing --delgrad-backend NAME

The cases and the comparison used by the suite are public for backend authors' own tests.
"""

from delgrad_core.testing._agreement import (
    EXACT_TOLERANCE,
    MAX_MEDIAN_ERROR,
    MIN_SILENCE_AGREEMENT,
    Agreement,
    compare_spike_times,
)
from delgrad_core.testing._cases import ConformanceCase, conformance_cases, make_network
from delgrad_core.testing._distributions import write_distribution

__all__ = [
    "Agreement",
    "compare_spike_times",
    "EXACT_TOLERANCE",
    "MAX_MEDIAN_ERROR",
    "MIN_SILENCE_AGREEMENT",
    "ConformanceCase",
    "conformance_cases",
    "make_network",
    "write_distribution",
]
