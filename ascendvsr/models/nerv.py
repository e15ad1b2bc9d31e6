"""NeRV: a video as a neural network mapping a frame index to the frame.

Chen et al., "NeRV: Neural Representations for Videos", NeurIPS 2021. Same computation and
weight names as the official ``Generator`` (haochen-rye/NeRV ``model_nerv.py``) together with its
``PositionalEncoding`` (``utils.py``), so official checkpoints load through
:mod:`ascendvsr.convert.nerv` and reproduce the official frames.

Input: frame indices ``[B]`` (float32 or int, in frames; fractional indices interpolate), which
are normalised as the official data loader does, ``t = i / num_frames``. Output: frames
``[B, H, W, 3]`` in [0, 1] with ``H = fc_h * prod(strides)``, ``W = fc_w * prod(strides)``.

Architecture: positional encoding of ``t`` (``embed``: base and levels) -> MLP stem
(``stem_dim_num`` hidden layers, each Linear followed by the activation, the last projecting to
``fc_h * fc_w * fc_dim``) -> reshape channel-major to ``(fc_dim, fc_h, fc_w)`` -> one stage per
stride of ``num_blocks`` NeRV blocks (conv + PixelShuffle, norm, activation; the first stage
multiplies the width by ``expansion``, later stages divide it by ``reduction`` but keep at least
``lower_width``) -> 1x1 conv head to RGB and ``(tanh(x) + 1) / 2`` (or a sigmoid).
"""
import numpy as np
import keras
import tensorflow as tf

from ascendcv.layers.linear import Linear
from ascendcv.layers.precision import link_reduced, lowered, with_bias
from ascendcv.layers.torch_compat import torch_state_variables
from ascendvsr.layers.nerv_blocks import (ACTIVATIONS, CONV_TYPES, NORMS, Activation, NeRVBlock,
                                          PrunableConv2d, embed_length, parse_embed,
                                          positional_encoding)


def _ints(value, name, n=None):
    """``'9_16_26'`` or ``[9, 16, 26]`` -> list of ints (``n`` of them when given)."""
    try:
        out = [int(v) for v in (value.split('_') if isinstance(value, str) else value)]
    except (TypeError, ValueError):
        out = None
    if not out or (n is not None and len(out) != n) or any(v < 1 for v in out):
        want = f'{n} positive integers joined by "_"' if n else 'positive integers'
        raise ValueError(f'nerv {name} must be {want}; got {value!r}')
    return out


class NeRV(keras.Model):
    """The official NeRV ``Generator`` with its positional encoding.

    Args (official argument names; NeRV-S/M/L on Big Buck Bunny differ only in ``fc_hw_dim``
    9_16_26 / 9_16_58 / 9_16_112):
        embed (str): positional encoding ``'<base>_<levels>'`` (``'1.25_40'``) or ``'none'``.
        stem_dim_num (str): ``'<hidden dim>_<hidden layers>'`` of the MLP stem (``'512_1'``).
        fc_hw_dim (str): ``'<h>_<w>_<channels>'`` of the stem output map (``'9_16_26'``).
        expansion (float): width multiplier of the first stage.
        reduction (int): width divisor of each later stage with stride > 1.
        lower_width (int): minimum width of the later stages.
        num_blocks (int): NeRV blocks per stage (only the first upsamples).
        strides (list[int]): upsampling factor of each stage (``[5, 2, 2, 2, 2]``).
        norm (str): 'none' | 'bn' | 'in'.
        act (str): one of relu, leaky, leaky01, relu6, gelu, sin, swish, softplus, hardswish.
        conv_type (str): 'conv' (conv + PixelShuffle) | 'deconv' | 'bilinear'.
        single_res (bool): one RGB head after the last stage; otherwise one per stage (the
            model still returns the last; :meth:`forward_features` has all).
        sigmoid (bool): output ``sigmoid(x)`` instead of ``(tanh(x) + 1) / 2``.
        bias (bool): biases in every Linear/conv.
        num_frames (int): frames of the represented video; indices are normalised by it and
            must lie in ``[0, num_frames - 1]``.
        pruning (bool): exactly-zero stem/conv weights get no gradient, so a pruned network
            stays pruned while it is fine-tuned (see :mod:`ascendvsr.compression.pruning`).
        jit_compile (bool): XLA-compile the decoder.
        compute_dtype (str): 'float32' or 'bfloat16' for the block convolutions (bfloat16:
            about 2x faster decoding on CPUs with AVX512-BF16, frames within ~1e-2).
        fuse_head (bool): compute the final 1x1 RGB head before the last PixelShuffle (a 1x1
            conv to ``3 * s^2`` channels + depth_to_space: same result, no full-resolution
            feature map); only for conv blocks without norm. :meth:`forward_features` with
            ``features=True`` never fuses.
    """

    def __init__(self, embed='1.25_40', stem_dim_num='512_1', fc_hw_dim='9_16_26',
                 expansion=1.0, reduction=2, lower_width=96, num_blocks=1,
                 strides=(5, 2, 2, 2, 2), norm='none', act='swish', conv_type='conv',
                 single_res=True, sigmoid=False, bias=True, num_frames=132, pruning=False,
                 jit_compile=False, compute_dtype='float32', fuse_head=True, **kwargs):
        super().__init__(**kwargs)
        parse_embed(embed)
        try:
            stem_dim, stem_num = [int(v) for v in (stem_dim_num.split('_') if isinstance(
                stem_dim_num, str) else stem_dim_num)]
        except (TypeError, ValueError):
            stem_dim = stem_num = -1
        if stem_dim < 1 or stem_num < 0:
            raise ValueError(f'nerv stem_dim_num must look like "<hidden dim>_<hidden layers>" '
                             f'(e.g. "512_1"); got {stem_dim_num!r}')
        self.fc_h, self.fc_w, self.fc_dim = _ints(fc_hw_dim, 'fc_hw_dim', 3)
        strides = _ints(strides, 'strides')
        for name, value, choices in (('act', act, ACTIVATIONS), ('norm', norm, NORMS),
                                     ('conv_type', conv_type, CONV_TYPES)):
            if value not in choices:
                raise ValueError(f'nerv {name} must be one of {choices}; got {value!r}')
        if int(num_blocks) < 1 or int(reduction) < 1 or int(lower_width) < 1 or expansion <= 0:
            raise ValueError('nerv num_blocks, reduction, lower_width and expansion must be '
                             'positive')
        if int(num_frames) < 1:
            raise ValueError(f'nerv num_frames must be >= 1; got {num_frames}')
        self.embed = str(embed)
        self.embed_length = embed_length(embed)
        self.strides = list(strides)
        self.num_blocks = int(num_blocks)
        self.num_frames = int(num_frames)
        self.single_res, self.sigmoid = bool(single_res), bool(sigmoid)
        self.pruning, self.jit_compile = bool(pruning), bool(jit_compile)
        self.conv_dtype, self.fuse_head = compute_dtype, bool(fuse_head)
        self.act_name, self.norm_name, self.conv_type = act, norm, conv_type
        self.arch = dict(embed=self.embed, stem_dim_num=f'{stem_dim}_{stem_num}',
                         fc_hw_dim=f'{self.fc_h}_{self.fc_w}_{self.fc_dim}',
                         expansion=float(expansion), reduction=int(reduction),
                         lower_width=int(lower_width), num_blocks=self.num_blocks,
                         strides=list(self.strides), norm=norm, act=act, conv_type=conv_type,
                         single_res=self.single_res, sigmoid=self.sigmoid, bias=bool(bias))
        scale = int(np.prod(self.strides))
        self.output_size = (self.fc_h * scale, self.fc_w * scale)

        # MLP stem: Linear, act, Linear, act, ... (nn.Sequential indices stem.0, stem.2, ...)
        dims = [self.embed_length] + [stem_dim] * stem_num + [self.fc_h * self.fc_w * self.fc_dim]
        self.stem = []
        for i in range(len(dims) - 1):
            self.stem.append(Linear(dims[i], dims[i + 1], bias=bias, keep_zeros=pruning,
                                    name=f'stem_{2 * i}'))
            self.stem.append(Activation(act, name=f'stem_{2 * i + 1}'))

        # stages; PyTorch names ``layers.<k>`` / ``head_layers.<stage>`` (see torch_weights)
        self._blocks, self._heads, self._stage_of_block = [], [], []
        self.widths = []
        ngf = self.fc_dim
        for i, stride in enumerate(self.strides):
            if i == 0:
                new_ngf = int(ngf * expansion)
            else:
                new_ngf = max(ngf // (1 if stride == 1 else int(reduction)), int(lower_width))
            for j in range(self.num_blocks):
                k = len(self._blocks)
                self._blocks.append(NeRVBlock(ngf, new_ngf, 1 if j else stride, bias=bias,
                                              norm=norm, act=act, conv_type=conv_type,
                                              keep_zeros=pruning, compute_dtype=compute_dtype,
                                              name=f'layers_{k}'))
                self._stage_of_block.append(i)
                ngf = new_ngf
            self.widths.append(ngf)
            last = i == len(self.strides) - 1
            self._heads.append(PrunableConv2d(ngf, 3, 1, 1, 0, bias=bias, name=f'head_layers_{i}')
                               if (last or not self.single_res) else None)
        self._decode_fn = (tf.function(self._decode, jit_compile=True) if self.jit_compile
                           else self._decode)
        if compute_dtype != 'float32':
            self.link_reduced_chains()

    def link_reduced_chains(self):
        """Conv blocks without norm: each block's conv reaches the next block's conv (and the
        last one the RGB head) only through its activation and PixelShuffle, so the feature
        maps between them may stay bfloat16 (:mod:`ascendcv.layers.precision`)."""
        if self.conv_type != 'conv' or self.norm_name != 'none':
            return 0
        convs = [block.conv.conv for block in self._blocks]
        pairs = list(zip(convs, convs[1:]))
        if self.single_res:
            pairs.append((convs[-1], self._heads[-1]))
        return sum(link_reduced(a, (), b) for a, b in pairs)

    # ------------------------------------------------------------------ names
    def torch_weights(self):
        """``layers.<k>.*`` and ``head_layers.<i>.*`` (``layers`` is reserved by Keras)."""
        out = {}
        for k, block in enumerate(self._blocks):
            for key, pair in torch_state_variables(block).items():
                out[f'layers.{k}.{key}'] = pair
        for i, head in enumerate(self._heads):
            if head is not None:
                for key, pair in head.torch_weights().items():
                    out[f'head_layers.{i}.{key}'] = pair
        return out

    def prunable_layers(self):
        """``{torch name prefix: layer}`` of the weights the official code prunes: every stem
        Linear and every block convolution (not the heads, not biases)."""
        out = {f'stem.{2 * i}': layer for i, layer in enumerate(self.stem[::2])}
        for k, block in enumerate(self._blocks):
            sub = 'up_scale' if self.conv_type == 'bilinear' else 'conv'
            out[f'layers.{k}.conv.{sub}'] = block.conv.weight_layer()
        return out

    # ------------------------------------------------------------------ forward
    def normalize_index(self, frame_index):
        """Frame indices ``[B]`` -> official normalised ``t = i / num_frames`` (float32).

        Raises ValueError (eager) or an InvalidArgumentError (graph) for indices outside
        ``[0, num_frames - 1]``.
        """
        idx = tf.convert_to_tensor(frame_index)
        if idx.shape.rank is not None and idx.shape.rank > 1:
            idx = tf.reshape(idx, [-1])
        elif idx.shape.rank == 0:
            idx = idx[None]
        idx = tf.cast(idx, tf.float64)
        last = float(self.num_frames - 1)
        if tf.executing_eagerly():
            values = idx.numpy()
            bad = values[(values < 0) | (values > last) | ~np.isfinite(values)]
            if bad.size:
                raise ValueError(f'frame index {bad[0]:g} is out of range: this NeRV represents '
                                 f'{self.num_frames} frames (indices 0..{self.num_frames - 1})')
        else:
            msg = f'NeRV frame index out of range [0, {self.num_frames - 1}]'
            with tf.control_dependencies([
                    tf.debugging.assert_greater_equal(idx, tf.constant(0.0, tf.float64),
                                                      message=msg),
                    tf.debugging.assert_less_equal(idx, tf.constant(last, tf.float64),
                                                   message=msg)]):
                idx = tf.identity(idx)
        return tf.cast(idx / float(self.num_frames), tf.float32)

    def encode(self, t):
        """Positional encoding of normalised indices ``t`` ``[B]`` -> ``[B, embed_length]``."""
        return positional_encoding(t, self.embed)

    def _out_act(self, y):
        return tf.sigmoid(y) if self.sigmoid else (tf.tanh(y) + 1.0) * 0.5

    def _fused_head(self, block, head, x):
        """``head(PixelShuffle(act(conv(x))))`` without the full-resolution feature map: the
        1x1 head (C -> 3) becomes a 1x1 conv (C*s^2 -> s^2*3) on the pre-shuffle map with
        weight ``W'[c*s^2 + k, k*3 + o] = W[c, o]``, followed by depth_to_space (whose channel
        order ``(i*s + j)*3 + o`` is the sub-pixel order ``k = i*s + j`` of PixelShuffle)."""
        s = block.stride
        y = block.pre_shuffle(x)
        w = head.effective_kernel()[0, 0]  # [C, 3]
        c = w.shape[0]
        w2 = tf.reshape(tf.einsum('co,kl->cklo', w, tf.eye(s * s, dtype=w.dtype)),
                        [1, 1, c * s * s, s * s * 3])
        y, w2 = lowered(head, y, w2)  # the head's precision (bfloat16 products too)
        y = with_bias(head, tf.nn.conv2d(y, w2, 1, 'VALID'),
                      None if head.bias is None else tf.tile(head.bias, [s * s]))
        return tf.nn.depth_to_space(y, s)

    def _decode(self, embed, training=False, features=True):
        feats = {}
        x = tf.convert_to_tensor(embed, tf.float32)
        for layer in self.stem:
            x = layer(x)
        feats['stem'] = x  # [B, fc_dim * fc_h * fc_w], PyTorch (channel-major) order
        x = tf.transpose(tf.reshape(x, [-1, self.fc_dim, self.fc_h, self.fc_w]), [0, 2, 3, 1])
        outputs = []
        n = len(self._blocks)
        for k, block in enumerate(self._blocks):
            i = self._stage_of_block[k]
            last_of_stage = k + 1 == n or self._stage_of_block[k + 1] != i
            head = self._heads[i] if last_of_stage else None
            if (k + 1 == n and head is not None and not features and self.fuse_head
                    and self.conv_type == 'conv' and self.norm_name == 'none' and block.stride > 1):
                outputs.append(self._out_act(self._fused_head(block, head, x)))
                break
            x = block(x, training=training)
            if features:
                feats[f'layer{k}'] = x
            if head is not None:
                outputs.append(self._out_act(head(x)))
        feats['outputs'] = outputs
        feats['output'] = outputs[-1]
        return feats

    def forward_features(self, frame_index=None, t=None, embed=None, training=False,
                         features=True):
        """Forward pass from frame indices, normalised indices ``t`` or a given embedding.

        Returns a dict: ``embed`` ``[B, L]``, ``stem`` ``[B, C*h*w]`` (channel-major),
        ``layer<k>`` ``[B, H_k, W_k, C_k]`` (with ``features``), ``outputs`` (one image per
        head) and ``output`` ``[B, H, W, 3]``.
        """
        if embed is None:
            if t is None:
                if frame_index is None:
                    raise ValueError('give frame_index, t or embed')
                t = self.normalize_index(frame_index)
            embed = self.encode(t)
        embed = tf.convert_to_tensor(embed, tf.float32)
        if embed.shape[-1] is not None and embed.shape[-1] != self.embed_length:
            raise ValueError(f'NeRV embedding must have {self.embed_length} values per frame '
                             f'(embed {self.embed}); got shape {embed.shape}')
        feats = dict(self._decode_fn(embed, training=training, features=features))
        feats['embed'] = embed
        return feats

    def call(self, inputs, training=False):
        return self.forward_features(frame_index=inputs, training=training,
                                     features=False)['output']

    def decode_normalized(self, t, training=False):
        """Frames for normalised indices ``t`` ``[B]`` (no range check)."""
        return self.forward_features(t=t, training=training, features=False)['output']

    # ------------------------------------------------------------------ interface
    def check_frame_size(self, height, width, source='the video'):
        """Raise ValueError when ``fc_hw_dim``/``strides`` do not give ``height x width``."""
        if (int(height), int(width)) != tuple(self.output_size):
            h, w = self.output_size
            raise ValueError(
                f'nerv fc_hw_dim={self.arch["fc_hw_dim"]} with strides={self.strides} produces '
                f'{h}x{w} frames (fc_h*prod(strides) x fc_w*prod(strides)), but {source} is '
                f'{height}x{width}; choose fc_hw_dim/strides giving {height}x{width}, or set '
                f'nerv.resize=True to resize the frames to {h}x{w}')

    def get_config(self):
        return dict(self.arch, num_frames=self.num_frames, pruning=self.pruning,
                    jit_compile=self.jit_compile, compute_dtype=self.conv_dtype,
                    fuse_head=self.fuse_head, name=self.name)

    def count_parameters(self):
        """Number of parameter values (weights, biases, BN statistics) of the network."""
        return int(sum(int(np.prod(v.shape)) for v, _ in torch_state_variables(self).values()))


def nerv_kwargs(cfg):
    """NeRV constructor arguments from ``cfg.nerv``."""
    n = cfg.nerv
    return dict(embed=n.embed, stem_dim_num=n.stem_dim_num, fc_hw_dim=n.fc_hw_dim,
                expansion=n.expansion, reduction=n.reduction, lower_width=n.lower_width,
                num_blocks=n.num_blocks, strides=list(n.strides), norm=n.norm, act=n.act,
                conv_type=n.conv_type, single_res=n.single_res, sigmoid=n.sigmoid, bias=n.bias,
                num_frames=n.num_frames, pruning=n.prune_ratio < 1.0, jit_compile=n.jit_compile)


def build_nerv(cfg, **overrides):
    """NeRV from ``cfg.nerv``. ``jit_compile=False`` (the freezer's plain graph) wins over
    ``nerv.jit_compile``; ``jit_compile=True`` (``export.pb_xla_dcn``) only applies when
    ``nerv.jit_compile`` is set too."""
    kwargs = nerv_kwargs(cfg)
    if 'jit_compile' in overrides:
        overrides['jit_compile'] = bool(overrides['jit_compile']) and kwargs['jit_compile']
    kwargs.update(overrides)
    return NeRV(name='NeRV', **kwargs)
