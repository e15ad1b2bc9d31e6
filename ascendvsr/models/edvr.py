"""EDVR: video super-resolution / restoration with PCD alignment and TSA fusion.

Wang et al., "EDVR: Video Restoration with Enhanced Deformable Convolutional Networks",
CVPRW 2019. Same computation and weight names as BasicSR's ``EDVR`` (``basicsr/archs/edvr_arch.py``)
for every constructor option, so its checkpoints (and, through ``ascendvsr.convert.edvr``, those of
the original EDVR repository) load unchanged.

Input ``[B, T, H, W, C]`` float in [0, 1] (T = ``num_frame``); output ``[B, 4H, 4W, C]``
(``[B, H, W, C]`` with ``hr_in``).
"""
import keras
import tensorflow as tf

from ascendcv.layers.conv import Conv2d, ResidualBlockNoBN, leaky_relu
from ascendcv.layers.precision import link_reduced
from ascendcv.layers.sampling import pixel_shuffle, upsample_bilinear
from ascendvsr.layers.edvr_blocks import PCDAlignment, PredeblurModule, TSAFusion


class EDVR(keras.Model):
    """EDVR network.

    Args (BasicSR names and defaults; EDVR-M is the default, EDVR-L is num_feat=128,
    num_reconstruct_block=40):
        num_in_ch, num_out_ch (int): image channels (3).
        num_feat (int): feature channels (64).
        num_frame (int): input frames T (5).
        deformable_groups (int): DCN offset groups (8).
        num_extract_block (int): residual blocks before the pyramid (5).
        num_reconstruct_block (int): residual blocks after fusion (10).
        center_frame_idx (int | None): reference frame; None = ``num_frame // 2``.
        hr_in (bool): input already at output size (deblurring); needs ``with_predeblur``.
        with_predeblur (bool): pre-deblur module before feature extraction.
        with_tsa (bool): TSA fusion; otherwise a 1x1 conv over the concatenated frames.
        impl (str): deformable conv implementation, 'tf' or 'npu'.
        jit_compile (bool): XLA-compile the deformable convs ('tf' impl).
    """

    def __init__(self, num_in_ch=3, num_out_ch=3, num_feat=64, num_frame=5, deformable_groups=8,
                 num_extract_block=5, num_reconstruct_block=10, center_frame_idx=None,
                 hr_in=False, with_predeblur=False, with_tsa=True, impl='tf', jit_compile=False,
                 **kwargs):
        super().__init__(**kwargs)
        if center_frame_idx is None or center_frame_idx < 0:
            center_frame_idx = num_frame // 2
        if not 0 <= center_frame_idx < num_frame:
            raise ValueError(f'center_frame_idx={center_frame_idx} is outside [0, {num_frame})')
        if hr_in and not with_predeblur:
            raise ValueError('EDVR hr_in=True needs with_predeblur=True (the pre-deblur module '
                             'holds the stride-2 convs that bring HR input to LR size)')
        if num_out_ch != num_in_ch:
            raise ValueError(f'num_out_ch={num_out_ch} must equal num_in_ch={num_in_ch}: the '
                             'output adds the upsampled centre frame')
        self.arch = dict(num_in_ch=num_in_ch, num_out_ch=num_out_ch, num_feat=num_feat,
                         num_frame=num_frame, deformable_groups=deformable_groups,
                         num_extract_block=num_extract_block,
                         num_reconstruct_block=num_reconstruct_block,
                         center_frame_idx=center_frame_idx, hr_in=hr_in,
                         with_predeblur=with_predeblur, with_tsa=with_tsa)
        self.impl, self.jit_compile = impl, jit_compile
        self.num_in_ch, self.num_frame, self.num_feat = num_in_ch, num_frame, num_feat
        self.center_frame_idx, self.hr_in = center_frame_idx, hr_in
        self.with_predeblur, self.with_tsa = with_predeblur, with_tsa
        c = num_feat

        if with_predeblur:
            self.predeblur = PredeblurModule(num_in_ch, c, hr_in=hr_in, name='predeblur')
            self.conv_1x1 = Conv2d(c, c, 1, 1, name='conv_1x1')
        else:
            self.conv_first = Conv2d(num_in_ch, c, 3, 1, 1, name='conv_first')
        self.feature_extraction = [ResidualBlockNoBN(c, name=f'feature_extraction_{i}')
                                   for i in range(num_extract_block)]
        self.conv_l2_1 = Conv2d(c, c, 3, 2, 1, name='conv_l2_1')
        self.conv_l2_2 = Conv2d(c, c, 3, 1, 1, name='conv_l2_2')
        self.conv_l3_1 = Conv2d(c, c, 3, 2, 1, name='conv_l3_1')
        self.conv_l3_2 = Conv2d(c, c, 3, 1, 1, name='conv_l3_2')

        self.pcd_align = PCDAlignment(c, deformable_groups, impl=impl, jit_compile=jit_compile,
                                      name='pcd_align')
        if with_tsa:
            self.fusion = TSAFusion(c, num_frame, center_frame_idx, name='fusion')
        else:
            self.fusion = Conv2d(num_frame * c, c, 1, 1, name='fusion')

        self.reconstruction = [ResidualBlockNoBN(c, name=f'reconstruction_{i}')
                               for i in range(num_reconstruct_block)]
        self.upconv1 = Conv2d(c, c * 4, 3, 1, 1, name='upconv1')
        self.upconv2 = Conv2d(c, 64 * 4, 3, 1, 1, name='upconv2')
        self.conv_hr = Conv2d(64, 64, 3, 1, 1, name='conv_hr')
        self.conv_last = Conv2d(64, num_out_ch, 3, 1, 1, name='conv_last')

    # ------------------------------------------------------------------ checks
    def check_input(self, x):
        """Fail early, naming the shape, when ``x`` is not ``[B, T, H, W, C]`` as configured."""
        shape = x.shape
        if shape.rank != 5:
            raise ValueError(f'EDVR expects input [B, T, H, W, C] (rank 5); got shape {shape}')
        t, h, w, c = shape[1], shape[2], shape[3], shape[4]
        if t is not None and t != self.num_frame:
            raise ValueError(f'EDVR was built for num_frame={self.num_frame} frames; the input '
                             f'has {t} (shape {shape})')
        if c is not None and c != self.num_in_ch:
            raise ValueError(f'EDVR expects {self.num_in_ch} channels last; input shape {shape}')
        mult = 16 if self.hr_in else 4
        for name, size in (('height', h), ('width', w)):
            if size is not None and size % mult:
                raise ValueError(f'EDVR input {name} must be a multiple of {mult}; got {size} '
                                 f'(shape {shape})')

    def link_reduced_chains(self):
        """The pyramid's conv - LeakyReLU - conv and the upsampler's conv (- PixelShuffle) -
        LeakyReLU - conv steps may stay bfloat16 (:mod:`ascendcv.layers.precision`)."""
        pairs = [(self.conv_l2_1, self.conv_l2_2), (self.conv_l3_1, self.conv_l3_2),
                 (self.upconv1, self.upconv2), (self.upconv2, self.conv_hr),
                 (self.conv_hr, self.conv_last)]
        return sum(link_reduced(a, (), b) for a, b in pairs)

    # ----------------------------------------------------------------- forward
    def forward_features(self, x):
        """Forward pass returning the named intermediates (for parity checks and debugging).

        Returns a dict: ``feat_l1`` ``[B*T, h, w, C]``, ``aligned`` ``[B, T, h, w, C]``,
        ``fusion``, ``reconstruction`` ``[B, h, w, C]``, ``base`` and ``output``
        ``[B, 4h, 4w, C_out]``.
        """
        self.check_input(x)
        shape = tf.shape(x)
        b, t, h, w = shape[0], self.num_frame, shape[2], shape[3]
        x_center = x[:, self.center_frame_idx]
        frames = tf.reshape(x, [-1, h, w, self.num_in_ch])

        if self.with_predeblur:
            feat_l1 = self.conv_1x1(self.predeblur(frames))
        else:
            feat_l1 = leaky_relu(self.conv_first(frames))
        out = {'feat_l1_in': feat_l1}
        for block in self.feature_extraction:
            feat_l1 = block(feat_l1)
        feat_l2 = leaky_relu(self.conv_l2_2(leaky_relu(self.conv_l2_1(feat_l1))))
        feat_l3 = leaky_relu(self.conv_l3_2(leaky_relu(self.conv_l3_1(feat_l2))))
        out.update(feat_l1=feat_l1, pyr_l2=feat_l2, pyr_l3=feat_l3)

        def per_frame(f):  # [B*T, h, w, C] -> [B, T, h, w, C]
            s = tf.shape(f)
            return tf.reshape(f, [b, t, s[1], s[2], self.num_feat])

        pyramid = [per_frame(f) for f in (feat_l1, feat_l2, feat_l3)]
        ref = [p[:, self.center_frame_idx] for p in pyramid]
        aligned = tf.stack([self.pcd_align([p[:, i] for p in pyramid], ref) for i in range(t)],
                           axis=1)
        out['aligned'] = aligned

        if self.with_tsa:
            feat = self.fusion(aligned)
        else:
            s = tf.shape(aligned)
            stacked = tf.reshape(tf.transpose(aligned, [0, 2, 3, 1, 4]),
                                 [b, s[2], s[3], t * self.num_feat])
            feat = self.fusion(stacked)
        out['fusion'] = feat

        for block in self.reconstruction:
            feat = block(feat)
        out['reconstruction'] = feat
        y = leaky_relu(pixel_shuffle(self.upconv1(feat), 2))
        y = leaky_relu(pixel_shuffle(self.upconv2(y), 2))
        y = self.conv_last(leaky_relu(self.conv_hr(y)))
        base = x_center if self.hr_in else upsample_bilinear(x_center, 4)
        out['base'] = base
        out['output'] = y + base
        return out

    def call(self, inputs, training=False):
        return self.forward_features(inputs)['output']

    # --------------------------------------------------------------- interface
    def warmup_trainable_variables(self):
        """Variables trained alone during the TSA warm-up (BasicSR ``tsa_iter``): the fusion
        module's (TSA, or the 1x1 fusion conv)."""
        from ascendcv.layers.torch_compat import torch_state_variables
        return [v for k, (v, _) in torch_state_variables(self).items() if k.startswith('fusion.')]

    def get_config(self):
        return dict(self.arch, impl=self.impl, jit_compile=self.jit_compile, name=self.name)


def edvr_kwargs(cfg):
    """EDVR constructor arguments from the config tree (``cfg.edvr``)."""
    e = cfg.edvr
    return dict(num_in_ch=e.num_in_ch, num_out_ch=e.num_out_ch, num_feat=e.num_feat,
                num_frame=e.num_frame, deformable_groups=e.deformable_groups,
                num_extract_block=e.num_extract_block,
                num_reconstruct_block=e.num_reconstruct_block,
                center_frame_idx=None if e.center_frame_idx < 0 else e.center_frame_idx,
                hr_in=e.hr_in, with_predeblur=e.with_predeblur, with_tsa=e.with_tsa,
                impl=e.impl, jit_compile=e.dcn_jit_compile)


def build_edvr(cfg, **overrides):
    kwargs = edvr_kwargs(cfg)
    kwargs.update(overrides)
    return EDVR(name='EDVR', **kwargs)
