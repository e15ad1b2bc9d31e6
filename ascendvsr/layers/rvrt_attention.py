"""RVRT's attention packs, channels-last: the guided deformable attention pack of the official RVRT
(``models/network_rvrt.py`` ``GuidedDeformAttnPack``) and RVRT Light's plain local attention pack
(mindediting ``rvrt_light.py`` ``AttnPack``).

Both project ``q`` (C -> P = 2C), ``k`` and ``v`` (C -> P each, ``kv = [k | v]``), attend each query
frame of the current clip over the ``clip`` frames of the previous clip
(:mod:`ascendcv.layers.deform_attn`), project back (``proj``, P -> C) and add an MLP residual:
``out = proj(attn); out = out + mlp(out)`` (``mlp``: C -> 2C -> C, no norm). They differ only
in where each of the ``clip * K`` keys is sampled:

* :class:`GuidedDeformAttnPack`: at offsets = flow guidance + a learned residual,
  ``offset = max_residue_magnitude * tanh(conv_offset([q, warped1, warped2, flow1, flow2]))
  + flow (as (dy, dx), repeated over groups and taps)``, bilinearly, ``G`` deformable groups
  over the ``2P`` kv channels.
* :class:`LocalAttnPack`: on the zero-padded ``kernel x kernel`` window (zero offsets).

Weight names are the official state-dict keys (``proj_q.1.*``: the Linear is item 1 of an
``nn.Sequential(Rearrange, Linear, Rearrange)``; ``conv_offset.{0,2,...,10}.*``; ``mlp.1.fc1.*``),
which mindediting's MindSpore parameter names share.
"""
import keras
import tensorflow as tf

from ascendcv.layers.conv3d import Conv3d
from ascendcv.layers.deform_attn import check_attn_args, deform_attn, local_attn
from ascendcv.layers.linear import Linear
from ascendcv.layers.mlp import Mlp
from ascendcv.layers.precision import link_sequence
from ascendcv.layers.torch_compat import ConfigKeysLayer

OFFSET_FEATURES = 64  # conv_offset width (fixed in the official code)
LEAKY_SLOPE = 0.1


def _window(attention_window):
    window = (attention_window,) * 2 if isinstance(attention_window, int) else \
        tuple(int(v) for v in attention_window)
    if len(window) != 2 or min(window) < 1:
        raise ValueError(f'attention_window must be (kh, kw) with positive sizes; got '
                         f'{attention_window}')
    return window


def _check_clip(tensor, clip_size, what):
    """Static check: ``tensor`` is ``[n, clip_size, H, W, C]``."""
    if tensor.shape.rank != 5:
        raise ValueError(f'{what} must be [n, t, H, W, C]; got shape {tensor.shape}')
    if tensor.shape[1] is not None and tensor.shape[1] != clip_size:
        raise ValueError(f'{what} has {tensor.shape[1]} frames; the attention pack attends over '
                         f'clips of clip_size={clip_size} frames')


class _AttnPackBase(ConfigKeysLayer):
    """Projections and MLP shared by both packs (``proj_q``, ``proj_k``, ``proj_v``, ``proj``,
    ``mlp``), each stored as ``{'1': layer}`` to give the official ``<name>.1.*`` keys. The
    subclasses create ``proj`` and ``mlp`` so the key order is the source's."""

    def __init__(self, in_channels, out_channels, attention_window=(3, 3), attention_heads=12,
                 clip_size=2, approximate_gelu=False, jit_compile=False, deformable_groups=None,
                 **kwargs):
        super().__init__(**kwargs)
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.attention_window = _window(attention_window)
        self.attention_heads, self.clip_size = int(attention_heads), int(clip_size)
        self.approximate_gelu, self.jit_compile = bool(approximate_gelu), bool(jit_compile)
        self.proj_channels = 2 * self.in_channels
        check_attn_args(self.proj_channels, self.attention_heads, deformable_groups)
        c, p = self.in_channels, self.proj_channels
        self.proj_q = {'1': Linear(c, p, name='proj_q')}
        self.proj_k = {'1': Linear(c, p, name='proj_k')}
        self.proj_v = {'1': Linear(c, p, name='proj_v')}

    def _proj(self):
        return {'1': Linear(self.proj_channels, self.in_channels, name='proj')}

    def _mlp(self):
        c = self.in_channels
        return {'1': Mlp(c, 2 * c, c, approximate_gelu=self.approximate_gelu, name='mlp')}

    def _project(self, q, k, v):
        """``q [n, t, H, W, C]`` -> ``[n*t, 1, H, W, P]``; ``kv = [proj_k(k) | proj_v(v)]``."""
        for name, x in (('q', q), ('k', k), ('v', v)):
            _check_clip(x, self.clip_size, name)
        q = self.proj_q['1'](q)
        shape = tf.shape(q)
        q = tf.reshape(q, [-1, 1, shape[2], shape[3], self.proj_channels])
        kv = tf.concat([self.proj_k['1'](k), self.proj_v['1'](v)], axis=-1)
        return q, kv

    def _output(self, attn, like):
        """Attention result ``[n*t, 1, H, W, P]`` -> ``v = proj(attn); v + mlp(v)`` ``[n, t, H, W, C]``."""
        v = self.proj['1'](tf.reshape(attn, tf.concat([tf.shape(like)[:4], [self.proj_channels]], 0)))
        return v + self.mlp['1'](v)


class GuidedDeformAttnPack(_AttnPackBase):
    """RVRT's guided deformable attention pack (official ``GuidedDeformAttnPack``), NDHWC.

    Args:
        in_channels (int): feature channels ``C`` (projections use ``P = 2C``).
        out_channels (int): kept for the official signature (unused there too: the output has
            ``in_channels``).
        attention_window ((kh, kw)): window ``K = kh * kw`` per frame; padding ``kh // 2``.
        attention_heads (int): ``A``, dividing ``P``.
        deformable_groups (int): ``G``, dividing ``2P`` (groups may straddle heads and the k/v
            boundary, as officially).
        clip_size (int): 2 (the official forward takes two warped features and two flows).
        max_residue_magnitude (float): bound of the learned residual offsets (``10 * tanh``).
        approximate_gelu (bool): tanh GELU in the MLP (MindSpore weights); default exact.
        jit_compile (bool): XLA for the op (see :func:`ascendcv.layers.deform_attn.deform_attn`:
            faster, and the sampled keys/values are never stored); export code keeps it False.
        official_key_grad (bool): train with the official CUDA backward's key gradient (scaled by
            an extra ``D**-0.5``); default False = exact gradient. The forward is the same.
        recompute_grad (bool): recompute the op in the backward pass instead of keeping its
            sampled tensors (training memory; see ``deform_attn``).

    ``pack(q, k, v, v_prop_warped, flows, return_updateflow)``:
        q: ``[n, 2, H, W, C]`` current clip (previous stage); k: ``[n, 2, H, W, C]`` previous clip
        (previous stage); v: ``[n, 2, H, W, C]`` hidden state (previous clip of this module);
        v_prop_warped: 2 tensors ``[n, 2, H, W, C]`` (hidden state warped by each flow);
        flows: 2 tensors ``[n, 2, H, W, 2]`` (dx, dy), guiding offset block 0 and 1.
    Returns ``[n, 2, H, W, C]``, and with ``return_updateflow`` also the two updated flows
    ``[n, 2, H, W, 2]`` (dx, dy): the mean over groups and taps of flow + residual.

    Weights: ``conv_offset.{0,2,4,6,8,10}`` (Conv3d; the last one zero at init, as officially),
    ``proj_q.1``, ``proj_k.1``, ``proj_v.1``, ``proj.1`` (Linear), ``mlp.1.fc1``, ``mlp.1.fc2``.
    """

    config_keys = ('in_channels', 'out_channels', 'attention_window', 'attention_heads',
                   'deformable_groups', 'clip_size', 'max_residue_magnitude', 'approximate_gelu',
                   'jit_compile', 'official_key_grad', 'recompute_grad')

    def __init__(self, in_channels, out_channels, attention_window=(3, 3), attention_heads=12,
                 deformable_groups=12, clip_size=2, max_residue_magnitude=10,
                 approximate_gelu=False, jit_compile=False, official_key_grad=False,
                 recompute_grad=False, **kwargs):
        if int(clip_size) != 2:
            raise ValueError(f'GuidedDeformAttnPack needs clip_size=2 (the official forward '
                             f'splits the offsets into 2 flow-guided blocks); got {clip_size}')
        super().__init__(in_channels, out_channels, attention_window, attention_heads, clip_size,
                         approximate_gelu, jit_compile, int(deformable_groups), **kwargs)
        self.deformable_groups = int(deformable_groups)
        self.max_residue_magnitude = float(max_residue_magnitude)
        self.official_key_grad, self.recompute_grad = bool(official_key_grad), bool(recompute_grad)
        self.mlp = self._mlp()  # official state-dict order: proj_q/k/v, mlp, conv_offset, proj
        kh, kw = self.attention_window
        c, f, clip = self.in_channels, OFFSET_FEATURES, self.clip_size
        self.offset_channels = clip * self.deformable_groups * kh * kw * 2
        convs = [Conv3d(c * (1 + clip) + clip * 2, f, 1, name='conv_offset_0')]
        convs += [Conv3d(f, f, (1, 3, 3), padding=(0, 1, 1), name=f'conv_offset_{2 * i}')
                  for i in range(1, 5)]
        convs.append(Conv3d(f, self.offset_channels, 1, name='conv_offset_10'))
        convs[-1].kernel.assign(tf.zeros_like(convs[-1].kernel))  # official init_offset()
        convs[-1].bias.assign(tf.zeros_like(convs[-1].bias))
        self.conv_offset = []  # nn.Sequential indices: convs at 0, 2, .., 10, LeakyReLU between
        for i, conv in enumerate(convs):
            self.conv_offset.append(conv)
            if i < len(convs) - 1:
                self.conv_offset.append(keras.layers.LeakyReLU(negative_slope=LEAKY_SLOPE))
        self.proj = self._proj()
        self.built = True

    def __call__(self, q, k, v, v_prop_warped, flows, return_updateflow=False, **kwargs):
        # the official call passes return_updateflow positionally; Keras wants it as a keyword
        return super().__call__(q, k, v, v_prop_warped, flows,
                                return_updateflow=return_updateflow, **kwargs)

    def link_reduced_chains(self):
        """The offset network's conv - LeakyReLU - conv steps may stay bfloat16 (the offsets
        themselves, after the last conv, stay float32)."""
        return link_sequence(self.conv_offset)

    def offsets(self, q, v_prop_warped, flows):
        """Residual + guidance: two ``[n, 2, H, W, G*K*2]`` blocks ``[g][tap][dy, dx]``."""
        x = tf.concat([q, *v_prop_warped, *flows], axis=-1)
        for layer in self.conv_offset:
            x = layer(x)
        o = self.max_residue_magnitude * tf.tanh(x)
        half = self.offset_channels // 2
        repeats = half // 2
        # official flows[i].flip(2).repeat(1, 1, G*K, 1, 1): (dy, dx) tiled over groups and taps
        return [o[..., i * half:(i + 1) * half] + tf.tile(flow[..., ::-1], [1, 1, 1, 1, repeats])
                for i, flow in enumerate(flows)]

    def call(self, q, k, v, v_prop_warped, flows, return_updateflow=False):
        if len(v_prop_warped) != 2 or len(flows) != 2:
            raise ValueError(f'GuidedDeformAttnPack takes 2 warped features and 2 flows; got '
                             f'{len(v_prop_warped)} and {len(flows)}')
        for name, x in (('q', q), ('k', k), ('v', v), ('v_prop_warped[0]', v_prop_warped[0]),
                        ('v_prop_warped[1]', v_prop_warped[1])):
            _check_clip(x, self.clip_size, name)
            if x.shape[-1] is not None and x.shape[-1] != self.in_channels:
                raise ValueError(f'{name} must have {self.in_channels} channels; got {x.shape}')
        for i, flow in enumerate(flows):
            _check_clip(flow, self.clip_size, f'flows[{i}]')
            if flow.shape[-1] != 2:
                raise ValueError(f'flows[{i}] must have 2 channels (dx, dy); got {flow.shape}')
        offset1, offset2 = self.offsets(q, v_prop_warped, flows)
        offset = tf.concat([offset1, offset2], axis=-1)
        shape = tf.shape(offset)
        offset = tf.reshape(offset, [-1, shape[2], shape[3], self.offset_channels])
        qp, kv = self._project(q, k, v)
        kh, kw = self.attention_window
        attn = deform_attn(qp, kv, offset, kh, kw, 1, kh // 2, 1, self.attention_heads,
                           self.deformable_groups, self.clip_size, jit_compile=self.jit_compile,
                           official_key_grad=self.official_key_grad,
                           recompute_grad=self.recompute_grad)
        out = self._output(attn, q)
        if not return_updateflow:
            return out
        flows_new = []
        for o in (offset1, offset2):
            s = tf.shape(o)
            mean = tf.reduce_mean(tf.reshape(o, [s[0], s[1], s[2], s[3], -1, 2]), axis=4)
            flows_new.append(mean[..., ::-1])  # back to (dx, dy)
        return out, flows_new


class LocalAttnPack(_AttnPackBase):
    """RVRT Light's attention pack (mindediting ``AttnPack``): :class:`GuidedDeformAttnPack`
    without offsets, flows or ``conv_offset`` -- each query pixel attends over the zero-padded
    ``kh x kw`` window of every frame of the previous clip (one softmax over ``clip * K`` keys).

    Args:
        in_channels, out_channels, attention_window, attention_heads, clip_size: as
            :class:`GuidedDeformAttnPack` (any ``clip_size``; mindediting's default 1, RVRT Light 2).
        approximate_gelu (bool): tanh GELU in the MLP, as MindSpore ran mindediting's weights
            (``nn.GELU()`` default); default False = exact erf GELU.
        jit_compile (bool): XLA for the attention.

    ``pack(q, k, v)``: q (current clip), k (previous clip, previous stage), v (hidden state), each
    ``[n, clip, H, W, C]`` -> ``[n, clip, H, W, C]``. The pack has no LayerNorm (no epsilon).
    Weights (mindediting = official names): ``proj_q.1``, ``proj_k.1``, ``proj_v.1``, ``proj.1``,
    ``mlp.1.fc1``, ``mlp.1.fc2``.
    """

    config_keys = ('in_channels', 'out_channels', 'attention_window', 'attention_heads',
                   'clip_size', 'approximate_gelu', 'jit_compile')

    def __init__(self, in_channels, out_channels, attention_window=(3, 3), attention_heads=12,
                 clip_size=2, approximate_gelu=False, jit_compile=False, **kwargs):
        super().__init__(in_channels, out_channels, attention_window, attention_heads, clip_size,
                         approximate_gelu, jit_compile, **kwargs)
        self.proj, self.mlp = self._proj(), self._mlp()  # mindediting's parameter order
        self.built = True

    def call(self, q, k, v):
        qp, kv = self._project(q, k, v)
        kh, kw = self.attention_window
        attn = local_attn(qp, kv, kh, kw, self.attention_heads, self.clip_size,
                          jit_compile=self.jit_compile)
        return self._output(attn, q)
