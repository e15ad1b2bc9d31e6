"""RVRT (Liang et al., NeurIPS 2022): recurrent video restoration transformer with guided
deformable attention, video SR x4 (official JingyunLiang/RVRT ``models/network_rvrt.py``)."""
from yacs.config import CfgNode as CN

from ascendvsr.zoo import ModelEntry, register

NODE = CN()
NODE.num_frame = 30             # frames per call: training clip length and prediction clip
                                # (official: REDS 30, Vimeo-90K 14; a multiple of clip_size)
NODE.clip_size = 2              # frames per clip of the recurrence (every official model: 2)
NODE.window_size = [2, 8, 8]    # Swin window (frames, h, w) of the propagation backbones
NODE.num_blocks = [1, 2, 1]     # RSTBs in feat_extract, each backbone, reconstruction
NODE.depths = [2, 2, 2]         # Swin layers per RSTB
NODE.embed_dims = [144, 144, 144]  # feature channels
NODE.num_heads = [6, 6, 6]      # Swin heads
NODE.mlp_ratio = 2.0            # Swin MLP width / channels
NODE.inputconv_groups = [1, 1, 1, 1, 1, 1]  # groups of the RSTB input convs (VSR: all 1)
NODE.deformable_groups = 12     # guided deformable attention offset groups
NODE.attention_heads = 12       # guided deformable attention heads
NODE.attention_window = [3, 3]  # attention window (taps per frame)
NODE.max_residue_magnitude = 10.0  # bound of the learned offset residue (10 tanh)
NODE.attention = 'guided'       # guided (RVRT: SpyNet + GDA) | local (RVRT Light: 3x3 attention)
NODE.relative_position_bias = True  # Swin relative position bias (RVRT Light: False)
NODE.approximate_gelu = False   # tanh GELU (MindSpore weights) instead of exact erf (PyTorch)
NODE.norm_eps = 1e-5            # LayerNorm epsilon (PyTorch 1e-5, MindSpore 1e-7)
NODE.jit_compile = False        # XLA-compile the attention op (export always uses a plain graph)
NODE.fix_iter = 30000           # SpyNet frozen for steps 1..fix_iter-1 (KAIR fix_iter); 0 = off
NODE.fix_lr_mul = 0.25          # SpyNet learning-rate multiplier (KAIR fix_lr_mul)
NODE.test_frame_overlap = 2     # frames shared by consecutive prediction clips (official 2)
NODE.mirror_sequence = False    # Vimeo-90K: train on T/2 frames + their reverse; test on the
                                # septuplet extended by its reverse (official 7 -> 14 frames)

register(ModelEntry(
    name='RVRT',
    builder='ascendvsr.models.rvrt:build_rvrt',
    task='ascendvsr.tasks.rvrt:RVRTTask',
    converter='ascendvsr.convert.rvrt:load_rvrt_weights',
    config={'rvrt': NODE},
    # one clip per call keeps the contract test's graphs small (the attention runs from the
    # second clip on; tests/models/test_rvrt.py covers it)
    tiny=('rvrt.num_frame=2', 'rvrt.window_size=[2,4,4]', 'rvrt.num_blocks=[1,1,1]',
          'rvrt.depths=[2,2,2]', 'rvrt.embed_dims=[12,12,12]', 'rvrt.num_heads=[2,2,2]',
          'rvrt.deformable_groups=2', 'rvrt.attention_heads=2', 'rvrt.fix_iter=0',
          'rvrt.test_frame_overlap=0'),
    description='RVRT video super-resolution x4 (clips of 2 frames, guided deformable '
                'attention, SpyNet flows)'))
