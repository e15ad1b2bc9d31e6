"""Q-SCI (Cao et al., ECCV 2024): LSQ low-bit (8/4/3/2-bit) quantization of EfficientSCI."""
from yacs.config import CfgNode as CN

from ascendvsr.zoo import ModelEntry, register

NODE = CN()
NODE.in_ch = 32           # FEM width (official quantized_sci default: the EfficientSCI-S size)
NODE.units = 8            # ResDNet units
NODE.group_num = 2        # CFormer groups per unit (4 in_ch / group_num divisible by 8)
NODE.color_ch = 1         # 1 grayscale | 3 Bayer measurement -> RGB frames
NODE.bit_depth = 8        # 8 (EfficientSCI tree) | 4 / 3 / 2 (parallel 8-bit FEM/VRM branches)
NODE.quantize = True      # False = every quantizer off (official alpha=None path)
NODE.init_from = ''       # full-precision EfficientSCI (.pth / our TF checkpoint) to start QAT from
NODE.rmse_loss = True     # official tools/train.py: loss = sqrt(MSELoss); False = solver.loss
NODE.jit_compile = False  # evaluation/inference graph compiled with XLA

register(ModelEntry(
    name='Q-SCI',
    builder='ascendvsr.models.qsci:build_qsci',
    task='ascendvsr.tasks.qsci:QSciTask',
    converter='ascendvsr.convert.qsci:load_qsci_weights',
    config={'qsci': NODE},
    tiny=('qsci.in_ch=2', 'qsci.units=1', 'qsci.group_num=1', 'qsci.bit_depth=4'),
    description='Q-SCI: low-bit quantized EfficientSCI for video snapshot compressive imaging'))
