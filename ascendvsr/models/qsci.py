"""Q-SCI: LSQ low-bit quantization of EfficientSCI for video snapshot compressive imaging.

Cao, Wang, Wang, Yuan, "A Simple Low-bit Quantization Framework for Video Snapshot Compressive
Imaging", ECCV 2024; official code mcao92/QuantizedSCI (``cacti/models/quantized_sci.py``,
class ``quantized_sci(in_ch=32, units=8, group_num=2, color_ch=1, bit_depth=8)``, built on
ucaswangls/EfficientSCI). Same module tree and PyTorch names, so official checkpoints load
through :mod:`ascendvsr.convert.qsci`.

:class:`QSCI` is :class:`ascendvsr.models.efficientsci.EfficientSCI` built with the fake-quant
:class:`ascendvsr.layers.qsci_blocks.QuantLayerFactory` (every conv ``Conv3dQ``, every linear
``LinearQ``, the attention with ``moveq``/``movek`` and quantized q/k/v/probabilities), so the
input, the ResDNet units, the up-conv, the pixel shuffle and the output layout are EfficientSCI's.

Module tree by bit depth (channels-last, ``c = in_ch``, ``x_in [N, B, H, W, 1]``):

* ``bit_depth == 8``: EfficientSCI's ``fem.{0,2,4}``, ``up_conv``, ``vrm.{0,2,4}``, all 8-bit.
* ``bit_depth < 8`` (the paper's high-quality FEM and precise VRM): every ``*_1`` conv is a
  ``bit_depth`` conv of EfficientSCI's FEM/VRM, every ``*_2`` a parallel **8-bit** 1x1 conv;
  their outputs are added::

      f1 = fem_conv1_1(x) + fem_conv1_2(x)          (3,7,7) 1->c  |  1x1 1->c      (+ LReLU each)
      f2 = fem_conv2_1(f1) + fem_conv2_2(f1)        3^3 c->2c     |  1x1 c->2c     (+ LReLU each)
      fem = fem_conv3_1(f2) + fem_conv3_2(unshuffle(f2))
            3^3 stride (1,2,2) 2c->4c (+LReLU) | PixelUnshuffle(2) per frame (PyTorch order,
            channel c*4 + i*2 + j) then 1x1 8c->4c (+LReLU)
      v1 = vrm_conv1_1(s) + vrm_conv1_2(s)          3^3 2c->2c    |  1x1 2c->2c    (+ LReLU each)
      v2 = vrm_conv2_1(v1) + vrm_conv2_2(v1)        1x1 2c->c     |  1x1 2c->c     (+ LReLU each)
      out = vrm_conv3_1(v2) + vrm_conv3_2(v2)       3^3 c->color  |  1x1 c->color  (no activation)

  The ResDNet, ``up_conv`` and the attention probabilities are ``bit_depth``.

Quantizers start uninitialised, as in the official code: the first training-mode forward
(:meth:`QSCI.calibrate`, run eagerly; the Q-SCI task runs it on the first training batch when
training starts) sets every step size by the official LSQ rule (see
:mod:`ascendcv.layers.fake_quant`). Evaluating an uncalibrated model raises
:class:`ascendcv.layers.fake_quant.QuantizerNotInitializedError` listing the quantizers.
``quantize=False`` is the official "quantization off" network (same weights, every quantizer
disabled, ``moveq``/``movek`` kept).

Training loss of the official ``tools/train.py``: ``sqrt(MSELoss(out, gt))``.
"""
import tensorflow as tf

from ascendcv.layers.fake_quant import (QuantizerNotInitializedError, calibrate_quantizers,
                                        name_quantizers, quantizers_of, uninitialized_quantizers)
from ascendcv.layers.sampling import pixel_unshuffle
from ascendvsr.layers.efficientsci_blocks import LeakyReLU, ResDNetBlock, TorchSequential
from ascendvsr.layers.qsci_blocks import BRANCH8, QuantLayerFactory
from ascendvsr.models.efficientsci import EfficientSCI

__all__ = ['QSCI', 'BIT_DEPTHS', 'qsci_kwargs', 'build_qsci']

BIT_DEPTHS = (2, 3, 4, 8)  # the paper's (and the released checkpoints') bit depths
PARALLEL = ('fem_conv1_1', 'fem_conv1_2', 'fem_conv2_1', 'fem_conv2_2', 'fem_conv3_1',
            'fem_conv3_2', 'vrm_conv1_1', 'vrm_conv1_2', 'vrm_conv2_1', 'vrm_conv2_2',
            'vrm_conv3_1', 'vrm_conv3_2')


class QSCI(EfficientSCI):
    """Official ``quantized_sci(in_ch, units, group_num, color_ch, bit_depth)``.

    Args:
        in_ch, units, group_num, color_ch, compress_ratio, jit_compile: as
            :class:`EfficientSCI` (official defaults 32 / 8 / 2, the S size).
        bit_depth (int): 2..8; 8 = the EfficientSCI tree, < 8 = the parallel-branch tree.
        quantize (bool): False = every quantizer off (official ``alpha = None``).

    Call as :class:`EfficientSCI`: ``model((meas_re [N, H, W], mask [(N,) H, W, B]))`` ->
    ``[N, H, W, B]``.
    """

    def __init__(self, in_ch=32, units=8, group_num=2, color_ch=1, bit_depth=8, quantize=True,
                 compress_ratio=8, jit_compile=False, **kwargs):
        bit_depth = int(bit_depth)
        if not 2 <= bit_depth <= 8:
            raise ValueError(f'Q-SCI bit_depth must be 2..8 (the paper: {BIT_DEPTHS}); got '
                             f'{bit_depth} (qsci.bit_depth)')
        dtype = kwargs.get('dtype')
        factory = QuantLayerFactory(bit_depth, quantize, dtype=dtype)
        super().__init__(in_ch, units, group_num, color_ch, compress_ratio, factory=factory,
                         jit_compile=jit_compile, **kwargs)
        self.bit_depth, self.fake_quant = bit_depth, bool(quantize)
        self.arch['bit_depth'] = bit_depth
        name_quantizers(self)  # official module names in error messages
        if dtype is not None:  # weightless steps (LeakyReLU) would autocast to the global dtype
            for layer in self._flatten_layers(include_self=False, recursive=True):
                if layer.dtype_policy.name != self.dtype_policy.name:
                    layer.dtype_policy = self.dtype_policy

    # ------------------------------------------------------------------ layers
    def build_layers(self, factory):
        if factory.bit_depth == 8:
            return super().build_layers(factory)
        c, conv, kw = self.in_ch, factory.conv3d, factory.layer_kwargs

        def branch(name, cin, cout, k, stride=1, pad=0, role='fem', act=True):
            layer = conv(cin, cout, k, stride, pad, role=role, name='0' if act else name)
            return TorchSequential([layer, LeakyReLU()], **kw(name)) if act else layer

        self.fem_conv1_1 = branch('fem_conv1_1', 1, c, (3, 7, 7), 1, (1, 3, 3))
        self.fem_conv1_2 = branch('fem_conv1_2', 1, c, 1, role=BRANCH8)
        self.fem_conv2_1 = branch('fem_conv2_1', c, 2 * c, 3, 1, 1)
        self.fem_conv2_2 = branch('fem_conv2_2', c, 2 * c, 1, role=BRANCH8)
        self.fem_conv3_1 = branch('fem_conv3_1', 2 * c, 4 * c, 3, (1, 2, 2), 1)
        self.fem_conv3_2 = branch('fem_conv3_2', 8 * c, 4 * c, 1, role=BRANCH8)
        self.up_conv = conv(4 * c, 8 * c, 1, 1, 0, role='up', name='up_conv')
        self.vrm_conv1_1 = branch('vrm_conv1_1', 2 * c, 2 * c, 3, 1, 1, role='vrm')
        self.vrm_conv1_2 = branch('vrm_conv1_2', 2 * c, 2 * c, 1, role=BRANCH8)
        self.vrm_conv2_1 = branch('vrm_conv2_1', 2 * c, c, 1, role='vrm')
        self.vrm_conv2_2 = branch('vrm_conv2_2', 2 * c, c, 1, role=BRANCH8)
        self.vrm_conv3_1 = branch('vrm_conv3_1', c, self.color_ch, 3, 1, 1, role='vrm',
                                  act=False)
        self.vrm_conv3_2 = branch('vrm_conv3_2', c, self.color_ch, 1, role=BRANCH8, act=False)
        self.resdnet_list = [ResDNetBlock(4 * c, self.group_num, factory, **kw(f'resdnet_{i}'))
                             for i in range(self.units)]
        # EfficientSCI's forward calls self.fem / self.vrm: here they are the official
        # parallel-branch computations (plain methods: no weights, no state-dict prefix)
        self.fem, self.vrm = self.parallel_fem, self.parallel_vrm

    def parallel_fem(self, x):
        """Low-bit FEM: ``[N, B, H, W, 1]`` -> ``[N, B, H/2, W/2, 4c]``."""
        out = self.fem_conv1_1(x) + self.fem_conv1_2(x)
        out = self.fem_conv2_1(out) + self.fem_conv2_2(out)
        shape = tf.shape(out)
        n, d, h, w = shape[0], shape[1], shape[2], shape[3]
        down = pixel_unshuffle(tf.reshape(out, [n * d, h, w, out.shape[-1]]), 2)
        down = tf.reshape(down, [n, d, h // 2, w // 2, down.shape[-1]])
        return self.fem_conv3_1(out) + self.fem_conv3_2(down)

    def parallel_vrm(self, x):
        """Low-bit VRM: ``[N, B, H, W, 2c]`` -> ``[N, B, H, W, color_ch]``."""
        out = self.vrm_conv1_1(x) + self.vrm_conv1_2(x)
        out = self.vrm_conv2_1(out) + self.vrm_conv2_2(out)
        return self.vrm_conv3_1(out) + self.vrm_conv3_2(out)

    # ------------------------------------------------------------------ quantizers
    def quantizers(self):
        """Every fake quantizer (weight quantizers of the convs/linears and the ActQs)."""
        return quantizers_of(self)

    def uninitialized_quantizers(self):
        return uninitialized_quantizers(self)

    def calibrate(self, inputs):
        """The official LSQ initialisation: one eager training-mode forward on ``inputs``
        (``(meas_re, mask)``), no weight update; idempotent. Returns the number of quantizers
        initialised."""
        return calibrate_quantizers(self, inputs)

    def set_quantize(self, quantize):
        """Turn every quantizer on/off (off = the official "quantization off" network)."""
        self.fake_quant = bool(quantize)
        for layer in self.quantizers():
            layer.fake_quant = self.fake_quant

    def call(self, inputs, training=False):
        if self.fake_quant and not training:
            left = uninitialized_quantizers(self)
            if left:
                raise QuantizerNotInitializedError(
                    f'{len(left)} of the {len(self.quantizers())} fake quantizers of this '
                    f'{self.bit_depth}-bit Q-SCI were never initialised ({", ".join(left[:6])}'
                    f'{" ..." if len(left) > 6 else ""}): evaluate a calibrated model -- load a '
                    f'Q-SCI checkpoint (model.checkpoint, or an official one through the '
                    f'converter) or train it (the task calibrates on the first batch)')
        return super().call(inputs, training=training)

    def get_config(self):
        return dict(super().get_config(), bit_depth=self.bit_depth, quantize=self.fake_quant)


def qsci_kwargs(cfg):
    """Constructor arguments from ``cfg.qsci`` and ``sci.compression_ratio``."""
    q = cfg.qsci
    return dict(in_ch=q.in_ch, units=q.units, group_num=q.group_num, color_ch=q.color_ch,
                bit_depth=q.bit_depth, quantize=q.quantize,
                compress_ratio=int(cfg.sci.compression_ratio), jit_compile=q.jit_compile)


def build_qsci(cfg, **overrides):
    """Build Q-SCI from the config (:func:`qsci_kwargs`; ``overrides`` win)."""
    kwargs = qsci_kwargs(cfg)
    kwargs.update(overrides)
    return QSCI(name='QSCI', **kwargs)
