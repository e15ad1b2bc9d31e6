"""RVRT: Recurrent Video Restoration Transformer with Guided Deformable Attention (Liang et al.,
NeurIPS 2022; official code JingyunLiang/RVRT ``models/network_rvrt.py``), video SR x4, and its
light variant (mindspore-lab/mindediting ``rvrt_light.py``) as constructor options.

Data flow (channels-last; ``C`` = embed dim, clips of ``clip_size`` = 2 frames)::

    lqs       [N, T, h, w, 3]      LR frames in [0, 1], T a multiple of clip_size
    flows     [N, T-1, h, w, 2]    SpyNet: backward (frame i -> i+1) and forward (i+1 -> i)
    shallow   [N, T, h, w, C]      feat_extract: RSTBWithInputConv, window (1, Wh, Ww)
    backward_1, forward_1, backward_2, forward_2   [N, T, h, w, C]
                                   recurrent refinement over clips (:meth:`RVRT.propagate`)
    recon     [N, T, h, w, C]      reconstruction RSTB on cat(shallow, b1, f1, b2, f2)
    output    [N, T, 4h, 4w, 3]    conv_before_upsampler -> Upsample(4) -> conv_last
                                   + bilinear x4 of lqs (the official trilinear base)

Propagation (one module; backward modules walk the clips last -> first and flip each clip in
time, then undo both): at clip step 0 the hidden state ``feat_prop`` is zero and no alignment
runs; at step i > 0 the ``_1`` modules compose the flows of the two clips
(``n02 = f12 + warp(f01, f12)``, ``n13 = f23 + warp(f12, f23)``, ``n03 = f23 + warp(n02, f23)``),
the ``_2`` modules reuse the flows their ``_1`` module updated at the same step; the guided
deformable attention aligns ``feat_prop`` (query = previous stage's current clip, keys = its
previous clip, values = ``feat_prop``, also warped by the flows). Then
``feat_prop += backbone(cat(all earlier stages at this clip, feat_prop))``.

``attention='local'`` (RVRT Light): no SpyNet and no flows; the alignment is a 3x3 local
attention over both frames of the previous clip (:class:`ascendvsr.layers.rvrt_attention.
LocalAttnPack`). With ``relative_position_bias=False``, ``approximate_gelu=True`` and
``norm_eps=1e-7`` it computes what mindediting's RVRT_LIGHT does.

The model keeps no state between calls (the official ``is_mirror_extended`` flag, which
persists from one input to the next, does not exist: forward flows are always computed).
Torch names match the official state dict (``spynet.*``, ``feat_extract.main.*``,
``deform_align.<module>.*``, ``backbone.<module>.*``, ``reconstruction.*``,
``conv_before_upsampler.0``, ``upsampler.*``, ``conv_last``).
"""
import keras
import tensorflow as tf

from ascendcv.layers.conv3d import Conv3d
from ascendcv.layers.sampling import flow_warp
from ascendcv.layers.spynet import SpyNet
from ascendvsr.layers.rvrt_blocks import RSTBWithInputConv, Upsample, swin_options

MODULES = ('backward_1', 'forward_1', 'backward_2', 'forward_2')
ATTENTIONS = ('guided', 'local')


def _triple(v, what):
    v = [int(x) for x in v]
    if len(v) != 3:
        raise ValueError(f'{what} must have 3 entries, got {v}')
    return v


class RVRT(keras.Model):
    """RVRT for video super-resolution x4 (official VSR constructor arguments).

    Args:
        upscale (int): 4 (the video SR model; deblurring / denoising are not ported).
        clip_size (int): frames per clip (2, as every official model; any with local
            attention).
        window_size ((d, h, w)): Swin window of the propagation backbones (feat_extract and
            reconstruction use ``(1, h, w)``).
        num_blocks ((3,)): RSTBs in feat_extract, each backbone, reconstruction.
        depths ((3,)): Swin layers per RSTB (same three places).
        embed_dims ((3,)): channels (equal, as the official code requires).
        num_heads ((3,)): Swin heads.
        mlp_ratio (float), qkv_bias (bool), qk_scale (float or None): Swin MLP / attention.
        inputconv_groups ((6,)): must be all 1 (VSR).
        deformable_groups, attention_heads (int), attention_window ((2,)),
        max_residue_magnitude (float): the guided deformable attention.
        attention ('guided' | 'local'): RVRT, or RVRT Light's local attention (no SpyNet).
        relative_position_bias (bool): Swin relative position bias (RVRT Light: False).
        approximate_gelu (bool): tanh GELU (MindSpore) instead of the exact one (PyTorch).
        norm_eps (float): LayerNorm epsilon (PyTorch 1e-5, MindSpore 1e-7).
        num_frame (int): frames per call of the prediction / serving path (a multiple of
            ``clip_size``; ``call`` itself takes any multiple).
        num_in_ch (int): 3 (RGB).
        jit_compile (bool): XLA-compile the attention op (not for export).

    Call: ``[N, T, h, w, 3]`` -> ``[N, T, 4h, 4w, 3]``; :meth:`forward_features` also returns
    the flows and every stage.
    """

    def __init__(self, upscale=4, clip_size=2, window_size=(2, 8, 8), num_blocks=(1, 2, 1),
                 depths=(2, 2, 2), embed_dims=(144, 144, 144), num_heads=(6, 6, 6),
                 mlp_ratio=2.0, qkv_bias=True, qk_scale=None, inputconv_groups=(1,) * 6,
                 deformable_groups=12, attention_heads=12, attention_window=(3, 3),
                 max_residue_magnitude=10, attention='guided', relative_position_bias=True,
                 approximate_gelu=False, norm_eps=1e-5, num_frame=None, num_in_ch=3,
                 jit_compile=False, **kwargs):
        super().__init__(**kwargs)
        if int(upscale) != 4:
            raise ValueError(f'RVRT upscale={upscale}: only the video super-resolution model '
                             f'(upscale=4) is ported (not the deblurring / denoising ones)')
        if attention not in ATTENTIONS:
            raise ValueError(f'RVRT attention must be one of {ATTENTIONS}, got {attention!r}')
        if attention == 'guided' and int(clip_size) != 2:
            raise ValueError(f'RVRT clip_size={clip_size}: the flow composition across clips '
                             f'(n02, n13, n03) is defined for clips of 2 frames, as in every '
                             f'official model (attention=local takes any clip size)')
        if int(clip_size) < 1:
            raise ValueError(f'RVRT clip_size must be >= 1, got {clip_size}')
        embed_dims = [int(v) for v in embed_dims]
        if len(set(embed_dims)) != 1 or len(embed_dims) != 3:
            raise ValueError(f'RVRT embed_dims must be 3 equal values, got {embed_dims}')
        if int(num_in_ch) != 3:
            raise ValueError(f'RVRT takes RGB frames (num_in_ch=3), got {num_in_ch}')
        window_size = _triple(window_size, 'window_size')
        num_blocks, depths = _triple(num_blocks, 'num_blocks'), _triple(depths, 'depths')
        num_heads = _triple(num_heads, 'num_heads')
        inputconv_groups = [int(v) for v in inputconv_groups]
        if len(inputconv_groups) != 6:
            raise ValueError(f'inputconv_groups must have 6 entries, got {inputconv_groups}')
        self.clip_size = int(clip_size)
        self.frame_multiple = self.clip_size  # frames per call: a multiple of the clip
        self.num_frame = int(num_frame) if num_frame else 2 * self.clip_size
        if self.num_frame % self.clip_size:
            raise ValueError(f'RVRT num_frame={self.num_frame} is not a multiple of clip_size='
                             f'{self.clip_size}')
        self.num_in_ch = 3
        self.attention = attention
        self.jit_compile = bool(jit_compile)
        self.arch = dict(upscale=4, clip_size=self.clip_size, window_size=window_size,
                         num_blocks=num_blocks, depths=depths, embed_dims=embed_dims,
                         num_heads=num_heads, mlp_ratio=float(mlp_ratio), qkv_bias=bool(qkv_bias),
                         qk_scale=qk_scale, inputconv_groups=inputconv_groups,
                         deformable_groups=int(deformable_groups),
                         attention_heads=int(attention_heads),
                         attention_window=[int(v) for v in attention_window],
                         max_residue_magnitude=max_residue_magnitude, attention=attention,
                         relative_position_bias=bool(relative_position_bias),
                         approximate_gelu=bool(approximate_gelu), norm_eps=float(norm_eps),
                         num_frame=self.num_frame)
        c = embed_dims[0]
        swin = swin_options(relative_position_bias, approximate_gelu, norm_eps, mlp_ratio,
                            qkv_bias, qk_scale)
        frame_window = [1, window_size[1], window_size[2]]

        if attention == 'guided':
            self.spynet = SpyNet(name='spynet')
        self.feat_extract = RSTBWithInputConv(3, c, num_blocks[0], depths[0], num_heads[0],
                                              frame_window, groups=inputconv_groups[0],
                                              swin=swin, name='feat_extract')
        self.deform_align = {}
        self.backbone = {}
        for i, module in enumerate(MODULES):
            self.deform_align[module] = self._attention_pack(module, c, swin)
            self.backbone[module] = RSTBWithInputConv(
                (2 + i) * c, c, num_blocks[1], depths[1], num_heads[1], window_size,
                groups=inputconv_groups[i + 1], swin=swin, name=f'backbone_{module}')
        self.reconstruction = RSTBWithInputConv(5 * c, c, num_blocks[2], depths[2], num_heads[2],
                                                frame_window, groups=inputconv_groups[5],
                                                swin=swin, name='reconstruction')
        self.conv_before_upsampler = [Conv3d(c, 64, 1, name='conv_before_upsampler'),
                                      keras.layers.LeakyReLU(negative_slope=0.1)]
        self.upsampler = Upsample(4, 64, name='upsampler')
        self.conv_last = Conv3d(64, 3, (1, 3, 3), padding=(0, 1, 1), name='conv_last')
        self.built = True  # weights exist from construction: checkpoints load before a call

    def _attention_pack(self, module, c, swin):
        a = self.arch
        if self.attention == 'guided':
            from ascendvsr.layers.rvrt_attention import GuidedDeformAttnPack
            return GuidedDeformAttnPack(c, c, attention_window=a['attention_window'],
                                        attention_heads=a['attention_heads'],
                                        deformable_groups=a['deformable_groups'],
                                        clip_size=self.clip_size,
                                        max_residue_magnitude=a['max_residue_magnitude'],
                                        approximate_gelu=swin['approximate_gelu'],
                                        jit_compile=self.jit_compile,
                                        name=f'deform_align_{module}')
        from ascendvsr.layers.rvrt_attention import LocalAttnPack
        return LocalAttnPack(c, c, attention_window=a['attention_window'],
                             attention_heads=a['attention_heads'], clip_size=self.clip_size,
                             approximate_gelu=swin['approximate_gelu'],
                             jit_compile=self.jit_compile, name=f'deform_align_{module}')

    # ------------------------------------------------------------------ checks
    def check_input(self, lqs):
        """ValueError unless ``lqs`` is ``[N, T, h, w, 3]`` with T a positive multiple of
        ``clip_size`` (and, with SpyNet, ``h, w > 32``)."""
        shape = lqs.shape
        if shape.rank != 5 or shape[-1] != 3:
            raise ValueError(f'RVRT expects frames [N, T, H, W, 3]; got shape {shape}')
        t = shape[1]
        if t is None:
            raise ValueError('RVRT needs a static frame count T (the recurrence over clips is '
                             'unrolled); got [N, None, H, W, 3]')
        if t < self.clip_size or t % self.clip_size:
            raise ValueError(f'RVRT restores clips of {self.clip_size} frames: the frame count T '
                             f'must be a positive multiple of clip_size={self.clip_size}, got '
                             f'T={t} (pad the sequence, e.g. by mirroring its last frames)')
        if self.attention == 'guided':
            SpyNet.check_size(shape[2], shape[3])

    # ------------------------------------------------------------------ flows
    def compute_flow(self, lqs):
        """``(flows_forward, flows_backward)``, each ``[N, T-1, h, w, 2]`` (dx, dy):
        ``flows_backward[:, i] = spynet(frame i, frame i+1)``, ``flows_forward[:, i] =
        spynet(frame i+1, frame i)`` (always computed: no mirror shortcut, no state)."""
        s = tf.shape(lqs)
        n, t, h, w = s[0], lqs.shape[1], s[2], s[3]
        a = tf.reshape(lqs[:, :-1], [-1, h, w, 3])
        b = tf.reshape(lqs[:, 1:], [-1, h, w, 3])
        both = self.spynet(tf.concat([a, b], 0), tf.concat([b, a], 0))
        backward, forward = tf.split(both, 2, axis=0)
        return (tf.reshape(forward, [n, t - 1, h, w, 2]),
                tf.reshape(backward, [n, t - 1, h, w, 2]))

    @staticmethod
    def compose_flows(f01, f12, f23):
        """Flows from the previous clip (frames 0, 1) to the current one (2, 3):
        ``flow_n1 = [n02, n13]``, ``flow_n2 = [n12, n03]``, each ``[N, 2, h, w, 2]``."""
        n02 = f12 + flow_warp(f01, f12)
        n13 = f23 + flow_warp(f12, f23)
        n03 = f23 + flow_warp(n02, f23)
        return tf.stack([n02, n13], 1), tf.stack([f12, n03], 1)

    @staticmethod
    def _warp_clip(feat, flow):
        """``flow_warp`` of each frame of a clip: ``[N, 2, h, w, C]`` by ``[N, 2, h, w, 2]``."""
        s = tf.shape(feat)
        flat = tf.reshape(feat, tf.concat([[-1], s[2:]], 0))
        out = flow_warp(flat, tf.reshape(flow, tf.concat([[-1], tf.shape(flow)[2:]], 0)))
        return tf.reshape(out, s)

    # ------------------------------------------------------------------ propagation
    def propagate(self, feats, flows, module, updated_flows, record=None):
        """One refinement module over the clips (see the module docstring).

        Args:
            feats (dict): ``{stage: [clip features [N, clip, h, w, C]]}`` in insertion order
                ``shallow, backward_1, ...``; ``feats[module]`` is filled (natural order).
            flows: ``[N, T-1, h, w, 2]`` of this direction (None for local attention).
            updated_flows (dict): ``<module>_n1`` / ``_n2`` lists written by ``_1`` modules and
                read by ``_2`` modules.
            record (dict or None): receives, for each alignment call (clip step i > 0,
                guided attention), ``record['<module>.<i>']`` = ``{feat_q, feat_k, feat_prop,
                warped1, warped2, flow_n1, flow_n2, feat}`` (inputs and output of the pack, in
                propagation order) for inspection.
        """
        backward = module.startswith('backward')
        first = module.endswith('_1')
        num_clips = len(feats['shallow'])
        clip_idx = list(range(num_clips))[::-1] if backward else list(range(num_clips))
        if flows is not None:  # index of the flow before each frame, in propagation order
            t = flows.shape[1]
            flow_idx = list(range(t + 1))[::-1] if backward else list(range(-1, t))
        if first:
            updated_flows[f'{module}_n1'], updated_flows[f'{module}_n2'] = [], []
        prev_key = [k for k in feats if k != module][-1]
        flip = (lambda x: tf.reverse(x, [1])) if backward else (lambda x: x)
        pack = self.deform_align[module]
        feat_prop = tf.zeros_like(feats['shallow'][0])
        outputs = []
        for i, idx_c in enumerate(clip_idx):
            if i > 0:
                feat_q = flip(feats[prev_key][idx_c])
                feat_k = flip(feats[prev_key][clip_idx[i - 1]])
                if self.attention == 'local':
                    feat_prop = pack(feat_q, feat_k, feat_prop)
                else:
                    if first:
                        cs = self.clip_size
                        f01, f12, f23 = (flows[:, flow_idx[cs * i + k]] for k in (-1, 0, 1))
                        flow_n1, flow_n2 = self.compose_flows(f01, f12, f23)
                    else:
                        src = module.replace('_2', '_1')
                        flow_n1 = updated_flows[f'{src}_n1'][i - 1]
                        flow_n2 = updated_flows[f'{src}_n2'][i - 1]
                    warped1 = self._warp_clip(feat_prop, flow_n1)
                    warped2 = self._warp_clip(tf.reverse(feat_prop, [1]), flow_n2)
                    inputs = (feat_q, feat_k, feat_prop, [warped1, warped2], [flow_n1, flow_n2])
                    if first:
                        feat_prop, (flow_n1, flow_n2) = pack(*inputs, True)
                        updated_flows[f'{module}_n1'].append(flow_n1)
                        updated_flows[f'{module}_n2'].append(flow_n2)
                    else:
                        feat_prop = pack(*inputs, False)
                    if record is not None:
                        record[f'{module}.{i}'] = dict(
                            feat_q=feat_q, feat_k=feat_k, feat_prop=inputs[2], warped1=warped1,
                            warped2=warped2, flow_n1=inputs[4][0], flow_n2=inputs[4][1],
                            feat=feat_prop)
            feat = [flip(feats[k][idx_c]) for k in feats if k != module] + [feat_prop]
            feat_prop = feat_prop + self.backbone[module](tf.concat(feat, -1))
            outputs.append(feat_prop)
        if backward:
            outputs = [flip(f) for f in outputs[::-1]]
        feats[module] = outputs
        return feats

    # ------------------------------------------------------------------ forward
    def forward_features(self, lqs, record=None):
        """Everything the forward computes: ``{'flows_forward', 'flows_backward'`` (None with
        local attention), ``'shallow', 'backward_1', ..., 'forward_2'`` ``[N, T, h, w, C]``,
        ``'reconstruction'``, ``'output'`` ``[N, T, 4h, 4w, 3]}``."""
        lqs = tf.convert_to_tensor(lqs)
        self.check_input(lqs)
        t = lqs.shape[1]
        num_clips = t // self.clip_size
        out = {}
        feats = {'shallow': tf.split(self.feat_extract(lqs), num_clips, axis=1)}
        if self.attention == 'guided' and num_clips > 1:  # one clip: no alignment, no flows
            flows_forward, flows_backward = self.compute_flow(lqs)
        else:
            flows_forward = flows_backward = None
        out['flows_forward'], out['flows_backward'] = flows_forward, flows_backward
        updated_flows = {}
        for module in MODULES:
            flows = flows_backward if module.startswith('backward') else flows_forward
            feats[module] = []
            feats = self.propagate(feats, flows, module, updated_flows, record)
        stages = {k: tf.concat(v, 1) for k, v in feats.items()}
        out.update(stages)
        hr = self.reconstruction(tf.concat([stages[k] for k in ('shallow',) + MODULES], -1))
        out['reconstruction'] = hr
        for layer in self.conv_before_upsampler:
            hr = layer(hr)
        hr = self.conv_last(self.upsampler(hr))
        out['output'] = hr + self.upsample_input(lqs)
        return out

    @staticmethod
    def upsample_input(lqs):
        """The official base ``F.interpolate(lqs, size=(c, 4h, 4w), mode='trilinear')``: a
        bilinear x4 (half-pixel) of every frame. ``[N, T, h, w, 3]`` -> ``[N, T, 4h, 4w, 3]``."""
        s = tf.shape(lqs)
        flat = tf.reshape(lqs, tf.concat([[-1], s[2:]], 0))
        up = tf.image.resize(flat, [4 * s[2], 4 * s[3]], method='bilinear')
        return tf.reshape(up, tf.concat([s[:2], [4 * s[2], 4 * s[3], 3]], 0))

    def call(self, inputs, training=False):
        return self.forward_features(inputs)['output']

    # ------------------------------------------------------------------ interface
    def spynet_variables(self):
        """SpyNet's trainable variables (frozen, then slower, in training)."""
        return list(self.spynet.trainable_variables) if self.attention == 'guided' else []

    def trained_variables(self, num_frame=None, spynet=True):
        """The trainable variables a clip of ``num_frame`` frames (default ``self.num_frame``)
        reaches: with a single clip neither the alignment nor SpyNet runs; ``spynet=False``
        leaves SpyNet out (its frozen phase)."""
        t = self.num_frame if num_frame is None else int(num_frame)
        skip = set()
        if not spynet or t <= self.clip_size:
            skip |= {id(v) for v in self.spynet_variables()}
        if t <= self.clip_size:
            for pack in self.deform_align.values():
                skip |= {id(v) for v in pack.trainable_variables}
        return [v for v in self.trainable_variables if id(v) not in skip]

    def num_parameters(self):
        """Trainable parameter count (the official ``sum(p.numel() for p in
        model.parameters())``: buffers such as ``relative_position_index`` excluded)."""
        return int(sum(int(tf.size(v)) for v in self.trainable_variables))

    def get_config(self):
        return dict(self.arch, jit_compile=self.jit_compile, name=self.name)


def rvrt_kwargs(cfg):
    """RVRT constructor arguments from the config tree (``cfg.rvrt``)."""
    r = cfg.rvrt
    return dict(clip_size=r.clip_size, window_size=list(r.window_size),
                num_blocks=list(r.num_blocks), depths=list(r.depths),
                embed_dims=list(r.embed_dims), num_heads=list(r.num_heads),
                mlp_ratio=r.mlp_ratio, inputconv_groups=list(r.inputconv_groups),
                deformable_groups=r.deformable_groups, attention_heads=r.attention_heads,
                attention_window=list(r.attention_window),
                max_residue_magnitude=r.max_residue_magnitude, attention=r.attention,
                relative_position_bias=r.relative_position_bias,
                approximate_gelu=r.approximate_gelu, norm_eps=r.norm_eps,
                num_frame=r.num_frame, jit_compile=r.jit_compile)


def build_rvrt(cfg, **overrides):
    """The RVRT of ``cfg.rvrt`` (``overrides`` replace constructor arguments)."""
    kwargs = rvrt_kwargs(cfg)
    kwargs.update(overrides)
    name = kwargs.pop('name', 'RVRT')
    return RVRT(name=name, **kwargs)
