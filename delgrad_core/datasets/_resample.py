"""Downsampling of square grey-level images by area averaging (numpy only)."""

from __future__ import annotations

import numpy as np

from delgrad_core._errors import InvalidValueError

__all__ = ["area_average", "area_weights"]

# Images are resampled in blocks of this many, to bound the float64 scratch memory (about 25 MB).
_BLOCK_IMAGES = 4096


def area_weights(in_pixels: int, out_pixels: int) -> np.ndarray:
    """Weights of 1-d area averaging from `in_pixels` to `out_pixels` samples.

    Output pixel ``j`` covers the input interval ``[j, j + 1) * in_pixels / out_pixels``; its
    value is the mean of the input over that interval, each input pixel weighted by the length
    of its overlap with it. Every row of the result sums to 1.

    Returns
    -------
    ndarray, shape (out_pixels, in_pixels)
    """
    if not 1 <= out_pixels <= in_pixels:
        raise InvalidValueError(f"out_pixels: expected 1 <= out_pixels <= {in_pixels}, got {out_pixels}")
    # In units of 1 / out_pixels input pixels every boundary is an integer: input pixel i spans
    # [i, i + 1) * out_pixels, output pixel j spans [j, j + 1) * in_pixels.
    output = np.arange(out_pixels)[:, None] * in_pixels
    pixel = np.arange(in_pixels)[None, :] * out_pixels
    overlap = np.minimum(output + in_pixels, pixel + out_pixels) - np.maximum(output, pixel)
    return np.clip(overlap, 0, None) / in_pixels


def area_average(images: np.ndarray, out_pixels: int) -> np.ndarray:
    """Downsample square images to `out_pixels` x `out_pixels` by area averaging.

    Separable: rows, then columns, with `area_weights`. For an integer factor (28 -> 14) this
    is exactly the mean over non-overlapping blocks (2 x 2 mean pooling).

    Parameters
    ----------
    images : ndarray, shape (n_images, in_pixels, in_pixels)
        Any real type (e.g. uint8); not copied as a whole.
    out_pixels : int

    Returns
    -------
    ndarray of float64, shape (n_images, out_pixels, out_pixels)
        In the units of `images`, within their range (clipped to it against rounding: a white
        28 x 28 image came out at 1 + 2e-16 times white at 22 x 22).
    """
    if images.ndim != 3 or images.shape[1] != images.shape[2]:
        raise InvalidValueError(f"images: expected shape (n_images, side, side), got {images.shape}")
    weights = area_weights(images.shape[1], out_pixels)
    result = np.empty((images.shape[0], out_pixels, out_pixels))
    for start in range(0, images.shape[0], _BLOCK_IMAGES):
        block = images[start : start + _BLOCK_IMAGES].astype(np.float64)
        averaged = weights @ block @ weights.T
        result[start : start + _BLOCK_IMAGES] = np.clip(averaged, block.min(initial=np.inf), block.max(initial=-np.inf))
    return result
