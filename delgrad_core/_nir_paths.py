"""Fold a chain of NIR Linear and Delay nodes between two populations into weights and delays.

Every line of the signal between two populations carries spikes of some presynaptic neurons,
each with a weight and a delay.  A Delay node adds its delay to every path on its line; a
Linear node mixes lines.  delgrad has one delay per synapse, so a line may receive a given
presynaptic neuron over several paths only if all of them have the same delay; then their
weights add.  This covers axonal delays (Delay -> Linear), dendritic delays (Linear -> Delay),
delgrad's synaptic fan-out (Linear 0/1 -> Delay -> Linear) and any other exact arrangement.

A synapse of weight 0 has no such path, yet training may make its weight nonzero, so its delay
matters too: it is the delay of all paths through the nodes' entries, zero ones included
("reach"), when they agree (e.g. Delay -> Linear -> Delay gives d_i + d_j).
"""

from __future__ import annotations

import numpy as np

from delgrad_core._nir_common import NIRConversionError

__all__ = ["Paths"]

_BLOCK_ELEMENTS = 1 << 22  # bound on (rows x lines x presynaptic neurons) per block in the general case
# bound on (lines x presynaptic neurons) of the working arrays: a few of them in float64, about
# 0.5 GB in all at the bound
_MAX_PATH_ELEMENTS = 1 << 24
# bound on (rows x lines x presynaptic neurons) in all, the work of the general case (about 10 s)
_MAX_GENERAL_WORK = 1 << 31


def _check_size(n_lines: int, n_pre: int, what: str) -> None:
    if n_lines * n_pre > _MAX_PATH_ELEMENTS:
        raise NIRConversionError(f"{what}: {n_lines} lines carrying {n_pre} presynaptic neurons ({n_lines * n_pre} "
                                 f"pairs) between two populations; at most {_MAX_PATH_ELEMENTS} pairs are converted")


class Paths:
    """Per (line, presynaptic neuron): weight, delay in seconds and whether a path of nonzero
    weight exists; and the range (low, high) of delays over all paths, zero weights included, as
    a sum of a per-line and a per-neuron part (every Linear entry is a path, so after a Linear
    every line reaches every neuron over the same delays)."""

    def __init__(self, n_pre: int, what: str):
        _check_size(n_pre, n_pre, what)
        self.weight = np.eye(n_pre)
        self.delay = np.zeros((n_pre, n_pre))
        self.connected = np.eye(n_pre, dtype=bool)
        self.reach_line_s = np.zeros((2, n_pre))  # (low, high) per line
        self.reach_pre_s = None  # (low, high) per presynaptic neuron, once a Linear mixed the lines

    @property
    def n_lines(self) -> int:
        return self.weight.shape[0]

    def add_delay(self, key: str, seconds: np.ndarray) -> None:
        """Delay node: y(t) = x(t - tau) on each line (NIR docs, "Delay")."""
        seconds = np.asarray(seconds, dtype=np.float64)
        if seconds.shape != (self.n_lines,):
            raise NIRConversionError(f"Delay {key!r}: expected {self.n_lines} delays, got shape {seconds.shape}")
        bad = ~np.isfinite(seconds) | (seconds < 0)
        if np.any(bad):
            raise NIRConversionError(f"Delay {key!r}: delays must be finite and >= 0 s, got {float(seconds[bad][0])!r} "
                                     f"on line {int(np.argmax(bad))}")
        self.delay = np.where(self.connected, self.delay + seconds[:, None], 0.0)
        self.reach_line_s = self.reach_line_s + seconds

    def apply_scale(self, key: str, scale: np.ndarray) -> None:
        """Scale node y = s * x, line by line (no mixing, unlike a diagonal Linear's zeros)."""
        scale = np.asarray(scale, dtype=np.float64).reshape(-1)
        if scale.shape != (self.n_lines,):
            raise NIRConversionError(f"{key!r}: expected {self.n_lines} factors, got shape {scale.shape}")
        if not np.all(np.isfinite(scale)):
            raise NIRConversionError(f"{key!r}: factors contain NaN or inf")
        self.weight = scale[:, None] * self.weight
        self.connected = self.connected & (scale != 0)[:, None]
        self.delay = np.where(self.connected, self.delay, 0.0)

    def apply_linear(self, key: str, matrix: np.ndarray) -> None:
        """Linear node y = W x: line r gets sum_m W[r, m] x_m."""
        matrix = np.asarray(matrix, dtype=np.float64)
        if matrix.ndim != 2 or matrix.shape[1] != self.n_lines:
            raise NIRConversionError(
                f"{key!r}: expected a 2-d weight matrix with {self.n_lines} columns, got shape {matrix.shape}"
            )
        if not np.all(np.isfinite(matrix)):
            raise NIRConversionError(f"{key!r}: weights contain NaN or inf")
        _check_size(matrix.shape[0], self.weight.shape[1], repr(key))
        if np.all(self.connected.sum(axis=1) <= 1):
            low, high, connected = self._delay_range_one_source(matrix)
        else:
            low, high, connected = self._delay_range_general(matrix, repr(key))
        clash = connected & (low != high)
        if np.any(clash):
            row, pre = np.argwhere(clash)[0]
            raise NIRConversionError(
                f"{key!r}: line {row} receives presynaptic neuron {pre} over paths with different delays "
                f"({float(low[row, pre])!r} s and {float(high[row, pre])!r} s); delgrad has one delay per synapse"
            )
        self.weight = matrix @ self.weight
        self.delay = np.where(connected, high, 0.0)
        self.connected = connected
        if self.reach_pre_s is None:  # (so far line p carried neuron p alone)
            self.reach_pre_s = self.reach_line_s
        else:
            self.reach_pre_s = self.reach_pre_s + [[self.reach_line_s[0].min()], [self.reach_line_s[1].max()]]
        self.reach_line_s = np.zeros((2, matrix.shape[0]))

    def synapse_delays(self) -> tuple[np.ndarray, np.ndarray]:
        """(delays in s, undetermined) per (line, presynaptic neuron), after a Linear: the delay of
        the paths of nonzero weight, else the one delay all paths share; `undetermined` marks
        pairs with neither (their delay is 0)."""
        low, high = (line[:, None] + pre[None, :] for line, pre in zip(self.reach_line_s, self.reach_pre_s))
        shared = low == high
        delays = np.where(self.connected, self.delay, np.where(shared, high, 0.0))
        return delays, ~self.connected & ~shared

    def _delay_range_one_source(self, matrix):
        """Each line carries at most one presynaptic neuron: O(nonzeros) bookkeeping."""
        n_pre = self.weight.shape[1]
        has_source = self.connected.any(axis=1)
        source = self.connected.argmax(axis=1)
        line_delay = self.delay[np.arange(self.n_lines), source]
        rows, cols = np.nonzero(matrix)
        keep = has_source[cols]
        rows, cols = rows[keep], cols[keep]
        index = (rows, source[cols])
        low = np.full((matrix.shape[0], n_pre), np.inf)
        high = np.full((matrix.shape[0], n_pre), -np.inf)
        np.minimum.at(low, index, line_delay[cols])
        np.maximum.at(high, index, line_delay[cols])
        connected = np.zeros((matrix.shape[0], n_pre), dtype=bool)
        connected[index] = True
        return low, high, connected

    def _delay_range_general(self, matrix, what: str):
        """Lines carry several presynaptic neurons: check in blocks of rows to bound memory."""
        n_rows, n_pre = matrix.shape[0], self.weight.shape[1]
        if n_rows * self.n_lines * n_pre > _MAX_GENERAL_WORK:
            raise NIRConversionError(
                f"{what}: {n_rows} rows over {self.n_lines} lines that carry several of {n_pre} presynaptic neurons "
                f"each: checking their delays takes {n_rows * self.n_lines * n_pre:,} steps, at most "
                f"{_MAX_GENERAL_WORK:,} are taken")
        low = np.full((n_rows, n_pre), np.inf)
        high = np.full((n_rows, n_pre), -np.inf)
        block = max(1, _BLOCK_ELEMENTS // max(1, self.n_lines * n_pre))
        for start in range(0, n_rows, block):
            uses = (matrix[start:start + block] != 0)[:, :, None] & self.connected[None, :, :]
            delays = self.delay[None, :, :]
            low[start:start + block] = np.where(uses, delays, np.inf).min(axis=1)
            high[start:start + block] = np.where(uses, delays, -np.inf).max(axis=1)
        return low, high, np.isfinite(high)
