"""Backend conformance suite and testing helpers, shipped with the core.

Run the suite against an installed backend with::

    python -m pytest --pyargs delgrad_core.testing --delgrad-backend NAME

The cases, the comparison, `MockBackend` and `cli_runner` (click's test runner with stdout and
stderr apart on every supported click version, for plugins' commands) are public for backend
authors' own tests.
"""

from delgrad_core._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "delgrad_core.testing._agreement": ["Agreement", "compare_layers", "compare_spike_times"],
    "delgrad_core.testing._cases": ["ConformanceCase", "DelayLines", "conformance_cases", "delay_lines", "make_network",
                                      "supported_setting"],
    "delgrad_core.testing._cli": ["cli_runner"],
    "delgrad_core.testing._distributions": ["write_distribution"],
    "delgrad_core.testing._mock": ["MockBackend", "reference_handler"],
})
