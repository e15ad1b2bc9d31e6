"""Q-SCI blocks (Cao et al., "A Simple Low-bit Quantization Framework for Video Snapshot
Compressive Imaging", ECCV 2024; official code mcao92/QuantizedSCI,
``cacti/models/quantized_resdnet.py``): the EfficientSCI blocks of
:mod:`ascendvsr.layers.efficientsci_blocks` with LSQ fake-quant layers
(:mod:`ascendcv.layers.fake_quant`), substituted through their :class:`LayerFactory` hook.

* :class:`QuantLayerFactory`: every conv is a ``Conv3dQ``, every linear a ``LinearQ`` of the
  network's ``bit_depth`` (official ``wa_bits_w = att_bits_w = ffn_bits_w = bit_depth``); the
  parallel 1x1 branches of the low-bit FEM/VRM (role ``'branch8'``) are 8-bit.
* :class:`QuantTimesAttention3D` (official ``quantized_TimesAttention3D``): the query/key shift
  ``moveq`` / ``movek`` (:class:`LearnableBias`, one learned offset per head) then ``q_act``,
  ``k_act``, ``v_act`` (per head, ``bit_depth``), the softmax probabilities quantized by
  ``attn_act`` (per head, ``att_bits_w = bit_depth``)::

      q = q_act(q + moveq);  k = k_act(k + movek);  v = v_act(v)
      attn = attn_act(softmax(q * scale @ k^T));  out = proj(attn @ v)

  ``qkv`` and ``proj`` are ``LinearQ`` (``proj`` quantizes its own input). Tensors
  ``[B_, heads, N, .]`` (official layout; per-head quantizers on axis 1).

PyTorch names as the official modules: ``tsab.moveq.bias`` (1, heads, 1, 1),
``tsab.q_act.alpha`` (heads,), ``scb.0.act.zero_point`` ...
"""
import keras

from ascendcv.layers.fake_quant import ActQ, Conv3dQ, LinearQ
from ascendcv.layers.torch_compat import identity
from ascendvsr.layers.efficientsci_blocks import LayerFactory, TimesAttention3D

__all__ = ['BRANCH8', 'LearnableBias', 'QuantTimesAttention3D', 'QuantLayerFactory']

BRANCH8 = 'branch8'  # role of the 8-bit parallel 1x1 branches of the low-bit FEM / VRM


class LearnableBias(keras.layers.Layer):
    """Official ``LearnableBias(heads)``: ``x + bias`` with ``bias`` (1, heads, 1, 1) (zeros at
    construction) on ``[B_, heads, N, d]`` tensors."""

    def __init__(self, channels, **kwargs):
        super().__init__(**kwargs)
        self.channels = int(channels)
        self.bias = self.add_weight(name='bias', shape=(1, self.channels, 1, 1),
                                    initializer='zeros')
        self.built = True

    def torch_weights(self):
        return {'bias': (self.bias, identity)}

    def call(self, x):
        return x + self.bias

    def get_config(self):
        return dict(super().get_config(), channels=self.channels)


class QuantTimesAttention3D(TimesAttention3D):
    """Official ``quantized_TimesAttention3D(dim, num_heads, wa_bits_w, att_bits_w)`` (see the
    module docstring). Input/output ``[N, D, H, W, dim]`` as :class:`TimesAttention3D`.

    Args:
        dim, num_heads: as :class:`TimesAttention3D`.
        factory (QuantLayerFactory): makes ``qkv`` / ``proj`` (``LinearQ``).
        wa_bits (int): bits of ``qkv``, ``proj`` and ``q/k/v_act``.
        att_bits (int): bits of ``attn_act``.
        quantize (bool): False = every quantizer off (``moveq``/``movek`` kept).
    """

    def __init__(self, dim, num_heads, factory, wa_bits=8, att_bits=8, quantize=True, **kwargs):
        super().__init__(dim, num_heads, factory=factory, **kwargs)
        heads, kw = self.num_heads, factory.layer_kwargs
        self.wa_bits, self.att_bits = int(wa_bits), int(att_bits)
        self.moveq = LearnableBias(heads, **kw('moveq'))
        self.movek = LearnableBias(heads, **kw('movek'))
        self.q_act = ActQ(heads, wa_bits, axis=1, quantize=quantize, **kw('q_act'))
        self.k_act = ActQ(heads, wa_bits, axis=1, quantize=quantize, **kw('k_act'))
        self.v_act = ActQ(heads, wa_bits, axis=1, quantize=quantize, **kw('v_act'))
        self.attn_act = ActQ(heads, att_bits, axis=1, quantize=quantize, **kw('attn_act'))

    def transform_qkv(self, q, k, v):
        return self.q_act(self.moveq(q)), self.k_act(self.movek(k)), self.v_act(v)

    def transform_attn(self, attn):
        return self.attn_act(attn)

    def get_config(self):
        return dict(super().get_config(), wa_bits=self.wa_bits, att_bits=self.att_bits)


class QuantLayerFactory(LayerFactory):
    """The :class:`LayerFactory` of Q-SCI: fake-quant convs / linears / attention.

    Args:
        bit_depth (int): bits of every layer (official ``quantized_sci(bit_depth)``), except
            role ``'branch8'`` (8 bits).
        quantize (bool): False = the official "quantization off" path (``alpha = None``).
        dtype: Keras dtype of every layer (e.g. ``'float64'``).

    The layer classes are the class attributes ``conv3d_class``, ``linear_class`` and
    ``attention_class`` (same constructor arguments), so a twin with other layer classes of the
    same weights (the int8 exports) is a subclass naming its classes.
    """

    conv3d_class = Conv3dQ
    linear_class = LinearQ
    attention_class = QuantTimesAttention3D

    def __init__(self, bit_depth=8, quantize=True, dtype=None):
        super().__init__(dtype)
        self.bit_depth, self.quantize = int(bit_depth), bool(quantize)

    def bits(self, role):
        return 8 if role == BRANCH8 else self.bit_depth

    def conv3d(self, in_channels, out_channels, kernel_size, stride=1, padding=0, *, role,
               name):
        return self.conv3d_class(in_channels, out_channels, kernel_size, stride, padding,
                                 nbits=self.bits(role), quantize=self.quantize,
                                 **self._kw(name))

    def linear(self, in_features, out_features, bias=True, *, role, name):
        return self.linear_class(in_features, out_features, bias=bias, nbits=self.bits(role),
                                 quantize=self.quantize, **self._kw(name))

    def attention(self, dim, num_heads, *, name):
        return self.attention_class(dim, num_heads, self, wa_bits=self.bit_depth,
                                    att_bits=self.bit_depth, quantize=self.quantize,
                                    **self._kw(name))

    @classmethod
    def like(cls, factory):
        """A ``cls`` factory with ``factory``'s bit depth, quantize flag and dtype."""
        return cls(factory.bit_depth, factory.quantize, dtype=factory.dtype)
