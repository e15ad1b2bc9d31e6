"""Video snapshot compressive imaging (SCI) physics: forward model, its adjoint, the network input
normalisation, frame grouping and the RGGB Bayer filter. Pure numpy / TensorFlow, no file IO.

The one home of these operations: the SCI dataloader (:mod:`ascendcv.dataloader.sci`), the SCI
models (:mod:`ascendvsr.models.gap_tv`, :mod:`ascendvsr.models.revsci`) and the SCI task all use
them from here. TensorFlow is imported only by the ``*_tf`` functions.

Layouts (as in the MATLAB benchmark files and the official masks): a grayscale video is
``[..., H, W, B]`` with the ``B`` frames of one measurement on the last axis (colour
``[..., H, W, 3, B]``); a mask is ``[H, W, B]``; a measurement is ``[..., H, W]``. ``B`` is the
compression ratio (8 for every public benchmark and official mask).

Forward model
    ``y = sum_t mask_t * x_t`` (:func:`measure`, :func:`measure_tf`); its adjoint
    ``x = y * mask`` (:func:`adjoint`).

Network input normalisation (RevSCI / EfficientSCI official code)
    ``mask_s = sum_t mask_t`` with zeros replaced by 1, ``meas_re = meas / mask_s``
    (:func:`mask_sum`, :func:`normalize_measurement`). A pixel that no mask ever samples has
    ``meas = 0`` and ``mask_s = 0 -> 1``, so ``meas_re = 0`` there: defined, finite, no
    division by zero. (The public benchmark mask has 235 such pixels out of 65536.)

Bayer (RGGB)
    :func:`bayer_mosaic` samples an RGB frame into a raw frame: R at (0, 0), G at (0, 1) and
    (1, 0), B at (1, 1) of every 2x2 block (row, column; :data:`BAYER_OFFSETS`);
    :func:`measure_bayer` measures raw frames; :func:`bayer_split` / :func:`bayer_merge` convert a
    raw frame to / from its four half-resolution planes (R, G1, G2, B), the layout PnP-SCI's
    colour GAP works on.
"""
import numpy as np

__all__ = ['BAYER_OFFSETS', 'measure', 'measure_tf', 'adjoint', 'mask_sum', 'mask_sum_tf',
           'normalize_measurement', 'normalize_measurement_tf', 'split_frames', 'is_color',
           'rgb_to_luma', 'bayer_mosaic', 'bayer_split', 'bayer_merge', 'measure_bayer']

BAYER_OFFSETS = {'R': (0, 0), 'G1': (0, 1), 'G2': (1, 0), 'B': (1, 1)}
"""RGGB: (row, column) of each colour inside a 2x2 block."""

_LUMA = np.array([0.299, 0.587, 0.114])  # ITU-R BT.601 luma (OpenCV RGB2GRAY / YCrCb Y)


# ============================================================================ forward model

def _check_video_mask(video_shape, mask_shape, what='video'):
    if len(mask_shape) != 3:
        raise ValueError(f'mask must be [H, W, B], got shape {tuple(mask_shape)}')
    if len(video_shape) < 3 or tuple(video_shape[-3:]) != tuple(mask_shape):
        raise ValueError(f'{what} must be [..., H, W, B] matching the mask {tuple(mask_shape)}, '
                         f'got shape {tuple(video_shape)}')


def _float(*arrays):
    dtype = np.result_type(*[a.dtype for a in arrays], np.float32)
    return np.float64 if dtype == np.float64 else np.float32


def measure(video, mask):
    """Snapshot measurement ``y = sum_t mask_t * x_t`` (numpy).

    Args:
        video: ``[..., H, W, B]`` frames (any real dtype).
        mask: ``[H, W, B]``.

    Returns:
        ``[..., H, W]``, float64 if an input is float64, else float32.
    """
    video, mask = np.asarray(video), np.asarray(mask)
    _check_video_mask(video.shape, mask.shape)
    dtype = _float(video, mask)
    return np.einsum('...hwb,hwb->...hw', video.astype(dtype, copy=False),
                     mask.astype(dtype, copy=False))


def measure_tf(video, mask):
    """TensorFlow :func:`measure`: ``[..., H, W, B]`` x ``[H, W, B]`` -> float32 ``[..., H, W]``.

    ``mask`` may also be ``[..., H, W, B]`` (one mask per sample; broadcast)."""
    import tensorflow as tf
    video = tf.cast(video, tf.float32)
    mask = tf.cast(mask, tf.float32)
    return tf.reduce_sum(video * mask, axis=-1)


def adjoint(meas, mask):
    """Adjoint of the forward model, ``x_t = mask_t * y``: ``[..., H, W]`` -> ``[..., H, W, B]``."""
    meas, mask = np.asarray(meas), np.asarray(mask)
    if mask.ndim != 3 or tuple(meas.shape[-2:]) != mask.shape[:2]:
        raise ValueError(f'meas [..., H, W] must match mask [H, W, B]; got {meas.shape} and '
                         f'{mask.shape}')
    dtype = _float(meas, mask)
    return meas.astype(dtype, copy=False)[..., None] * mask.astype(dtype, copy=False)


def mask_sum(mask):
    """``sum_t mask_t`` (float32 ``[..., H, W]``) with zeros replaced by 1 (pixels never sampled),
    the normaliser of the official RevSCI / EfficientSCI input."""
    s = np.asarray(mask, np.float32).sum(-1)
    s[s == 0] = 1
    return s


def mask_sum_tf(mask):
    """TensorFlow :func:`mask_sum`."""
    import tensorflow as tf
    s = tf.reduce_sum(tf.cast(mask, tf.float32), axis=-1)
    return tf.where(s == 0, tf.ones_like(s), s)


def normalize_measurement(meas, mask):
    """``meas_re = meas / mask_sum(mask)`` (float32): ``[..., H, W]`` with ``mask [H, W, B]``
    (or one mask per measurement ``[..., H, W, B]``). 0 where no frame is sampled."""
    meas = np.asarray(meas, np.float32)
    s = mask_sum(mask)
    if tuple(meas.shape[-2:]) != tuple(s.shape[-2:]):
        raise ValueError(f'meas [..., H, W] must match mask [H, W, B]; got {meas.shape} and '
                         f'{np.shape(mask)}')
    return meas / s


def normalize_measurement_tf(meas, mask):
    """TensorFlow :func:`normalize_measurement` (float32)."""
    import tensorflow as tf
    return tf.cast(meas, tf.float32) / mask_sum_tf(mask)


def split_frames(orig, b):
    """``orig [H, W, N]`` -> ``[N // b, H, W, b]``: the ``b`` frames of each measurement; colour
    ``orig [H, W, 3, N]`` -> ``[N // b, H, W, 3, b]``."""
    orig = np.asarray(orig)
    color = orig.ndim == 4 and orig.shape[2] == 3
    if (orig.ndim != 3 and not color) or orig.shape[-1] % b:
        raise ValueError(f'orig must be [H, W, N] (or colour [H, W, 3, N]) with N divisible by '
                         f'{b}, got {orig.shape}')
    n = orig.shape[-1]
    split = orig.reshape(orig.shape[:-1] + (n // b, b))
    return np.ascontiguousarray(np.moveaxis(split, -2, 0))


def is_color(orig):
    """True for colour frames ``[..., H, W, 3, B]`` / ``orig [H, W, 3, N]`` (``ndim >= 4``, 3 on
    the axis before the frames)."""
    return np.ndim(orig) >= 4 and np.shape(orig)[-2] == 3


# ============================================================================ colour

def rgb_to_luma(rgb):
    """ITU-R BT.601 luma ``Y = 0.299 R + 0.587 G + 0.114 B`` of ``[..., 3]`` frames.

    uint8 in -> uint8 out (rounded, as OpenCV's ``cvtColor(..., RGB2GRAY)``); float in -> float
    out (same scale, not rounded).
    """
    rgb = np.asarray(rgb)
    if rgb.ndim < 1 or rgb.shape[-1] != 3:
        raise ValueError(f'rgb_to_luma expects [..., 3] RGB, got shape {rgb.shape}')
    y = rgb.astype(np.float64) @ _LUMA
    if rgb.dtype == np.uint8:
        return np.clip(np.rint(y), 0, 255).astype(np.uint8)
    return y.astype(rgb.dtype if np.issubdtype(rgb.dtype, np.floating) else np.float32)


def bayer_mosaic(rgb):
    """RGGB raw frames from RGB frames: ``[..., H, W, 3]`` -> ``[..., H, W]`` (same dtype).

    Pixel ``(i, j)`` keeps R when ``i, j`` are both even, B when both odd, G otherwise
    (see :data:`BAYER_OFFSETS`). Odd sizes are allowed (the pattern is just cut).
    """
    rgb = np.asarray(rgb)
    if rgb.ndim < 3 or rgb.shape[-1] != 3:
        raise ValueError(f'bayer_mosaic expects RGB frames [..., H, W, 3], got shape {rgb.shape}')
    raw = rgb[..., 1].copy()  # green everywhere, then R and B sites
    raw[..., 0::2, 0::2] = rgb[..., 0::2, 0::2, 0]
    raw[..., 1::2, 1::2] = rgb[..., 1::2, 1::2, 2]
    return raw


def bayer_split(raw):
    """``[..., H, W]`` RGGB raw (H, W even) -> ``[..., H/2, W/2, 4]`` planes (R, G1, G2, B)."""
    raw = np.asarray(raw)
    if raw.ndim < 2 or raw.shape[-1] % 2 or raw.shape[-2] % 2:
        raise ValueError(f'bayer_split expects [..., H, W] with even H and W, got {raw.shape}')
    return np.stack([raw[..., r::2, c::2] for r, c in BAYER_OFFSETS.values()], axis=-1)


def bayer_merge(planes):
    """Inverse of :func:`bayer_split`: ``[..., h, w, 4]`` -> ``[..., 2h, 2w]``."""
    planes = np.asarray(planes)
    if planes.ndim < 3 or planes.shape[-1] != 4:
        raise ValueError(f'bayer_merge expects [..., h, w, 4], got shape {planes.shape}')
    h, w = planes.shape[-3:-1]
    raw = np.empty(planes.shape[:-3] + (2 * h, 2 * w), planes.dtype)
    for k, (r, c) in enumerate(BAYER_OFFSETS.values()):
        raw[..., r::2, c::2] = planes[..., k]
    return raw


def measure_bayer(rgb_frames, mask):
    """Colour (Bayer) SCI measurement: the ``B`` RGB frames ``[..., B, H, W, 3]`` are mosaicked
    (RGGB) and measured with ``mask [H, W, B]``: returns ``[..., H, W]`` (float32/float64)."""
    raw = bayer_mosaic(rgb_frames)  # [..., B, H, W]
    return measure(np.moveaxis(raw, -3, -1), mask)
