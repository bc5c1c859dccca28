"""Binary masks for coupling layers (Dinh et al. 2017, "Density estimation using Real
NVP", section 3.4).

A mask has the event shape of the data; entries equal to 1 are passed through unchanged
and condition the transformation of the entries equal to 0. ``flip=True`` swaps the two
roles, so alternating layers transform every entry.
"""

import numpy as np

from chainlab.validation import check_at_least

__all__ = ["alternating_mask", "channel_mask", "checkerboard_mask", "half_mask"]


def _check_sizes(height: int, width: int, channels: int, *, min_channels=1) -> None:
    check_at_least("height", height, 1)
    check_at_least("width", width, 1)
    check_at_least("channels", channels, min_channels)


def _finish(mask: np.ndarray, flip: bool) -> np.ndarray:
    return (1 - mask if flip else mask).astype(np.float32)


def half_mask(dim: int, *, flip: bool = False) -> np.ndarray:
    """``(dim,)`` mask with ones on the first ``dim // 2`` entries.

    Example:
      >>> half_mask(4).tolist(), half_mask(4, flip=True).tolist()
      ([1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 1.0])
    """
    check_at_least("dim", dim, 2)
    return _finish(np.arange(dim) < dim // 2, flip)


def alternating_mask(dim: int, *, flip: bool = False) -> np.ndarray:
    """``(dim,)`` mask with ones on the even entries.

    Example:
      >>> alternating_mask(4).tolist()
      [1.0, 0.0, 1.0, 0.0]
    """
    check_at_least("dim", dim, 2)
    return _finish(np.arange(dim) % 2 == 0, flip)


def checkerboard_mask(
    height: int, width: int, channels: int, *, flip: bool = False
) -> np.ndarray:
    """``(height, width, channels)`` mask that is 1 where ``row + column`` is even.

    Example:
      >>> checkerboard_mask(2, 2, 1)[..., 0].tolist()
      [[1.0, 0.0], [0.0, 1.0]]
    """
    _check_sizes(height, width, channels)
    rows, cols = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    board = (rows + cols) % 2 == 0
    return _finish(np.repeat(board[:, :, None], channels, axis=2), flip)


def channel_mask(
    height: int, width: int, channels: int, *, flip: bool = False
) -> np.ndarray:
    """``(height, width, channels)`` mask that is 1 on the first ``channels // 2``.

    Example:
      >>> channel_mask(1, 1, 4)[0, 0].tolist()
      [1.0, 1.0, 0.0, 0.0]
    """
    _check_sizes(height, width, channels, min_channels=2)
    chans = np.arange(channels) < channels // 2
    return _finish(np.broadcast_to(chans, (height, width, channels)), flip)
