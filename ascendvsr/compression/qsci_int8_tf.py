"""Q-SCI on integer kernels inside TensorFlow (issue #13 item 7, the TF runtime).

:func:`build_int8_tf` makes the twin of a calibrated :class:`~ascendvsr.models.qsci.QSCI` whose
fake-quant convolutions and linears run on oneDNN's int8 kernels
(:class:`ascendcv.layers.int8_conv.IntegerConv`): same module tree, same weights, every
quantizer exact, no extra rounding.

* The input codes are the fake-quant model's own (``ascendcv.layers.fake_quant.
  activation_codes``: the same step size, zero point and rounding), computed with the padding in
  one XLA pass. Padding is with the code of 0, as the model pads its quantized input with zeros.
* The kernel codes are the model's (``weight_codes``), int8 (the 2..7-bit grids fit too).
* 3-D kernels are sums of 2-D integer convolutions over their temporal taps (exact in int32);
  linears are 1x1 convolutions of the tokens.
* The accumulator turns into float with the bias in one XLA pass (the layer's output is what
  the fake-quant layer computes, up to float32 summation order: ``x_q w_q`` summed in int32 and
  scaled once instead of summed in float).

Float stays (the layer runs its fake quantization, as the model): a quantizer whose channels
differ (after QAT; an integer conv takes one input step size), a zero point outside the code
range (0 would have no code to pad with), and the attention's per-pixel ``8 x 8`` matmuls and
softmax (memory bound). What is left float is reported by :func:`int8_tf_report`.

The codes' zero point is the model's ``grad_scale(round(zp))``, which may differ from the
integer ``round(zp)`` used for the padding and the epilogue by one ulp; rounding ties (``x / a +
z`` exactly half-way) are rounded as the model does. Measured against the fake-quant model:
``tests/runner/test_qsci_int8_tf.py`` (relative L2 of the layer outputs ~1e-7; end to end a
float32 model of many quantizers is sensitive to summation order, see ``qsci_int8``).
"""
import numpy as np
import tensorflow as tf

from ascendcv.layers.fake_quant import Conv3dQ, LinearQ, activation_codes, quant_range, \
    weight_codes
from ascendcv.layers.int8_conv import IntegerConv, integer_kernels_available
from ascendvsr.layers.qsci_blocks import QuantLayerFactory
from ascendvsr.models.qsci import QSCI

__all__ = ['IntegerConv3dQ', 'IntegerLinearQ', 'QSCIInt8TF', 'build_int8_tf', 'int8_tf_report']


def _codes_fn(nbits, pad):
    """XLA: ``x -> (uint8 codes padded with the code of 0, a, zu)`` for a per-tensor
    quantizer (``alpha``/``zero_point`` of which element 0 stands for every channel)."""
    qn_s, qn_u = quant_range(nbits, True)[0], quant_range(nbits, False)[0]

    @tf.function(jit_compile=True, autograph=False)
    def codes(x, alpha, zero_point, signed):
        q, _, a = activation_codes(x, alpha[:1], zero_point[:1], signed[0] > 0.5, nbits)
        qn = tf.where(signed[0] > 0.5, tf.constant(qn_s, x.dtype), tf.constant(qn_u, x.dtype))
        zu = tf.round(zero_point[0]) - qn
        u = tf.cast(q - qn, tf.uint8)
        if pad:
            u = tf.pad(u, pad, constant_values=tf.cast(zu, tf.uint8))
        return u, tf.reshape(a, []), zu
    return codes


class _Integer:
    """What the integer layers add to the fake-quant ones: :meth:`prepare` (after the weights
    are loaded) builds the :class:`IntegerConv` or records why the layer stays float."""

    def __init__(self, *args, **kwargs):  # cooperative: the fake-quant layer is next in the MRO
        super().__init__(*args, **kwargs)
        self.integer, self.float_reason, self._codes = None, None, None

    def integer_kernel(self):
        """``(kernel codes, step)`` in the IntegerConv kernel layout."""
        k, a = weight_codes(self.kernel, self.alpha, self.nbits)
        return k.numpy(), a.numpy()

    def prepare(self):
        act = self.act
        self.integer = None
        if not self.fake_quant:
            self.float_reason = 'quantization off'
            return
        alpha, zp = act.alpha.numpy(), np.round(act.zero_point.numpy())
        qn, qp = quant_range(act.nbits, bool(act.signed.numpy()[0] > 0.5))
        if not (np.all(alpha == alpha[0]) and np.all(zp == zp[0])):
            self.float_reason = ('per-channel activation quantizer (channels differ): an '
                                 'integer conv takes one input step size')
        elif not qn <= zp[0] <= qp:
            self.float_reason = f'zero point {zp[0]:g} outside [{qn}, {qp}]: 0 has no code'
        elif self.dtype != 'float32':
            self.float_reason = f'{self.dtype} model (the integer path is float32)'
        else:
            k, step = self.integer_kernel()
            bias = None if self.bias is None else self.bias.numpy()
            self.integer = IntegerConv(k, step, bias, *self.integer_geometry())
            self._codes = _codes_fn(act.nbits, self.integer_padding())
            self.float_reason = None

    def integer_input(self, x):
        act = self.act
        return self._codes(x, *(tf.convert_to_tensor(v) for v in
                                (act.alpha, act.zero_point, act.signed)))


class IntegerConv3dQ(_Integer, Conv3dQ):
    """:class:`Conv3dQ` on integer kernels after :meth:`prepare` (same weights and names)."""

    def integer_geometry(self):
        return self.stride, self.dilation

    def integer_padding(self):
        return [[0, 0]] + [[p, p] for p in self.padding] + [[0, 0]] if any(self.padding) \
            else None

    def call(self, x, training=None):
        if training or self.integer is None:
            return super().call(x, training=training)
        return self.integer(*self.integer_input(x))


class IntegerLinearQ(_Integer, LinearQ):
    """:class:`LinearQ` on integer kernels after :meth:`prepare`: a 1x1 convolution of the
    tokens ``[..., in]`` -> ``[..., out]``."""

    def integer_kernel(self):
        k, step = super().integer_kernel()
        return k[None, None], step

    def integer_geometry(self):
        return (1, 1), (1, 1)

    def integer_padding(self):
        return None

    def call(self, x, training=None):
        if training or self.integer is None:
            return super().call(x, training=training)
        shape = tf.shape(x)
        codes, a, zu = self.integer_input(tf.reshape(x, [-1, 1, 1, self.in_features]))
        y = self.integer(codes, a, zu)
        return tf.reshape(y, tf.concat([shape[:-1], [self.out_features]], 0))


class Int8TFFactory(QuantLayerFactory):
    """:class:`QuantLayerFactory` making :class:`IntegerConv3dQ` / :class:`IntegerLinearQ`."""

    conv3d_class = IntegerConv3dQ
    linear_class = IntegerLinearQ


class QSCIInt8TF(QSCI):
    """:class:`QSCI` built with :class:`Int8TFFactory` (same module tree and weights)."""

    def build_layers(self, factory):
        return super().build_layers(Int8TFFactory.like(factory))

    def int8_summary(self):
        """One line: how many layers run integer kernels, which stay float."""
        rep = int8_tf_report(self)
        left = rep['float_layers']
        return (f'{rep["integer"]} convs/linears on int8 kernels'
                + (f'; float: {", ".join(sorted(left))}' if left else ''))

    def integer_layers(self):
        """``{PyTorch module name: layer}`` of the integer-capable convs / linears."""
        return {layer.torch_name: layer for layer in self._flatten_layers(include_self=False)
                if isinstance(layer, _Integer)}


def build_int8_tf(model):
    """The :class:`QSCIInt8TF` twin of a calibrated :class:`QSCI` ``model`` (weights and
    quantizer state copied by PyTorch name, integer kernels prepared). Raises when this TF has
    no oneDNN int8 convolution."""
    from ascendvsr.compression.qsci_int8 import copy_into_twin
    ok, why = integer_kernels_available()
    if not ok:
        raise RuntimeError(f'the TF int8 path of Q-SCI is unavailable: {why}. The onnxruntime '
                           f'export (ascendvsr.compression.qsci_int8) runs without it.')
    twin = copy_into_twin(model, QSCIInt8TF)
    for layer in twin.integer_layers().values():
        layer.prepare()
    return twin


def int8_tf_report(twin):
    """``{'integer': n, 'float_layers': {name: why}}`` of a :func:`build_int8_tf` twin."""
    layers = twin.integer_layers()
    return dict(integer=sum(l.integer is not None for l in layers.values()),
                float_layers={n: l.float_reason for n, l in layers.items()
                              if l.integer is None})
