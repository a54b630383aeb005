"""The reference backend: exact first spike times of the ideal model (docs/model.md §1-3)."""

from __future__ import annotations

from delgrad_core import Backend, Capabilities, DelayKind, ExecutionResult, check_num_threads, forward

__all__ = ["ReferenceBackend", "REFERENCE_CAPABILITIES"]

REFERENCE_CAPABILITIES = Capabilities(
    delay_kinds=frozenset(DelayKind), deterministic=True, seed_independent=True, needs_calibration=False, exact=True
)


class ReferenceBackend(Backend):
    """Exact, deterministic simulation with `delgrad_core.forward`: any delay kind, any tau ratio.

    Parameters
    ----------
    n_threads : int, optional
        Threads over the batch (default: as many as the batch's work keeps busy, at most
        `delgrad_core.default_num_threads()`).
    """

    name = "reference"
    result_neutral_options = frozenset({"n_threads"})  # sums are the same for any thread count

    def __init__(self, n_threads: int | None = None):
        self.n_threads = None if n_threads is None else check_num_threads(n_threads)

    @property
    def capabilities(self) -> Capabilities:
        return REFERENCE_CAPABILITIES

    def _execute(self, request) -> ExecutionResult:
        layer_spike_times = forward(request.network, request.input_spike_times, n_threads=self.n_threads)
        return ExecutionResult(layer_spike_times, {})
