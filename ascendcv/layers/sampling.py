"""Resampling ops with PyTorch semantics, built from core TF ops (they freeze and export to ONNX).

* :func:`bilinear_sample` -- bilinear interpolation at arbitrary (y, x) pixel coordinates with
  zeros outside the image, the rule shared by ``torchvision.ops.deform_conv2d`` and
  ``F.grid_sample(padding_mode='zeros')``: each of the four corners that falls outside contributes
  zero. It supports channel groups (one coordinate set per group), which deformable convolution
  needs.
* :func:`flow_warp` -- warp features by optical flow (BasicSR ``flow_warp``, align_corners=True).
* :func:`pixel_shuffle` -- ``nn.PixelShuffle`` channel order (not TF's ``depth_to_space`` order).
* :func:`upsample_bilinear` -- ``F.interpolate(mode='bilinear', align_corners=False)``.
* :func:`max_pool_torch`, :func:`avg_pool_torch` -- pools with symmetric padding
  (``count_include_pad=True`` for the average, as PyTorch's default).
"""
import tensorflow as tf


def bilinear_sample(images, y, x, groups=1, weight=None, batch_index=None):
    """Sample ``images`` bilinearly at pixel coordinates, zero outside.

    Args:
        images: ``[N, H, W, C]``; with ``groups=G`` channel ``c`` belongs to group ``c // (C/G)``.
        y, x: float ``[N, ..., G]`` row / column coordinates in pixels (0 = first pixel centre);
            the last axis selects the channel group.
        groups (int): ``G``.
        weight: optional ``[N, ..., G]`` multiplier folded into the interpolation weights
            (e.g. the DCNv2 modulation mask), saving one pass over the sampled values.
        batch_index: optional int32 tensor broadcastable to ``y``: the image each sample reads
            (then ``y``'s leading axis need not be ``N``); default: ``y``'s leading index.

    Returns:
        ``[N, ..., G, C // G]`` sampled values (``y``'s shape + ``[C // G]``).
    """
    shape = tf.shape(images)
    n, h, w, c = shape[0], shape[1], shape[2], shape[3]
    cg = c // groups
    # one zero row/column before and two after: every corner of a clipped coordinate is in range
    padded = tf.pad(images, [[0, 0], [1, 2], [1, 2], [0, 0]])
    hp, wp = h + 3, w + 3
    table = tf.reshape(padded, [-1, cg])  # row index ((n*hp + i)*wp + j)*groups + g

    y = tf.clip_by_value(y, -1.0, tf.cast(h, y.dtype))
    x = tf.clip_by_value(x, -1.0, tf.cast(w, x.dtype))
    y0, x0 = tf.floor(y), tf.floor(x)
    ly, lx = y - y0, x - x0
    hy, hx = 1.0 - ly, 1.0 - lx
    if weight is not None:
        hy, ly = hy * weight, ly * weight

    if batch_index is None:
        rank = tf.rank(y)
        batch = tf.reshape(tf.range(n), tf.concat([[n], tf.ones([rank - 1], tf.int32)], 0))
    else:
        batch = tf.cast(batch_index, tf.int32)
    group = tf.range(groups)
    row = batch * hp + tf.cast(y0, tf.int32) + 1
    index = (row * wp + tf.cast(x0, tf.int32) + 1) * groups + group
    step_x, step_y = groups, wp * groups

    def corner(offset, wgt):
        return tf.gather(table, index + offset) * wgt[..., None]

    return (corner(0, hy * hx) + corner(step_x, hy * lx)
            + corner(step_y, ly * hx) + corner(step_y + step_x, ly * lx))


def flow_warp(x, flow):
    """Warp ``x`` ``[N, H, W, C]`` by ``flow`` ``[N, H, W, 2]`` (dx, dy in pixels), zeros outside.

    Matches BasicSR ``flow_warp(x, flow, 'bilinear', 'zeros', align_corners=True)`` with the flow in
    NHWC (its last axis is (x, y) displacement, as in BasicSR).
    """
    shape = tf.shape(x)
    h, w = shape[1], shape[2]
    gy, gx = tf.meshgrid(tf.range(h, dtype=flow.dtype), tf.range(w, dtype=flow.dtype), indexing='ij')
    sy = gy[None] + flow[..., 1]
    sx = gx[None] + flow[..., 0]
    out = bilinear_sample(x, sy[..., None], sx[..., None], groups=1)
    return out[..., 0, :]


def pixel_shuffle(x, upscale_factor):
    """``nn.PixelShuffle`` on NHWC: ``out[h*r+i, w*r+j, c] = in[h, w, c*r*r + i*r + j]``.

    ``[..., H, W, C*r*r]`` -> ``[..., H*r, W*r, C]`` (any leading dims, e.g. ``[N, D]`` for the
    frames of a video, in one reshape-transpose-reshape: two chained reshapes with dynamic
    sizes are what tf2onnx's reshape merging gets wrong).
    """
    r = int(upscale_factor)
    rank = x.shape.rank
    shape = tf.shape(x)
    lead = [shape[i] for i in range(rank - 3)]
    h, w = shape[rank - 3], shape[rank - 2]
    c = x.shape[-1] // (r * r)
    x = tf.reshape(x, lead + [h, w, c, r, r])
    k = rank - 3
    x = tf.transpose(x, list(range(k)) + [k, k + 3, k + 1, k + 4, k + 2])
    return tf.reshape(x, lead + [h * r, w * r, c])


def pixel_unshuffle(x, downscale_factor):
    """``nn.PixelUnshuffle`` on NHWC (the inverse of :func:`pixel_shuffle`):
    ``out[h, w, c*r*r + i*r + j] = in[h*r+i, w*r+j, c]`` (TF's ``space_to_depth`` orders the
    channels ``(i*r + j)*C + c`` instead).

    ``[N, H, W, C]`` (H, W divisible by r) -> ``[N, H/r, W/r, C*r*r]``.
    """
    r = int(downscale_factor)
    shape = tf.shape(x)
    n, h, w = shape[0], shape[1] // r, shape[2] // r
    c = x.shape[-1]
    x = tf.reshape(x, [n, h, r, w, r, c])
    x = tf.transpose(x, [0, 1, 3, 5, 2, 4])
    return tf.reshape(x, [n, h, w, c * r * r])


def upsample_bilinear(x, scale_factor):
    """``F.interpolate(x, scale_factor=s, mode='bilinear', align_corners=False)`` on NHWC.

    TF2's resize uses half-pixel centres and no antialiasing when upsampling, which is exactly
    PyTorch's align_corners=False rule.
    """
    shape = tf.shape(x)
    size = [shape[1] * scale_factor, shape[2] * scale_factor]
    return tf.cast(tf.image.resize(x, size, method='bilinear'), x.dtype)


def max_pool_torch(x, kernel_size=3, stride=2, padding=1):
    """``nn.MaxPool2d(k, stride, padding)``: padding never wins the max."""
    p = padding
    x = tf.pad(x, [[0, 0], [p, p], [p, p], [0, 0]], constant_values=x.dtype.min)
    return tf.nn.max_pool2d(x, kernel_size, stride, 'VALID')


def avg_pool_torch(x, kernel_size=3, stride=2, padding=1):
    """``nn.AvgPool2d(k, stride, padding)`` with ``count_include_pad=True`` (PyTorch default)."""
    p = padding
    x = tf.pad(x, [[0, 0], [p, p], [p, p], [0, 0]])
    return tf.nn.avg_pool2d(x, kernel_size, stride, 'VALID')
