"""SpyNet optical flow (Ranjan & Black, "Optical Flow Estimation using a Spatial Pyramid
Network", CVPR 2017) as used by BasicVSR / RVRT, channels-last, PyTorch weight names.

Rules of the official RVRT ``SpyNet`` (``models/network_rvrt.py``), reproduced here:

* both frames are resized (bilinear, ``align_corners=False``) to ``ceil(/32) * 32``, then
  ImageNet-normalised (mean ``(0.485, 0.456, 0.406)``, std ``(0.229, 0.224, 0.225)``);
* a 6-level pyramid by 2x2 average pooling (level 0 = coarsest, 1/32 of the resized size);
* the flow starts at zeros of ``floor(level-0 size / 2)``; at each level it is upsampled x2
  (bilinear, ``align_corners=True``) and doubled, replicate-padded by one row / column where the
  level is odd-sized, and refined: ``flow = basic_module[l](cat[ref, warp_border(supp, up), up])
  + up`` (the support warped with ``padding_mode='border'``);
* a returned level ``l`` is resized to ``(h, w) // 2^(5-l)`` (bilinear, ``align_corners=False``)
  and its dx / dy scaled by the ratio of the output size to the resized size.

The coarsest level must be at least 2 pixels, i.e. ``H, W > 32``: the official code fails
deep inside ``F.interpolate`` on smaller frames; here it is a ``ValueError``.

Weights: ``basic_module.<l>.basic_module.<k>.weight/bias`` (``l`` = 0..5, ``k`` = 0, 2, 4, 6, 8;
7x7 convolutions 8 -> 32 -> 64 -> 32 -> 16 -> 2 with ReLUs between), plus the ``mean`` / ``std``
buffers (``(1, 3, 1, 1)``) that a model's full state dict holds. The official SpyNet release
(``{'params': {'basic_module...'}}``, no buffers) loads with :func:`load_spynet_weights`.

Flows are ``[N, H, W, 2]`` with channel 0 = dx (horizontal), 1 = dy.
"""
import math

import keras
import numpy as np
import tensorflow as tf

from ascendcv.layers.conv import Conv2d
from ascendcv.layers.sampling import bilinear_sample
from ascendcv.layers.torch_compat import ConfigKeysLayer

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
NUM_LEVELS = 6
MIN_SIZE = 33  # H, W > 32: the coarsest pyramid level must be >= 2 px


def _buffer_layout(w):
    """``(1, 3, 1, 1)`` buffer -> ``(3,)``."""
    return np.reshape(w, (-1,))


def resize_bilinear(x, size, align_corners=False):
    """``F.interpolate(mode='bilinear')`` to ``size`` (h, w) on NHWC, no antialiasing.

    ``align_corners=False`` is TF2's half-pixel rule; ``True`` maps corner pixel centres onto
    each other (``src = dst * (in - 1) / (out - 1)``).
    """
    if align_corners:
        return tf.raw_ops.ResizeBilinear(images=x, size=tf.cast(size, tf.int32), align_corners=True,
                                         half_pixel_centers=False)
    return tf.cast(tf.image.resize(x, size, method='bilinear'), x.dtype)


def warp_border(x, flow):
    """``flow_warp(x, flow, padding_mode='border', align_corners=True)``: samples outside the
    image take the nearest border value. ``x`` ``[N, H, W, C]``, ``flow`` ``[N, H, W, 2]``."""
    shape = tf.shape(x)
    h, w = shape[1], shape[2]
    gy, gx = tf.meshgrid(tf.range(h, dtype=flow.dtype), tf.range(w, dtype=flow.dtype),
                         indexing='ij')
    sy = tf.clip_by_value(gy[None] + flow[..., 1], 0.0, tf.cast(h - 1, flow.dtype))
    sx = tf.clip_by_value(gx[None] + flow[..., 0], 0.0, tf.cast(w - 1, flow.dtype))
    return bilinear_sample(x, sy[..., None], sx[..., None], groups=1)[..., 0, :]


class SpyNetBasicModule(keras.layers.Layer):
    """One pyramid level: ``[N, h, w, 8]`` (ref, warped support, flow) -> flow residual
    ``[N, h, w, 2]``. Torch names ``basic_module.{0,2,4,6,8}`` (ReLUs at the odd indices)."""

    CHANNELS = (8, 32, 64, 32, 16, 2)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        steps = []
        for i, (cin, cout) in enumerate(zip(self.CHANNELS[:-1], self.CHANNELS[1:])):
            if i:
                steps.append(keras.layers.ReLU())
            steps.append(Conv2d(cin, cout, 7, padding=3))
        self.basic_module = steps
        self.built = True

    def call(self, x):
        for step in self.basic_module:
            x = step(x)
        return x


class SpyNet(ConfigKeysLayer):
    """SpyNet flow ``(ref, supp) -> flow``: the flow on ``ref``'s grid pointing into ``supp``
    (``flow_warp(supp, flow)`` aligns ``supp`` to ``ref``).

    Args:
        return_levels (sequence of int): pyramid levels to return (5 = full resolution). One
            level -> one flow; several -> a list, finest first (as the official code).

    Call: ``ref``, ``supp`` float ``[N, H, W, 3]`` in [0, 1], ``H, W > 32`` ->
    ``[N, H, W, 2]`` (dx, dy) for level 5; level ``l`` gives ``(H, W) // 2^(5-l)``.
    """

    config_keys = ('return_levels',)

    def __init__(self, return_levels=(5,), **kwargs):
        super().__init__(**kwargs)
        levels = tuple(int(v) for v in return_levels)
        if not levels or any(not 0 <= v < NUM_LEVELS for v in levels):
            raise ValueError(f'SpyNet return_levels must be levels in 0..{NUM_LEVELS - 1}, got '
                             f'{return_levels!r}')
        self.return_levels = levels
        self.basic_module = [SpyNetBasicModule(name=f'basic_module_{i}')
                             for i in range(NUM_LEVELS)]
        self.mean = self.add_weight(name='mean', shape=(3,), trainable=False,
                                    initializer=keras.initializers.Constant(IMAGENET_MEAN))
        self.std = self.add_weight(name='std', shape=(3,), trainable=False,
                                   initializer=keras.initializers.Constant(IMAGENET_STD))
        self.built = True

    def torch_weights(self):
        return {'mean': (self.mean, _buffer_layout), 'std': (self.std, _buffer_layout)}

    @staticmethod
    def check_size(h, w):
        """ValueError unless the frames are large enough for the 6-level pyramid."""
        if (h is not None and h < MIN_SIZE) or (w is not None and w < MIN_SIZE):
            raise ValueError(f'SpyNet needs frames larger than 32x32 (its coarsest pyramid level '
                             f'is 1/32 of the size rounded up to a multiple of 32 and must be at '
                             f'least 2 px); got {h}x{w}')

    def call(self, ref, supp):
        if ref.shape.rank != 4 or ref.shape[-1] != 3:
            raise ValueError(f'SpyNet expects frames [N, H, W, 3]; got {ref.shape}')
        ref.shape.assert_is_compatible_with(supp.shape)
        h, w = ref.shape[1], ref.shape[2]
        self.check_size(h, w)
        if h is None or w is None:
            dyn = tf.shape(ref)
            h = dyn[1] if h is None else h
            w = dyn[2] if w is None else w
            tf.debugging.assert_greater_equal(tf.minimum(h, w), MIN_SIZE, message=(
                'SpyNet needs frames larger than 32x32'))
        if isinstance(h, int) and isinstance(w, int):
            h_floor, w_floor = int(math.ceil(h / 32.0) * 32), int(math.ceil(w / 32.0) * 32)
        else:
            h_floor = (h + 31) // 32 * 32
            w_floor = (w + 31) // 32 * 32
        ref = resize_bilinear(ref, [h_floor, w_floor])
        supp = resize_bilinear(supp, [h_floor, w_floor])
        flows = self.process(ref, supp, h, w, h_floor, w_floor)
        return flows[0] if len(flows) == 1 else flows

    def process(self, ref, supp, h, w, h_floor, w_floor):
        """The pyramid on frames already resized to ``(h_floor, w_floor)``; returns the flows of
        ``return_levels``, finest first."""
        ref = [(ref - self.mean) / self.std]
        supp = [(supp - self.mean) / self.std]
        for _ in range(NUM_LEVELS - 1):
            ref.insert(0, tf.nn.avg_pool2d(ref[0], 2, 2, 'VALID'))
            supp.insert(0, tf.nn.avg_pool2d(supp[0], 2, 2, 'VALID'))
        coarse = tf.shape(ref[0])
        flow = tf.zeros(tf.stack([coarse[0], coarse[1] // 2, coarse[2] // 2, 2]), ref[0].dtype)
        out = []
        for level in range(NUM_LEVELS):
            size = tf.shape(flow)[1:3] * 2
            up = resize_bilinear(flow, size, align_corners=True) * 2.0
            target = tf.shape(ref[level])[1:3]
            # odd level sizes: replicate the last row / column (F.pad mode='replicate')
            pad_h, pad_w = target[0] - size[0], target[1] - size[1]
            up = tf.concat([up, tf.repeat(up[:, -1:], pad_h, axis=1)], axis=1)
            up = tf.concat([up, tf.repeat(up[:, :, -1:], pad_w, axis=2)], axis=2)
            warped = warp_border(supp[level], up)
            flow = self.basic_module[level](tf.concat([ref[level], warped, up], -1)) + up
            if level in self.return_levels:
                scale = 2 ** (NUM_LEVELS - 1 - level)
                oh, ow = h // scale, w // scale
                fh, fw = h_floor // scale, w_floor // scale
                flow_out = resize_bilinear(flow, [oh, ow])
                if all(isinstance(v, int) for v in (oh, ow, fh, fw)):
                    ratio = tf.constant([ow / fw, oh / fh], flow.dtype)  # as the official float
                else:
                    ratio = tf.stack([tf.cast(ow, flow.dtype) / tf.cast(fw, flow.dtype),
                                      tf.cast(oh, flow.dtype) / tf.cast(fh, flow.dtype)])
                flow_out = flow_out * ratio
                out.insert(0, flow_out)
        return out


def load_spynet_weights(spynet, path_or_state_dict, source=None):
    """Load an official SpyNet release (``{'params': {'basic_module.<l>.basic_module.<k>.*'}}``,
    e.g. ``spynet_sintel_final-3d2a1287.pth``) into ``spynet``; strict on the ``basic_module``
    keys (``mean`` / ``std`` are constants the release does not hold).

    Raises :class:`ascendcv.utils.torch_checkpoint.CheckpointError` listing missing or unexpected
    keys and shape mismatches.
    """
    from ascendcv.layers.torch_compat import torch_state_variables
    from ascendcv.utils.torch_checkpoint import CheckpointError, load_state_dict
    if isinstance(path_or_state_dict, dict):
        sd, source = path_or_state_dict, source or 'state dict'
    else:
        sd, source = load_state_dict(path_or_state_dict), source or str(path_or_state_dict)
    targets = {k: v for k, v in torch_state_variables(spynet).items()
               if k.startswith('basic_module.')}
    given = {k: v for k, v in sd.items() if k not in ('mean', 'std')}
    missing, unexpected = sorted(set(targets) - set(given)), sorted(set(given) - set(targets))
    if missing or unexpected:
        hint = ''
        if any(k.startswith('spynet.') for k in given):
            hint = ' (keys start with "spynet.": this is a whole-model checkpoint, not a SpyNet ' \
                   'release)'
        raise CheckpointError(f'{source} is not an official SpyNet checkpoint: missing keys '
                              f'({len(missing)}): {missing[:10]}; unexpected keys '
                              f'({len(unexpected)}): {unexpected[:10]}{hint}')
    converted, bad = {}, []
    for key, (var, to_tf) in targets.items():
        value = to_tf(np.asarray(given[key], np.float32))
        if tuple(value.shape) != tuple(var.shape):
            bad.append(f'{key}: checkpoint {tuple(value.shape)} vs model {tuple(var.shape)}')
        converted[key] = value
    if bad:
        raise CheckpointError(f'{source}: SpyNet tensor shapes differ: ' + '; '.join(bad[:10]))
    for key, (var, _) in targets.items():
        var.assign(converted[key])
    return len(targets)
