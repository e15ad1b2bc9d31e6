"""MATLAB-compatible bicubic resizing (``imresize(..., 'bicubic')``) in numpy.

Video super-resolution benchmarks (Vid4, REDS4, Vimeo-90K-T ...) build their
low-resolution inputs with MATLAB's ``imresize(img, 1/4, 'bicubic')``; the
results of a model are only comparable with published numbers when the LR
frames are made the same way.  This module reproduces MATLAB's algorithm (the
computation also used by BasicSR's ``basicsr/utils/matlab_functions.py``):

* kernel: Keys' cubic convolution kernel with ``a = -0.5``;
* output size: ``ceil(scale * in_size)`` for each spatial dimension;
* output pixel ``x`` (1-based) maps to input coordinate
  ``u = x / scale + 0.5 * (1 - 1 / scale)`` (pixel centres aligned);
* when downscaling with antialiasing the kernel is stretched:
  ``h(t) = scale * cubic(scale * t)`` with support ``4 / scale`` input pixels;
* the ``P = ceil(kernel_width) + 2`` taps starting at
  ``floor(u - kernel_width / 2)`` get weights ``h(u - index)`` normalised to
  sum to 1; taps whose weight is zero for every output pixel are dropped;
* indices outside the image are mirrored symmetrically (the edge pixel is
  repeated: ``..., 1, 0 | 0, 1, ... , n-1 | n-1, n-2, ...``);
* the image is resized one dimension at a time, in order of increasing scale
  factor (height first when both scales are equal).

Integer images follow MATLAB too: each one-dimensional pass is computed in
float64 and its result is clipped to the dtype's range and rounded (half away
from zero) before the next pass, exactly as MATLAB's ``imresizemex`` returns
an array of the input class.  Floating point images are computed in float64
without clipping and returned in their input dtype (values are not rescaled:
``[0, 1]`` stays ``[0, 1]``, ``[0, 255]`` stays ``[0, 255]``).

Public API:

* :func:`imresize` -- one image ``[H, W]`` or ``[H, W, C]``.
* :func:`bicubic_degrade` -- a clip ``[T, H, W, 3]`` of uint8 frames reduced by
  an integer factor (the standard "BI" degradation of VSR benchmarks).
* :func:`cubic`, :func:`calculate_weights_indices` -- the building blocks.
"""
import math
import numbers

import numpy as np

__all__ = ['cubic', 'calculate_weights_indices', 'imresize', 'bicubic_degrade']

_KERNEL_WIDTH = 4.0  # support of the bicubic kernel, in pixels


def cubic(x):
    """Keys' cubic convolution kernel with ``a = -0.5`` (MATLAB's ``cubic``).

    Args:
        x: array-like of distances (any shape).

    Returns:
        float64 array of the same shape; zero for ``|x| >= 2``.
    """
    absx = np.abs(np.asarray(x, dtype=np.float64))
    absx2 = absx * absx
    absx3 = absx2 * absx
    inner = (1.5 * absx3 - 2.5 * absx2 + 1.0) * (absx <= 1)
    outer = (-0.5 * absx3 + 2.5 * absx2 - 4.0 * absx + 2.0) * ((absx > 1) & (absx <= 2))
    return inner + outer


def calculate_weights_indices(in_length, out_length, scale, antialiasing=True):
    """Weights and (mirrored, 0-based) input indices of a 1-D MATLAB resize.

    Output pixel ``i`` of the resized dimension is
    ``sum_k weights[i, k] * input[indices[i, k]]``.

    Args:
        in_length (int): input length (> 0).
        out_length (int): output length (> 0).
        scale (float): scale factor (``out / in``; < 1 shrinks).
        antialiasing (bool): stretch the kernel when shrinking (MATLAB default).

    Returns:
        ``(weights, indices)``: float64 and int64 arrays of shape
        ``[out_length, P']`` where ``P' <= ceil(kernel_width) + 2`` after the
        all-zero taps are removed.  Every row of ``weights`` sums to 1 and every
        index lies in ``[0, in_length)``.
    """
    kernel_width = _KERNEL_WIDTH
    stretch = scale < 1 and antialiasing
    if stretch:
        kernel_width = kernel_width / scale

    x = np.arange(1, out_length + 1, dtype=np.float64)  # 1-based output coordinates
    u = x / scale + 0.5 * (1 - 1 / scale)  # matching 1-based input coordinates
    left = np.floor(u - kernel_width / 2)
    num_taps = int(math.ceil(kernel_width)) + 2
    indices = left[:, None] + np.arange(num_taps, dtype=np.float64)[None, :]  # 1-based
    distance = u[:, None] - indices
    if stretch:
        weights = scale * cubic(scale * distance)
    else:
        weights = cubic(distance)
    weights = weights / weights.sum(axis=1, keepdims=True)

    # Symmetric mirroring of out-of-range (1-based) indices, as MATLAB's
    # aux = [1:in_length, in_length:-1:1]; indices = aux(mod(indices - 1, 2 * in_length) + 1).
    aux = np.concatenate([np.arange(in_length), np.arange(in_length - 1, -1, -1)])
    indices = aux[np.mod(indices.astype(np.int64) - 1, aux.size)]

    keep = np.any(weights != 0, axis=0)
    return weights[:, keep], indices[:, keep]


def _round_to_integer(values, dtype):
    """Clip float64 ``values`` to ``dtype``'s range and round half away from zero."""
    info = np.iinfo(dtype)
    values = np.clip(values, info.min, info.max)
    if info.min == 0:  # unsigned: half away from zero is half up
        return np.floor(values + 0.5).astype(dtype)
    return (np.sign(values) * np.floor(np.abs(values) + 0.5)).astype(dtype)


def _resize_axis(array, axis, out_length, scale, antialiasing):
    """Resize ``array`` along ``axis``; integer arrays are rounded after the pass."""
    weights, indices = calculate_weights_indices(array.shape[axis], out_length, scale, antialiasing)
    # A contiguous float64 copy with the resized axis first makes the row gathers fast.
    moved = np.ascontiguousarray(np.moveaxis(array, axis, 0), dtype=np.float64)
    extra = (1,) * (moved.ndim - 1)  # broadcast the weights over the other axes
    result = np.zeros((out_length,) + moved.shape[1:], dtype=np.float64)
    for tap in range(weights.shape[1]):
        result += weights[:, tap].reshape((out_length,) + extra) * moved[indices[:, tap]]
    result = np.moveaxis(result, 0, axis)
    if np.issubdtype(array.dtype, np.integer):
        return _round_to_integer(result, array.dtype)
    return result


def _parse_scale(scale):
    """``scale`` -> ``(scale_h, scale_w)`` of positive floats."""
    if isinstance(scale, numbers.Real):
        scales = (float(scale), float(scale))
    else:
        scales = tuple(float(s) for s in scale)
        if len(scales) != 2:
            raise ValueError(f'scale must be a number or a pair (scale_h, scale_w), got {scale!r}')
    if not all(math.isfinite(s) and s > 0 for s in scales):
        raise ValueError(f'scale must be positive and finite, got {scale!r}')
    return scales


def _resize_spatial(array, axes, scales, antialiasing):
    """Resize ``array`` along the two spatial ``axes`` in MATLAB's order."""
    out_sizes = [int(math.ceil(array.shape[axis] * s)) for axis, s in zip(axes, scales)]
    # MATLAB: [~, order] = sort(scale) -- a stable sort, so height first on ties.
    order = sorted(range(2), key=lambda k: scales[k])
    for k in order:
        array = _resize_axis(array, axes[k], out_sizes[k], scales[k], antialiasing)
    return array


def imresize(img, scale, antialiasing=True):
    """Bicubic resize of one image, identical to MATLAB's ``imresize(img, scale)``.

    Args:
        img (np.ndarray): ``[H, W]`` or ``[H, W, C]`` image, any integer dtype
            (typically uint8 in ``[0, 255]``) or floating dtype (any range).
        scale (float | tuple): scale factor for both dimensions, or a pair
            ``(scale_h, scale_w)``.  ``1/4`` shrinks by 4, ``2`` doubles.
        antialiasing (bool): when shrinking, widen the kernel to low-pass the
            image first (MATLAB's default ``'Antialiasing', true``).

    Returns:
        np.ndarray of shape ``[ceil(H*scale_h), ceil(W*scale_w)(, C)]`` and the
        dtype of ``img``.  Float images keep their range and are not clipped
        (bicubic overshoot can leave it slightly); integer images are
        clipped and rounded after each one-dimensional pass, like MATLAB.
    """
    img = np.asarray(img)
    if img.ndim not in (2, 3):
        raise ValueError(f'imresize expects an [H, W] or [H, W, C] image, got shape {img.shape}')
    if not (np.issubdtype(img.dtype, np.integer) or np.issubdtype(img.dtype, np.floating)):
        raise TypeError(f'imresize expects an integer or floating point image, got dtype {img.dtype}')
    if img.shape[0] == 0 or img.shape[1] == 0:
        raise ValueError(f'imresize got an empty image of shape {img.shape}')
    result = _resize_spatial(img, (0, 1), _parse_scale(scale), antialiasing)
    return result.astype(img.dtype, copy=False)


def bicubic_degrade(frames, scale=4):
    """MATLAB bicubic downsampling of a clip: the "BI" degradation of VSR benchmarks.

    Equivalent to ``imresize(frame, 1 / scale)`` (antialiased) on every frame.

    Args:
        frames (np.ndarray): uint8 array ``[T, H, W, 3]`` (RGB, ``[0, 255]``);
            ``H`` and ``W`` must be multiples of ``scale``.
        scale (int): integer downscaling factor (default 4).

    Returns:
        uint8 array ``[T, H // scale, W // scale, 3]``.

    Raises:
        ValueError: wrong rank / channel count, non-positive scale, or a frame
            size not divisible by ``scale``.
        TypeError: ``frames`` is not uint8.
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f'bicubic_degrade expects frames of shape [T, H, W, 3], got {frames.shape}')
    if frames.dtype != np.uint8:
        raise TypeError(f'bicubic_degrade expects uint8 frames, got dtype {frames.dtype}')
    if isinstance(scale, bool) or not isinstance(scale, numbers.Integral) or scale < 1:
        raise ValueError(f'bicubic_degrade expects a positive integer scale, got {scale!r}')
    scale = int(scale)
    height, width = frames.shape[1:3]
    if height == 0 or width == 0 or height % scale or width % scale:
        raise ValueError(f'frame size {height}x{width} (HxW) is not divisible by scale {scale}; '
                         f'crop the frames to a multiple of {scale} first')
    if scale == 1:
        return frames.copy()
    out = np.empty((frames.shape[0], height // scale, width // scale, 3), dtype=np.uint8)
    for t, frame in enumerate(frames):  # frame by frame: bounded float64 memory
        out[t] = _resize_spatial(frame, (0, 1), (1.0 / scale, 1.0 / scale), True)
    return out
