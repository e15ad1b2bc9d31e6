"""RVRT Light (mindspore-lab/mindediting ``rvrt_light.py``, ``configs/rvrt_light/config.yaml``):
RVRT with 3x3 local attention over the previous clip instead of the guided deformable attention
(no SpyNet) and windows without relative position bias; loads mindediting's MindSpore ``.ckpt``.
"""
from yacs.config import CfgNode as CN

from ascendvsr.zoo import ModelEntry, register

NODE = CN()
NODE.num_frame = 14             # frames per call (training / prediction clip), a multiple of
                                # clip_size; the seed tests Vimeo-90K septuplets mirrored to 14
NODE.clip_size = 2              # frames per clip of the recurrence (mindediting: 2)
NODE.window_size = [2, 8, 8]    # Swin window (frames, h, w) of the propagation backbones
NODE.num_blocks = [1, 2, 1]     # RSTBs in feat_extract, each backbone, reconstruction
NODE.depths = [2, 2, 2]         # Swin layers per RSTB
NODE.embed_dims = [144, 144, 144]  # feature channels
NODE.num_heads = [6, 6, 6]      # Swin heads
NODE.mlp_ratio = 2.0            # Swin MLP width / channels
NODE.inputconv_groups = [1, 1, 1, 1, 1, 1]  # groups of the RSTB input convs (VSR: all 1)
NODE.attention_heads = 12       # heads of the 3x3 local attention (over its 2C projections)
NODE.attention_window = [3, 3]  # local attention window (taps per frame)
NODE.relative_position_bias = False  # Swin relative position bias (seed config: off)
NODE.approximate_gelu = True    # tanh GELU, as MindSpore's nn.GELU() (False: exact erf)
NODE.norm_eps = 1e-7            # LayerNorm epsilon (MindSpore default 1e-7; PyTorch 1e-5)
NODE.jit_compile = False        # XLA-compile the attention op (export always uses a plain graph)
NODE.fix_iter = 0               # read by the RVRT task; no SpyNet here, so nothing is frozen
NODE.fix_lr_mul = 1.0           # read by the RVRT task; no SpyNet parameter group here
NODE.test_frame_overlap = 0     # frames shared by consecutive prediction clips (seed tiling: 0)
NODE.mirror_sequence = False    # Vimeo-90K: train on T/2 frames + their reverse; test on the
                                # septuplet + its reverse, frame i = mean(out[i], out[2n-1-i])

register(ModelEntry(
    name='RVRT-Light',
    builder='ascendvsr.models.rvrt_light:build_rvrt_light',
    task='ascendvsr.tasks.rvrt_light:RVRTLightTask',
    converter='ascendvsr.convert.rvrt_light:load_rvrt_light_weights',
    config={'rvrt_light': NODE},
    tiny=('rvrt_light.num_frame=4', 'rvrt_light.window_size=[2,4,4]',
          'rvrt_light.num_blocks=[1,1,1]', 'rvrt_light.depths=[1,1,1]',
          'rvrt_light.embed_dims=[12,12,12]', 'rvrt_light.num_heads=[2,2,2]',
          'rvrt_light.attention_heads=2'),
    description='RVRT Light video super-resolution x4 (clips of 2 frames, 3x3 local attention, '
                'no SpyNet; mindediting MindSpore weights)'))
