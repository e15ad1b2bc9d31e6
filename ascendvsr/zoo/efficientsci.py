"""EfficientSCI (Wang et al., CVPR 2023): video SCI with ResDNet units of CFormer blocks."""
from yacs.config import CfgNode as CN

from ascendvsr.zoo import ModelEntry, register

NODE = CN()
NODE.in_ch = 64          # FEM width; ResDNet width 4 in_ch (official EfficientSCI(in_ch=...))
NODE.units = 8           # ResDNet units
NODE.group_num = 4       # CFormer groups per unit (4 in_ch / group_num divisible by 8)
NODE.color_ch = 1        # 1 grayscale | 3 Bayer measurement -> RGB frames (official color_ch)
NODE.rmse_loss = True    # official tools/train.py loss sqrt(MSELoss(out, gt)); False = solver.loss
NODE.jit_compile = False  # XLA for the eval/inference graph (slower here: efficientsci_speed.py)

register(ModelEntry(
    name='EfficientSCI',
    builder='ascendvsr.models.efficientsci:build_efficientsci',
    task='ascendvsr.tasks.efficientsci:EfficientSciTask',
    converter='ascendvsr.convert.efficientsci:load_efficientsci_weights',
    config={'efficientsci': NODE},
    tiny=('efficientsci.in_ch=4', 'efficientsci.units=1', 'efficientsci.group_num=2'),
    description='EfficientSCI: ResDNet of CFormer blocks for video snapshot compressive imaging'))
