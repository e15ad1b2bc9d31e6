"""EDVR (Wang et al., CVPRW 2019): PCD alignment with DCNv2, TSA fusion (BasicSR ``EDVR``)."""
from yacs.config import CfgNode as CN

from ascendvsr.zoo import ModelEntry, register

NODE = CN()
NODE.num_in_ch = 3              # input image channels
NODE.num_out_ch = 3             # output image channels
NODE.num_feat = 64              # feature channels (EDVR-M 64, EDVR-L 128)
NODE.num_frame = 5              # input frames per output frame (EDVR uses 5; 7 on Vimeo90K)
NODE.deformable_groups = 8      # DCN offset groups in PCD alignment
NODE.num_extract_block = 5      # residual blocks in feature extraction
NODE.num_reconstruct_block = 10  # residual blocks in reconstruction (EDVR-L: 40)
NODE.center_frame_idx = -1      # reference frame index; -1 = num_frame // 2
NODE.hr_in = False              # input already at output resolution (deblurring tracks)
NODE.with_predeblur = False     # pre-deblur module (deblur tracks)
NODE.with_tsa = True            # TSA fusion; False = 1x1 conv fusion
NODE.tsa_iter = 50000           # first N steps train only the fusion (TSA) module (BasicSR); 0 = off
NODE.impl = 'tf'                # deformable conv implementation: 'tf' (core ops) | 'npu'
NODE.dcn_jit_compile = True     # XLA-compile the 'tf' deformable convs (off when exporting)

register(ModelEntry(
    name='EDVR',
    builder='ascendvsr.models.edvr:build_edvr',
    task='ascendvsr.tasks.edvr:EDVRTask',
    converter='ascendvsr.convert.edvr:load_edvr_weights',
    config={'edvr': NODE},
    tiny=('edvr.num_frame=3', 'edvr.num_feat=8', 'edvr.deformable_groups=2',
          'edvr.num_extract_block=1', 'edvr.num_reconstruct_block=1', 'edvr.tsa_iter=0',
          'edvr.dcn_jit_compile=False'),
    description='EDVR video super-resolution / restoration (sliding window -> centre frame)'))
