"""RevSCI-net (Cheng et al., CVPR 2021): multi-group reversible 3D CNN for video SCI."""
from yacs.config import CfgNode as CN

from ascendvsr.zoo import ModelEntry, register

NODE = CN()
NODE.variant = 're_3dcnn'       # official class: re_3dcnn (rev_3d_part1 blocks) | re_3dcnn1 (rev_3d_part f1/g1) | color
NODE.num_block = 18             # reversible blocks (official --num_block)
NODE.num_group = 2              # channel groups per re_3dcnn block, divides 64 (official --num_group)
NODE.mask_size = [256, 256]     # [H, W] of the sensing mask = of the measurement (official --size)
NODE.reversible = True          # training backward recomputes block activations (official --mode reverse)

register(ModelEntry(
    name='RevSCI',
    builder='ascendvsr.models.revsci:build_revsci',
    task='ascendvsr.tasks.sci:RevSciTask',
    converter='ascendvsr.convert.revsci:load_revsci_weights',
    config={'revsci': NODE},
    tiny=('revsci.num_block=2', 'revsci.mask_size=[32,32]'),
    description='RevSCI reversible 3D CNN for video snapshot compressive imaging'))
