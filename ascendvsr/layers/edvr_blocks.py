"""EDVR building blocks (Wang et al., "EDVR: Video Restoration with Enhanced Deformable
Convolutional Networks", CVPRW 2019), named after the paper and BasicSR's ``edvr_arch.py`` so
that BasicSR state-dict keys address our weights directly. All tensors are NHWC.
"""
import keras
import tensorflow as tf

from ascendcv.layers.conv import Conv2d, ResidualBlockNoBN, leaky_relu
from ascendcv.layers.deform_conv import DCNv2Pack
from ascendcv.layers.precision import link_reduced
from ascendcv.layers.sampling import avg_pool_torch, max_pool_torch, upsample_bilinear

LEVELS = ('l3', 'l2', 'l1')


class PCDAlignment(keras.layers.Layer):
    """Pyramid, Cascading and Deformable alignment.

    For each pyramid level from coarse (L3, 1/4 size) to fine (L1): offsets are predicted from
    the concatenated neighbour/reference features (plus the x2-upsampled offsets of the coarser
    level, scaled by 2), a DCN aligns the neighbour feature, and it is merged with the upsampled
    coarser aligned feature. A cascading DCN refines the L1 result.

    Args:
        num_feat (int): feature channels ``C``.
        deformable_groups (int): DCN offset groups.
        impl (str): deformable conv implementation, 'tf' or 'npu'.
        jit_compile (bool): XLA-compile the DCNs ('tf' impl).

    ``call(nbr_feat_l, ref_feat_l)``: lists ``[L1, L2, L3]`` of ``[N, H/2^i, W/2^i, C]`` ->
    aligned ``[N, H, W, C]``.
    """

    def __init__(self, num_feat=64, deformable_groups=8, impl='tf', jit_compile=False, **kwargs):
        super().__init__(**kwargs)
        self.num_feat, self.deformable_groups = num_feat, deformable_groups
        c = num_feat
        dcn = dict(deformable_groups=deformable_groups, impl=impl, jit_compile=jit_compile)
        self.offset_conv1, self.offset_conv2, self.offset_conv3 = {}, {}, {}
        self.dcn_pack, self.feat_conv = {}, {}
        for level in LEVELS:
            self.offset_conv1[level] = Conv2d(c * 2, c, 3, 1, 1, name=f'offset_conv1_{level}')
            if level == 'l3':
                self.offset_conv2[level] = Conv2d(c, c, 3, 1, 1, name=f'offset_conv2_{level}')
            else:
                self.offset_conv2[level] = Conv2d(c * 2, c, 3, 1, 1, name=f'offset_conv2_{level}')
                self.offset_conv3[level] = Conv2d(c, c, 3, 1, 1, name=f'offset_conv3_{level}')
            self.dcn_pack[level] = DCNv2Pack(c, c, 3, padding=1, name=f'dcn_pack_{level}', **dcn)
            if level != 'l3':
                self.feat_conv[level] = Conv2d(c * 2, c, 3, 1, 1, name=f'feat_conv_{level}')
        self.cas_offset_conv1 = Conv2d(c * 2, c, 3, 1, 1, name='cas_offset_conv1')
        self.cas_offset_conv2 = Conv2d(c, c, 3, 1, 1, name='cas_offset_conv2')
        self.cas_dcnpack = DCNv2Pack(c, c, 3, padding=1, name='cas_dcnpack', **dcn)

    def link_reduced_chains(self):
        """Offset convs whose output feeds only the next offset conv (through a LeakyReLU) may
        stay bfloat16 into it (:mod:`ascendcv.layers.precision`); offsets that are upsampled
        or sample features stay float32."""
        pairs = [(self.offset_conv1['l3'], self.offset_conv2['l3'])]
        pairs += [(self.offset_conv2[level], self.offset_conv3[level]) for level in ('l2', 'l1')]
        pairs += [(self.cas_offset_conv1, self.cas_offset_conv2),
                  (self.cas_offset_conv2, self.cas_dcnpack.conv_offset)]
        return sum(link_reduced(a, (), b) for a, b in pairs)

    def call(self, nbr_feat_l, ref_feat_l):
        up_offset = up_feat = None
        for i, level in zip((3, 2, 1), LEVELS):
            nbr, ref = nbr_feat_l[i - 1], ref_feat_l[i - 1]
            offset = leaky_relu(self.offset_conv1[level](tf.concat([nbr, ref], -1)))
            if level == 'l3':
                offset = leaky_relu(self.offset_conv2[level](offset))
            else:
                offset = leaky_relu(self.offset_conv2[level](tf.concat([offset, up_offset], -1)))
                offset = leaky_relu(self.offset_conv3[level](offset))
            feat = self.dcn_pack[level](nbr, offset)
            if level != 'l3':
                feat = self.feat_conv[level](tf.concat([feat, up_feat], -1))
            if level != 'l1':
                feat = leaky_relu(feat)
                # offsets are in pixels of this level: x2 size means x2 magnitude
                up_offset = upsample_bilinear(offset, 2) * 2
                up_feat = upsample_bilinear(feat, 2)
        offset = tf.concat([feat, ref_feat_l[0]], -1)
        offset = leaky_relu(self.cas_offset_conv2(leaky_relu(self.cas_offset_conv1(offset))))
        return leaky_relu(self.cas_dcnpack(feat, offset))

    def get_config(self):
        cfg = super().get_config()
        cfg.update(num_feat=self.num_feat, deformable_groups=self.deformable_groups)
        return cfg


class TSAFusion(keras.layers.Layer):
    """Temporal and Spatial Attention fusion.

    Temporal: each frame's features are weighted by ``sigmoid(<emb_t, emb_center>)`` per pixel.
    Spatial: a 3-level pyramid of attention maps modulates the fused feature
    (``feat * sigmoid(attn) * 2 + attn_add``).

    ``call(aligned_feat)``: ``[N, T, H, W, C]`` -> ``[N, H, W, C]``.
    """

    def __init__(self, num_feat=64, num_frame=5, center_frame_idx=2, **kwargs):
        super().__init__(**kwargs)
        self.num_feat, self.num_frame, self.center_frame_idx = num_feat, num_frame, center_frame_idx
        c, tc = num_feat, num_frame * num_feat
        self.temporal_attn1 = Conv2d(c, c, 3, 1, 1, name='temporal_attn1')
        self.temporal_attn2 = Conv2d(c, c, 3, 1, 1, name='temporal_attn2')
        self.feat_fusion = Conv2d(tc, c, 1, 1, name='feat_fusion')
        self.spatial_attn1 = Conv2d(tc, c, 1, name='spatial_attn1')
        self.spatial_attn2 = Conv2d(c * 2, c, 1, name='spatial_attn2')
        self.spatial_attn3 = Conv2d(c, c, 3, 1, 1, name='spatial_attn3')
        self.spatial_attn4 = Conv2d(c, c, 1, name='spatial_attn4')
        self.spatial_attn5 = Conv2d(c, c, 3, 1, 1, name='spatial_attn5')
        self.spatial_attn_l1 = Conv2d(c, c, 1, name='spatial_attn_l1')
        self.spatial_attn_l2 = Conv2d(c * 2, c, 3, 1, 1, name='spatial_attn_l2')
        self.spatial_attn_l3 = Conv2d(c, c, 3, 1, 1, name='spatial_attn_l3')
        self.spatial_attn_add1 = Conv2d(c, c, 1, name='spatial_attn_add1')
        self.spatial_attn_add2 = Conv2d(c, c, 1, name='spatial_attn_add2')

    @staticmethod
    def _pool_pair(x):
        return tf.concat([max_pool_torch(x, 3, 2, 1), avg_pool_torch(x, 3, 2, 1)], -1)

    def link_reduced_chains(self):
        """spatial_attn_add1 - LeakyReLU - spatial_attn_add2 may stay bfloat16."""
        return link_reduced(self.spatial_attn_add1, (), self.spatial_attn_add2)

    def call(self, aligned_feat):
        shape = tf.shape(aligned_feat)
        b, h, w = shape[0], shape[2], shape[3]
        t, c = self.num_frame, self.num_feat
        # temporal attention
        embedding_ref = self.temporal_attn1(aligned_feat[:, self.center_frame_idx])
        embedding = self.temporal_attn2(tf.reshape(aligned_feat, [-1, h, w, c]))
        embedding = tf.reshape(embedding, [b, t, h, w, c])
        corr = tf.reduce_sum(embedding * embedding_ref[:, None], -1, keepdims=True)  # [b,t,h,w,1]
        weighted = aligned_feat * tf.sigmoid(corr)
        # (t, c) channel order, as PyTorch's view(b, t*c, h, w)
        weighted = tf.reshape(tf.transpose(weighted, [0, 2, 3, 1, 4]), [b, h, w, t * c])

        feat = leaky_relu(self.feat_fusion(weighted))

        # spatial attention
        attn = leaky_relu(self.spatial_attn1(weighted))
        attn = leaky_relu(self.spatial_attn2(self._pool_pair(attn)))
        attn_level = leaky_relu(self.spatial_attn_l1(attn))
        attn_level = leaky_relu(self.spatial_attn_l2(self._pool_pair(attn_level)))
        attn_level = upsample_bilinear(leaky_relu(self.spatial_attn_l3(attn_level)), 2)

        attn = leaky_relu(self.spatial_attn3(attn)) + attn_level
        attn = upsample_bilinear(leaky_relu(self.spatial_attn4(attn)), 2)
        attn = self.spatial_attn5(attn)
        attn_add = self.spatial_attn_add2(leaky_relu(self.spatial_attn_add1(attn)))
        return feat * tf.sigmoid(attn) * 2 + attn_add

    def get_config(self):
        cfg = super().get_config()
        cfg.update(num_feat=self.num_feat, num_frame=self.num_frame,
                   center_frame_idx=self.center_frame_idx)
        return cfg


class PredeblurModule(keras.layers.Layer):
    """Pre-deblurring: a small residual pyramid run on every frame before feature extraction.

    With ``hr_in`` two stride-2 convs first bring the HR input to LR size.
    ``call(x)``: ``[N, H, W, num_in_ch]`` -> ``[N, H/s, W/s, num_feat]`` (s = 4 if hr_in else 1).
    """

    def __init__(self, num_in_ch=3, num_feat=64, hr_in=False, **kwargs):
        super().__init__(**kwargs)
        self.num_in_ch, self.num_feat, self.hr_in = num_in_ch, num_feat, hr_in
        c = num_feat
        self.conv_first = Conv2d(num_in_ch, c, 3, 1, 1, name='conv_first')
        if hr_in:
            self.stride_conv_hr1 = Conv2d(c, c, 3, 2, 1, name='stride_conv_hr1')
            self.stride_conv_hr2 = Conv2d(c, c, 3, 2, 1, name='stride_conv_hr2')
        self.stride_conv_l2 = Conv2d(c, c, 3, 2, 1, name='stride_conv_l2')
        self.stride_conv_l3 = Conv2d(c, c, 3, 2, 1, name='stride_conv_l3')
        self.resblock_l3 = ResidualBlockNoBN(c, name='resblock_l3')
        self.resblock_l2_1 = ResidualBlockNoBN(c, name='resblock_l2_1')
        self.resblock_l2_2 = ResidualBlockNoBN(c, name='resblock_l2_2')
        self.resblock_l1 = [ResidualBlockNoBN(c, name=f'resblock_l1_{i}') for i in range(5)]

    def call(self, x):
        feat_l1 = leaky_relu(self.conv_first(x))
        if self.hr_in:
            feat_l1 = leaky_relu(self.stride_conv_hr1(feat_l1))
            feat_l1 = leaky_relu(self.stride_conv_hr2(feat_l1))
        feat_l2 = leaky_relu(self.stride_conv_l2(feat_l1))
        feat_l3 = leaky_relu(self.stride_conv_l3(feat_l2))

        feat_l3 = upsample_bilinear(self.resblock_l3(feat_l3), 2)
        feat_l2 = self.resblock_l2_1(feat_l2) + feat_l3
        feat_l2 = upsample_bilinear(self.resblock_l2_2(feat_l2), 2)
        for block in self.resblock_l1[:2]:
            feat_l1 = block(feat_l1)
        feat_l1 = feat_l1 + feat_l2
        for block in self.resblock_l1[2:]:
            feat_l1 = block(feat_l1)
        return feat_l1

    def get_config(self):
        cfg = super().get_config()
        cfg.update(num_in_ch=self.num_in_ch, num_feat=self.num_feat, hr_in=self.hr_in)
        return cfg
