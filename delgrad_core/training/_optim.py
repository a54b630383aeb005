"""Adam with named parameter groups and a step-decay learning-rate schedule.

Adam: Kingma & Ba 2015, Algorithm 1 (bias-corrected first and second moments).  Parameters are
numpy arrays updated in place; the state is plain arrays, so checkpoints need no pickle.
"""

from __future__ import annotations

import numpy as np

from delgrad_core._errors import InvalidValueError
from delgrad_core.training._config import MAX_STEP_SIZE, _number, check_adam_betas

__all__ = ["Adam", "step_decay_factor"]


def step_decay_factor(epoch: int, gamma: float, every: int) -> float:
    """Learning-rate factor gamma ** floor(epoch / every) (epochs counted from 0)."""
    return gamma ** (epoch // every)


_RATE, _BETA, _EPS = _number(0, MAX_STEP_SIZE), _number(0, 1, high_open=True), _number(0, low_open=True)


class Adam:
    """Adam over named arrays; `group_of[name]` selects the base learning rate of each array.

    Parameters
    ----------
    learning_rates : dict
        Base learning rate per group name, e.g. {"weights": 0.01, "delays": 0.003}: from 0 to
        `MAX_STEP_SIZE` (10), about the largest change of a parameter per step.
    group_of : dict
        Group name per parameter name.
    """

    def __init__(self, learning_rates: dict[str, float], group_of: dict[str, str],
                 beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8):
        missing = sorted(set(group_of.values()) - set(learning_rates))
        if missing:
            raise InvalidValueError(f"learning_rates: no rate for group(s) {', '.join(missing)}")
        self.learning_rates = {group: _RATE(f"learning_rates[{group!r}]", rate)
                               for group, rate in learning_rates.items()}
        self.group_of = dict(group_of)
        self.beta1, self.beta2, self.eps = _BETA("beta1", beta1), _BETA("beta2", beta2), _EPS("eps", eps)
        check_adam_betas(self.beta1, self.beta2, "beta1", "beta2")
        self.steps = 0
        self.first_moment: dict[str, np.ndarray] = {}
        self.second_moment: dict[str, np.ndarray] = {}

    def step(self, params: dict[str, np.ndarray], grads: dict[str, np.ndarray], lr_factor: float = 1.0) -> None:
        """Update every array of `params` in place from the gradient of the same name (a float
        array of its shape, finite)."""
        for name, grad in grads.items():
            if name not in params or name not in self.group_of:
                raise InvalidValueError(f"grads[{name!r}]: no parameter of that name (parameters: "
                                        f"{', '.join(sorted(self.group_of))})")
            if not (isinstance(params[name], np.ndarray) and params[name].dtype.kind == "f"):
                raise InvalidValueError(f"params[{name!r}]: expected a float array, got "
                                        f"{getattr(params[name], 'dtype', type(params[name]).__name__)}")
            if np.shape(grad) != params[name].shape:
                raise InvalidValueError(f"grads[{name!r}]: expected shape {params[name].shape}, got {np.shape(grad)}")
            if not np.all(np.isfinite(grad)):
                raise InvalidValueError(f"grads[{name!r}]: contains NaN or inf")
        self.steps += 1
        correction1 = 1.0 - self.beta1**self.steps
        correction2 = 1.0 - self.beta2**self.steps
        for name, grad in grads.items():
            param = params[name]
            m = self.first_moment.setdefault(name, np.zeros_like(param))
            v = self.second_moment.setdefault(name, np.zeros_like(param))
            m *= self.beta1
            m += (1.0 - self.beta1) * grad
            v *= self.beta2
            v += (1.0 - self.beta2) * grad * grad
            lr = self.learning_rates[self.group_of[name]] * lr_factor
            param -= lr * (m / correction1) / (np.sqrt(v / correction2) + self.eps)

    def state_arrays(self) -> dict[str, np.ndarray]:
        """State as flat arrays (for an npz checkpoint)."""
        state = {"steps": np.array(self.steps)}
        for name in self.first_moment:
            state[f"m.{name}"] = self.first_moment[name]
            state[f"v.{name}"] = self.second_moment[name]
        return state

    def load_state_arrays(self, state: dict[str, np.ndarray]) -> None:
        self.steps = int(state["steps"])
        self.first_moment = {k[2:]: np.array(v) for k, v in state.items() if k.startswith("m.")}
        self.second_moment = {k[2:]: np.array(v) for k, v in state.items() if k.startswith("v.")}
