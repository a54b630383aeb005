"""`MockBackend`: a backend whose work is a function, for tests (like httpx's MockTransport)."""

from __future__ import annotations

from collections.abc import Callable

from delgrad_core._backend import Backend
from delgrad_core._capabilities import Capabilities
from delgrad_core._errors import InvalidValueError
from delgrad_core._execution import ExecutionRequest, ExecutionResult

__all__ = ["MockBackend", "reference_handler"]


def reference_handler(request: ExecutionRequest) -> ExecutionResult:
    """The ideal model's spike times (what the reference backend returns)."""
    from delgrad_core._propagation import forward

    return ExecutionResult(forward(request.network, request.input_spike_times), {})


class MockBackend(Backend):
    """Runs `handler(request) -> ExecutionResult` (default: the ideal model).

    Records every request in `requests` and counts `close_calls`; everything else (validation,
    refusal of unsupported networks, `represent`, result checks) is the real `Backend` code.

    Parameters
    ----------
    handler : callable, optional
    name : str
    capabilities : Capabilities, optional
        Default: every delay kind and ratio, exact.  Taken as given: a backend whose capabilities
        are no `Capabilities` shows how the core refuses them.
    """

    def __init__(self, handler: Callable[[ExecutionRequest], ExecutionResult] | None = None, *,
                 name: str = "mock", capabilities: Capabilities | None = None):
        if handler is not None and not callable(handler):
            raise InvalidValueError(f"handler: expected None or a function of an ExecutionRequest, got "
                                    f"{type(handler).__name__}")
        if not isinstance(name, str) or not name:
            raise InvalidValueError(f"name: expected a non-empty string, got {name!r}")
        self.handler = handler or reference_handler
        self.name = name
        self._capabilities = capabilities if capabilities is not None else Capabilities(exact=True)
        self.requests: list[ExecutionRequest] = []
        self.close_calls = 0

    @property
    def capabilities(self) -> Capabilities:
        return self._capabilities

    def _execute(self, request: ExecutionRequest) -> ExecutionResult:
        self.requests.append(request)
        return self.handler(request)

    def _close(self) -> None:
        self.close_calls += 1
