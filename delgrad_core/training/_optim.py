"""Adam with named parameter groups and a step-decay learning-rate schedule.

Adam: Kingma & Ba 2015, Algorithm 1 (bias-corrected first and second moments).  Parameters are
numpy arrays updated in place; the state is plain arrays, so checkpoints need no pickle.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from delgrad_core._errors import InvalidValueError
from delgrad_core._ir import real_array
from delgrad_core.training._config import MAX_STEP_SIZE, number_rule, check_adam_betas

__all__ = ["Adam", "step_decay_factor"]


def step_decay_factor(epoch: int, gamma: float, every: int) -> float:
    """Learning-rate factor gamma ** floor(epoch / every) (epochs counted from 0; gamma in
    (0, 1], as `TrainingConfig.lr_decay`, every >= 1, as `lr_decay_every`)."""
    epoch, gamma, every = _EPOCH("epoch", epoch), _DECAY("gamma", gamma), _EVERY("every", every)
    return gamma ** (epoch // every)


_RATE, _BETA, _EPS = number_rule(0, MAX_STEP_SIZE), number_rule(0, 1, high_open=True), number_rule(0, low_open=True)
_EPOCH, _DECAY, _EVERY = number_rule(0, integer=True), number_rule(0, 1, low_open=True), number_rule(1, integer=True)
_FACTOR = number_rule(0)  # (a learning-rate factor: finite, >= 0; a negative one would climb the loss)


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
        for name, table in (("learning_rates", learning_rates), ("group_of", group_of)):
            if not isinstance(table, Mapping):
                raise InvalidValueError(f"{name}: expected a dict, got {type(table).__name__}")
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
        array of its shape, finite), the learning rates times `lr_factor` (>= 0).  Everything is
        checked before anything changes."""
        lr_factor = _FACTOR("lr_factor", lr_factor)
        if not isinstance(params, Mapping) or not isinstance(grads, Mapping):
            raise InvalidValueError(f"params, grads: expected dicts of arrays by name, got {type(params).__name__} and "
                                    f"{type(grads).__name__}")
        grads = {name: self._checked_gradient(params, name, grad) for name, grad in grads.items()}
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

    def _checked_gradient(self, params, name: str, grad) -> np.ndarray:
        """`grad` as a float array, checked against the parameter `name` it updates."""
        if name not in params or name not in self.group_of:
            raise InvalidValueError(f"grads[{name!r}]: no parameter of that name (parameters: "
                                    f"{', '.join(sorted(self.group_of))})")
        param = params[name]
        if not (isinstance(param, np.ndarray) and param.dtype.kind == "f"):
            raise InvalidValueError(f"params[{name!r}]: expected a float array, got "
                                    f"{getattr(param, 'dtype', type(param).__name__)}")
        if not param.flags.writeable:
            raise InvalidValueError(f"params[{name!r}]: read-only; the step updates the parameters in place")
        grad = real_array(grad, f"grads[{name!r}]")
        if grad.shape != param.shape:
            raise InvalidValueError(f"grads[{name!r}]: expected shape {param.shape}, got {grad.shape}")
        moment = self.first_moment.get(name)
        if moment is not None and moment.shape != param.shape:  # (a state loaded for other parameters)
            raise InvalidValueError(f"params[{name!r}]: shape {param.shape}, but the optimiser's state for it has "
                                    f"shape {moment.shape} (loaded for other parameters)")
        if not np.all(np.isfinite(grad)):
            raise InvalidValueError(f"grads[{name!r}]: contains NaN or inf")
        return grad

    def state_arrays(self) -> dict[str, np.ndarray]:
        """State as flat arrays (for an npz checkpoint)."""
        state = {"steps": np.array(self.steps)}
        for name in self.first_moment:
            state[f"m.{name}"] = self.first_moment[name]
            state[f"v.{name}"] = self.second_moment[name]
        return state

    def load_state_arrays(self, state: dict[str, np.ndarray]) -> None:
        """The state `state_arrays` gave: "steps" (a whole number >= 0) and, for parameters of
        this optimiser, "m.NAME" and "v.NAME" (finite float arrays of one shape; v >= 0)."""
        if not isinstance(state, Mapping) or "steps" not in state:
            raise InvalidValueError("state: expected the dict of arrays state_arrays() gives, with 'steps'")
        steps = _EPOCH("state['steps']", state["steps"].item() if isinstance(state["steps"], np.ndarray)
                       and state["steps"].size == 1 else state["steps"])
        moments = {}
        for key, value in state.items():
            kind, _, name = key.partition(".")
            if key == "steps":
                continue
            if kind not in ("m", "v") or name not in self.group_of:
                raise InvalidValueError(f"state[{key!r}]: expected 'steps', 'm.NAME' or 'v.NAME' for a parameter of "
                                        f"this optimiser ({', '.join(sorted(self.group_of))})")
            array = real_array(value, f"state[{key!r}]").copy()  # (its own: the steps change it in place)
            if not np.all(np.isfinite(array)) or (kind == "v" and np.any(array < 0)):
                raise InvalidValueError(f"state[{key!r}]: expected finite numbers{', >= 0' if kind == 'v' else ''}")
            moments[key] = array
        for key, array in moments.items():
            partner = ("v." if key.startswith("m.") else "m.") + key[2:]
            if partner not in moments or moments[partner].shape != array.shape:
                raise InvalidValueError(f"state[{key!r}]: expected {partner!r} of the same shape with it")
        self.steps = steps
        self.first_moment = {k[2:]: v for k, v in moments.items() if k.startswith("m.")}
        self.second_moment = {k[2:]: v for k, v in moments.items() if k.startswith("v.")}
