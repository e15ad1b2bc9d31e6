"""EfficientSCI blocks (Wang et al., "EfficientSCI: Densely Connected Network with Space-time
Factorization for Large-scale Video Snapshot Compressive Imaging", CVPR 2023; official code
ucaswangls/EfficientSCI, ``cacti/models/efficientsci.py``), channels-last (NDHWC).

Blocks and PyTorch names (attribute names = official module names, so
:func:`ascendcv.layers.torch_compat.torch_state_variables` yields the official state-dict keys):

* :class:`TimesAttention3D` (``tsab``): temporal self-attention over the frames of each pixel;
  ``qkv`` ``Linear(dim, 3 * dim/2, bias=False)``, ``proj`` ``Linear(dim/2, dim)``.
* :class:`CFormerBlock` (``cformer_list.<g>``): ``scb.{0,2}`` (spatial branch, two (1,3,3)
  convs), ``tsab``, ``ffn.{0,2}`` (3x3x3 conv, 1x1x1 conv).
* :class:`ResDNetBlock` (``resdnet_list.<u>``): ``cformer_list.<g>``, ``dense_conv.<g-1>.0``
  (1x1x1 dense group connections), ``last_conv``.
* :class:`TorchSequential`: ``nn.Sequential`` stand-in (children named ``0``, ``1``, ...;
  parameter-free steps such as LeakyReLU keep their index), used for ``fem``, ``vrm``, ``scb``,
  ``ffn`` and ``dense_conv.<i>``.

Every LeakyReLU has PyTorch's default slope 0.01 (:data:`NEGATIVE_SLOPE`). No normalisation.

Substitution hook (for quantized variants, e.g. Q-SCI in ``ascendvsr/models/qsci.py``)
------------------------------------------------------------------------------------------
No block creates a weight-bearing layer itself: every conv / linear / attention is made by a
:class:`LayerFactory` passed as ``factory=`` (default :data:`FLOAT_LAYERS`, plain
:class:`ascendcv.layers.conv3d.Conv3d` / :class:`ascendcv.layers.linear.Linear`). A quantized
model subclasses :class:`LayerFactory` and overrides

* ``conv3d(in_channels, out_channels, kernel_size, stride=1, padding=0, *, role, name)``
* ``linear(in_features, out_features, bias=True, *, role, name)``
* ``attention(dim, num_heads, *, name)`` -- returns a :class:`TimesAttention3D` (or subclass)
* ``leaky_relu()`` -- the parameter-free activation steps (in the factory's ``dtype``)

``role`` tells which official argument sets the layer's bit width: ``'fem'``, ``'up'``,
``'vrm'`` (the network's ``bit_depth``), ``'scb'``, ``'dense'``, ``'last'``, ``'qkv'``,
``'proj'`` (``wa_bits_w``), ``'ffn'`` (``ffn_bits_w``). ``name`` is the PyTorch child name
(``'0'``, ``'last_conv'`` ...). The returned layer must take/return NDHWC tensors (linear: any
``[..., in]``), and expose ``torch_weights()`` for its official keys (e.g. ``weight``, ``bias``,
``alpha``, ``act.alpha`` ...).

The attention's quantization points are two overridable methods of :class:`TimesAttention3D`:

* ``transform_qkv(q, k, v) -> (q, k, v)``: called on the split projections, official layout
  ``[B_, heads, N, dim/8]`` (``B_`` = batch x H x W pixels in ``(b h w)`` order, ``N`` frames,
  heads on axis 1) *before* ``q * scale``; Q-SCI puts ``moveq``/``movek`` and ``q/k/v_act``
  here. Default: identity.
* ``transform_attn(attn) -> attn``: called on the softmax probabilities ``[B_, heads, N, N]``
  before ``attn @ v``; Q-SCI puts ``attn_act`` here. Default: identity.

Layers are created in ``__init__`` in PyTorch's definition order, so a subclass's extra
sub-layers (e.g. ``moveq``) can simply be set as attributes in its own ``__init__``.

Shapes (``dim`` channels, NDHWC ``[N, D=frames, H, W, C]``): every block maps
``[N, D, H, W, dim] -> [N, D, H, W, dim]``.
"""
import keras
import tensorflow as tf

from ascendcv.layers.conv3d import Conv3d
from ascendcv.layers.linear import Linear
from ascendcv.layers.precision import ElementwiseStep, link_sequence
from ascendcv.layers.torch_compat import torch_state_variables

NEGATIVE_SLOPE = 0.01  # nn.LeakyReLU() default, every activation of EfficientSCI
NUM_HEADS = 4           # official CFormerBlock: TimesAttention3D(dim, num_heads=4)

__all__ = ['NEGATIVE_SLOPE', 'NUM_HEADS', 'LayerFactory', 'FLOAT_LAYERS', 'TorchSequential',
           'LeakyReLU', 'TimesAttention3D', 'CFormerBlock', 'ResDNetBlock', 'leaky_relu']


def leaky_relu(x):
    """``nn.LeakyReLU()`` (slope 0.01)."""
    return tf.nn.leaky_relu(x, alpha=NEGATIVE_SLOPE)


class LeakyReLU(ElementwiseStep, keras.layers.Layer):
    """``nn.LeakyReLU()`` as a parameter-free step of a :class:`TorchSequential`."""

    def call(self, x):
        return leaky_relu(x)


class LayerFactory:
    """Creates the weight-bearing sub-layers of the EfficientSCI blocks (float by default).

    Args:
        dtype: Keras dtype (policy) of every layer made (None = the global policy; e.g.
            ``'float64'`` for a double-precision run).
    """

    def __init__(self, dtype=None):
        self.dtype = dtype

    def _kw(self, name):
        kw = {'name': name}
        if self.dtype is not None:
            kw['dtype'] = self.dtype
        return kw

    def conv3d(self, in_channels, out_channels, kernel_size, stride=1, padding=0, *, role,
               name):
        """``nn.Conv3d(in, out, kernel_size, stride, padding)`` (bias), NDHWC."""
        del role  # every role is the same float conv
        return Conv3d(in_channels, out_channels, kernel_size, stride, padding, **self._kw(name))

    def linear(self, in_features, out_features, bias=True, *, role, name):
        """``nn.Linear(in, out, bias)``."""
        del role
        return Linear(in_features, out_features, bias=bias, **self._kw(name))

    def leaky_relu(self):
        """A parameter-free :class:`LeakyReLU` step (in this factory's dtype)."""
        return LeakyReLU(**({} if self.dtype is None else {'dtype': self.dtype}))

    def attention(self, dim, num_heads, *, name):
        """The temporal attention of a CFormer block (``tsab``)."""
        return TimesAttention3D(dim, num_heads, factory=self, **self._kw(name))

    def layer_kwargs(self, name):
        """Keyword arguments (name, dtype) for a composite block made with this factory."""
        return self._kw(name)


FLOAT_LAYERS = LayerFactory()


class TorchSequential(keras.layers.Layer):
    """``nn.Sequential(*steps)``: applies ``steps`` in order; weight-bearing steps are children
    named by their index (``'0'``, ``'2'`` ...), so their keys are ``<index>.weight`` as in
    PyTorch. Steps without weights (e.g. :class:`LeakyReLU`) keep their index."""

    def __init__(self, steps, **kwargs):
        super().__init__(**kwargs)
        self._steps = list(steps)
        self.built = True

    @property
    def steps(self):
        return list(self._steps)

    def __getitem__(self, index):
        return self._steps[index]

    def __len__(self):
        return len(self._steps)

    def torch_weights(self):
        out = {}
        for i, step in enumerate(self._steps):
            out.update(torch_state_variables(step, f'{i}.'))
        return out

    def link_reduced_chains(self):
        """Weight steps separated only by activations stay bfloat16 into each other
        (:func:`ascendcv.layers.precision.link_sequence`); the number of links."""
        return link_sequence(self._steps)

    def call(self, x):
        for step in self._steps:
            x = step(x)
        return x


class TimesAttention3D(keras.layers.Layer):
    """Official ``TimesAttention3D(dim, num_heads)``: multi-head self-attention over the ``N``
    frames of each pixel (tokens ``rearrange(x, 'b c d h w -> (b h w) d c')``).

    ``qkv = Linear(dim, 3 * dim/2, bias=False)`` read as ``(3, heads, dim/(2 heads))`` per token
    (feature ``s * dim/2 + h * dim/(2 heads) + e``, ``s`` in q/k/v); attention width ``dim/2``;
    ``proj = Linear(dim/2, dim)``. The scale is the official ``(dim // heads) ** -0.5``: from
    the *full* width ``dim``, not the head width ``dim / (2 heads)``. Softmax over keys.

    Input/output ``[N, D, H, W, dim]`` (NDHWC feature map; the token rearrangement is internal).
    Hooks :meth:`transform_qkv` and :meth:`transform_attn` (identity here) are the
    quantization points of Q-SCI (see the module docstring).
    """

    def __init__(self, dim, num_heads=NUM_HEADS, factory=None, **kwargs):
        super().__init__(**kwargs)
        dim, num_heads = int(dim), int(num_heads)
        if dim % (2 * num_heads):
            raise ValueError(f'TimesAttention3D needs dim divisible by 2 x num_heads = '
                             f'{2 * num_heads}; got dim={dim}')
        factory = factory or FLOAT_LAYERS
        self.dim, self.num_heads = dim, num_heads
        self.width = dim // 2                       # attention width (official C // 2)
        self.head_dim = self.width // num_heads     # real head width
        self.scale = float((dim // num_heads) ** -0.5)  # official: from dim, not head_dim
        self.qkv = factory.linear(dim, self.width * 3, bias=False, role='qkv', name='qkv')
        self.proj = factory.linear(self.width, dim, bias=True, role='proj', name='proj')
        self.built = True

    # ------------------------------------------------------------------ hooks
    def transform_qkv(self, q, k, v):
        """Hook on q, k, v ``[B_, heads, N, head_dim]`` before ``q * scale`` (identity)."""
        return q, k, v

    def transform_attn(self, attn):
        """Hook on the softmax probabilities ``[B_, heads, N, N]`` (identity)."""
        return attn

    # ------------------------------------------------------------------ forward
    def attend(self, x):
        """``(out [N, D, H, W, dim], attn [B_, heads, D, D])`` for ``x [N, D, H, W, dim]``."""
        shape = tf.shape(x)
        n, d, h, w = shape[0], shape[1], shape[2], shape[3]
        heads, hd = self.num_heads, self.head_dim
        qkv = self.qkv(x)                                     # [N, D, H, W, 3 * width]
        qkv = tf.reshape(qkv, [n, d, h, w, 3, heads, hd])
        qkv = tf.transpose(qkv, [4, 0, 2, 3, 5, 1, 6])        # [3, N, H, W, heads, D, hd]
        qkv = tf.reshape(qkv, [3, n * h * w, heads, d, hd])   # tokens in (b h w) order
        q, k, v = self.transform_qkv(qkv[0], qkv[1], qkv[2])
        # 3-D batched matmuls and a 2-D softmax: the fastest forms on the CPU (oneDNN)
        q, k, v = (tf.reshape(t, [-1, d, hd]) for t in (q, k, v))
        scores = tf.matmul(q * self.scale, k, transpose_b=True)          # [B_ heads, D, D]
        attn = tf.reshape(tf.nn.softmax(tf.reshape(scores, [-1, d]), axis=-1),
                          [n * h * w, heads, d, d])                     # softmax over keys
        attn = self.transform_attn(attn)
        out = tf.matmul(tf.reshape(attn, [-1, d, d]), v)                # [B_ heads, D, hd]
        out = tf.reshape(out, [n, h, w, heads, d, hd])
        out = tf.transpose(out, [0, 4, 1, 2, 3, 5])           # [N, D, H, W, heads, hd]
        out = tf.reshape(out, [n, d, h, w, self.width])
        return self.proj(out), attn

    def call(self, x):
        return self.attend(x)[0]

    def get_config(self):
        return dict(super().get_config(), dim=self.dim, num_heads=self.num_heads)


class CFormerBlock(keras.layers.Layer):
    """Official ``CFormerBlock(dim)``: ``ffn_in = scb(x) + tsab(x) + x``,
    ``out = ffn(ffn_in) + ffn_in``.

    * ``scb``: ``Conv3d(dim, dim, (1,3,3), pad (0,1,1))`` - LeakyReLU - same conv (spatial);
    * ``tsab``: :class:`TimesAttention3D` ``(dim, heads=4)`` (temporal);
    * ``ffn``: ``Conv3d(dim, dim, 3, pad 1)`` - LeakyReLU - ``Conv3d(dim, dim, 1)``.

    Input/output ``[N, D, H, W, dim]``.
    """

    def __init__(self, dim, factory=None, **kwargs):
        super().__init__(**kwargs)
        factory = factory or FLOAT_LAYERS
        self.dim = dim = int(dim)
        conv = factory.conv3d
        self.scb = TorchSequential([
            conv(dim, dim, (1, 3, 3), 1, (0, 1, 1), role='scb', name='0'), factory.leaky_relu(),
            conv(dim, dim, (1, 3, 3), 1, (0, 1, 1), role='scb', name='2')],
            **factory.layer_kwargs('scb'))
        self.tsab = factory.attention(dim, NUM_HEADS, name='tsab')
        self.ffn = TorchSequential([
            conv(dim, dim, 3, 1, 1, role='ffn', name='0'), factory.leaky_relu(),
            conv(dim, dim, 1, 1, 0, role='ffn', name='2')], **factory.layer_kwargs('ffn'))
        self.built = True

    def branches(self, x):
        """``dict(scb_out, tsab_out, attn, out)`` (the intermediates of the official forward)."""
        scb_out = self.scb(x)
        tsab_out, attn = self.tsab.attend(x)
        ffn_in = scb_out + tsab_out + x
        return dict(scb_out=scb_out, tsab_out=tsab_out, attn=attn,
                    out=self.ffn(ffn_in) + ffn_in)

    def call(self, x):
        ffn_in = self.scb(x) + self.tsab(x) + x
        return self.ffn(ffn_in) + ffn_in

    def get_config(self):
        return dict(super().get_config(), dim=self.dim)


class ResDNetBlock(keras.layers.Layer):
    """Official ``ResDNetBlock(dim, group_num)``: residual dense network unit of ``G`` CFormer
    blocks of width ``gd = dim / G``.

    ``x_0 .. x_{G-1} = chunk(x, G)`` (channel groups, in order); ``o_0 = cformer_0(x_0)``;
    ``o_i = cformer_i(dense_conv_{i-1}(cat(o_0 .. o_{i-1}, x_i)))`` with ``dense_conv_{i-1}`` =
    ``Conv3d(gd (i+1), gd, 1)`` - LeakyReLU; output ``x + last_conv(cat(o_0 .. o_{G-1}))``
    (``last_conv = Conv3d(dim, dim, 1)``).

    Input/output ``[N, D, H, W, dim]``.
    """

    def __init__(self, dim, group_num, factory=None, **kwargs):
        super().__init__(**kwargs)
        factory = factory or FLOAT_LAYERS
        dim, group_num = int(dim), int(group_num)
        if group_num < 1 or dim % group_num:
            raise ValueError(f'ResDNet group_num must divide the width {dim}; got {group_num}')
        self.dim, self.group_num = dim, group_num
        gd = self.group_dim = dim // group_num
        self.cformer_list = [CFormerBlock(gd, factory, **factory.layer_kwargs(f'cformer_{i}'))
                             for i in range(group_num)]
        self.dense_conv = [TorchSequential(
            [factory.conv3d(gd * (i + 1), gd, 1, 1, 0, role='dense', name='0'),
             factory.leaky_relu()],
            **factory.layer_kwargs(f'dense_conv_{i - 1}')) for i in range(1, group_num)]
        self.last_conv = factory.conv3d(dim, dim, 1, 1, 0, role='last', name='last_conv')
        self.built = True

    def run(self, x, record=None):
        """The forward pass; ``record`` (a dict) receives per group ``cf{g}_in`` and the
        :meth:`CFormerBlock.branches` entries as ``cf{g}_<name>``, and ``last_conv_out``."""
        groups = tf.split(x, self.group_num, axis=-1)
        outs = []
        for i, block in enumerate(self.cformer_list):
            cf_in = groups[0] if i == 0 else self.dense_conv[i - 1](
                tf.concat(outs + [groups[i]], axis=-1))
            if record is None:
                outs.append(block(cf_in))
            else:
                parts = block.branches(cf_in)
                record[f'cf{i}_in'] = cf_in
                record.update({f'cf{i}_{k}': v for k, v in parts.items()})
                outs.append(parts['out'])
        out = self.last_conv(tf.concat(outs, axis=-1) if len(outs) > 1 else outs[0])
        if record is not None:
            record['last_conv_out'] = out
        return x + out

    def call(self, x):
        return self.run(x)

    def get_config(self):
        return dict(super().get_config(), dim=self.dim, group_num=self.group_num)
