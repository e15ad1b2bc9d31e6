"""EfficientSCI: densely connected network with space-time factorization for video SCI.

Wang, Zhang, Yuan, Fang, Yuan, Wang, "EfficientSCI: Densely Connected Network with Space-time
Factorization for Large-scale Video Snapshot Compressive Imaging", CVPR 2023; official code
ucaswangls/EfficientSCI (``cacti/models/efficientsci.py``, class ``EfficientSCI(in_ch, units,
group_num, color_ch)``). Same layers, activations (LeakyReLU 0.01), attention scale and weight
names (``fem.0.weight``, ``resdnet_list.3.cformer_list.1.tsab.qkv.weight``, ``up_conv.bias``,
``vrm.4.weight`` ...), so official checkpoints load through ``ascendvsr.convert.efficientsci``.
Blocks: :mod:`ascendvsr.layers.efficientsci_blocks` (and its ``factory`` hook, through which
Q-SCI substitutes fake-quant layers; the FEM/VRM here use it too).

Data flow (channels-last; ``B`` = frames per measurement, ``C = 4 in_ch``)::

    meas_re [N, H, W]        normalised measurement  y / Phi_s  (Phi_s = sum_t mask_t, 0 -> 1)
    x_in    [N, B, H, W, 1]  meas_re + mask * meas_re  (official x.unsqueeze(1))
    fem     [N, B, H/2, W/2, C]   Conv3d (3,7,7) 1->C/4, 3^3 C/4->C/2, 3^3 stride (1,2,2)
                                  C/2->C (padding 1 on both sides), LeakyReLU after each
    units   [N, B, H/2, W/2, C]   ``units`` ResDNet blocks of ``group_num`` CFormer groups
    up_conv [N, B, H/2, W/2, 2C]  Conv3d 1x1x1
    shuffle [N, B, H, W, C/2]     nn.PixelShuffle(2) per frame (PyTorch channel order c*4+i*2+j)
    vrm     [N, B, H, W, color]   Conv3d 3^3 C/2->C/2, 1^3 ->C/4, 3^3 ->color_ch
    output  [N, H, W, B]     frames last (the SCI task's layout; colour [N, H, W, 3, B])

H and W must be even (the stride-2 stage halves them and the shuffle doubles them back). The
network itself is frame-count agnostic, but a model is configured for ``compress_ratio`` frames
(``sci.compression_ratio``) and refuses masks of another count.

Colour (``color_ch=3``, official ``bayer_init``): the input is the Bayer (RGGB) measurement; the
official per-plane normalisation gathers the four Bayer planes, computes ``y/Phi_s`` and
``Phi * meas_re`` per plane and scatters them back to the same pixels -- element-wise, so it
equals the grayscale rule; the VRM then returns 3 channels (output ``[N, H, W, 3, B]``).

Loss of the official training (``tools/train.py``): ``sqrt(MSELoss(out, gt))``, the task's
``efficientsci.rmse_loss`` (:class:`ascendvsr.tasks.efficientsci.EfficientSciTask`).
"""
import keras
import tensorflow as tf

from ascendcv.layers.sampling import pixel_shuffle
from ascendvsr.layers.efficientsci_blocks import FLOAT_LAYERS, ResDNetBlock, TorchSequential

# (in_ch, units, group_num) of the paper's sizes (Table 1: 0.95 / 3.78 / 8.82 / 12.39 M)
SIZES = {'T': (16, 8, 2), 'S': (32, 8, 2), 'B': (64, 8, 4), 'L': (64, 12, 4)}


class EfficientSCI(keras.Model):
    """EfficientSCI (official ``EfficientSCI(in_ch, units, group_num, color_ch)``).

    Args:
        in_ch (int): FEM width; the ResDNet width is ``C = 4 in_ch`` (official default 64).
        units (int): ResDNet blocks (official default 8).
        group_num (int): CFormer groups per ResDNet block; ``C / group_num`` must be divisible
            by 8 (4 heads of half width) (official default 4).
        color_ch (int): 1 (grayscale) or 3 (Bayer measurement -> RGB frames).
        compress_ratio (int): frames per measurement ``B`` (``sci.compression_ratio``).
        factory: :class:`ascendvsr.layers.efficientsci_blocks.LayerFactory` making every conv /
            linear / attention (default float layers; Q-SCI passes fake-quant ones).
        jit_compile (bool): compile :meth:`reconstruct`'s graph with XLA (the serve path).

    Call: ``model((meas_re, mask), training)`` with ``meas_re`` ``[N, H, W]`` (``meas / mask_s``)
    and ``mask`` ``[H, W, B]`` or ``[N, H, W, B]``; returns ``[N, H, W, B]`` (colour
    ``[N, H, W, 3, B]``).
    """

    def __init__(self, in_ch=64, units=8, group_num=4, color_ch=1, compress_ratio=8,
                 factory=None, jit_compile=False, **kwargs):
        super().__init__(**kwargs)
        in_ch, units, group_num = int(in_ch), int(units), int(group_num)
        color_ch, cr = int(color_ch), int(compress_ratio)
        if in_ch < 1 or units < 0 or group_num < 1 or (4 * in_ch) % group_num \
                or (4 * in_ch // group_num) % 8:
            raise ValueError(f'EfficientSCI needs in_ch >= 1, units >= 0 and group_num dividing '
                             f'4 in_ch = {4 * in_ch} into groups of a multiple of 8 channels '
                             f'(4 heads of half width); got in_ch={in_ch}, units={units}, '
                             f'group_num={group_num} (efficientsci.*)')
        if color_ch not in (1, 3):
            raise ValueError(f'EfficientSCI color_ch must be 1 or 3; got {color_ch}')
        if cr < 1:
            raise ValueError(f'compress_ratio must be >= 1; got {cr} (sci.compression_ratio)')
        self.in_ch, self.units, self.group_num, self.color_ch = in_ch, units, group_num, color_ch
        self.compress_ratio, self.jit_compile = cr, bool(jit_compile)
        self.arch = dict(in_ch=in_ch, units=units, group_num=group_num, color_ch=color_ch)
        self.color = color_ch == 3
        factory = self.factory = factory or FLOAT_LAYERS
        self.build_layers(factory)
        self.built = True  # every weight exists: checkpoints load before a call

    # ------------------------------------------------------------------ layers
    def build_layers(self, factory):
        """Create ``fem``, ``up_conv``, ``vrm`` and ``resdnet_list`` (official order)."""
        c, conv, act = self.in_ch, factory.conv3d, factory.leaky_relu
        self.fem = TorchSequential([
            conv(1, c, (3, 7, 7), 1, (1, 3, 3), role='fem', name='0'), act(),
            conv(c, 2 * c, 3, 1, 1, role='fem', name='2'), act(),
            conv(2 * c, 4 * c, 3, (1, 2, 2), 1, role='fem', name='4'), act()],
            **factory.layer_kwargs('fem'))
        self.up_conv = conv(4 * c, 8 * c, 1, 1, 0, role='up', name='up_conv')
        self.vrm = TorchSequential([
            conv(2 * c, 2 * c, 3, 1, 1, role='vrm', name='0'), act(),
            conv(2 * c, c, 1, 1, 0, role='vrm', name='2'), act(),
            conv(c, self.color_ch, 3, 1, 1, role='vrm', name='4')], **factory.layer_kwargs('vrm'))
        self.resdnet_list = [ResDNetBlock(4 * c, self.group_num, factory,
                                          **factory.layer_kwargs(f'resdnet_{i}'))
                             for i in range(self.units)]

    # ------------------------------------------------------------------ input
    @staticmethod
    def _split_inputs(inputs):
        if isinstance(inputs, dict):
            return inputs['meas_re'], inputs['mask']
        if isinstance(inputs, (tuple, list)) and len(inputs) == 2:
            return inputs[0], inputs[1]
        raise ValueError('EfficientSCI takes (meas_re [N, H, W], mask [H, W, B] or '
                         '[N, H, W, B]); got ' + (f'{len(inputs)} inputs' if isinstance(
                             inputs, (tuple, list)) else type(inputs).__name__))

    def check_input(self, meas_re, mask):
        """Fail early, naming the shapes, when the inputs do not fit the model (static sizes)."""
        shape, mshape, b = meas_re.shape, mask.shape, self.compress_ratio
        if shape.rank != 3:
            raise ValueError(f'EfficientSCI expects the normalised measurement meas_re '
                             f'[N, H, W]; got shape {shape}')
        if mshape.rank not in (3, 4):
            raise ValueError(f'EfficientSCI mask must be [H, W, {b}] or [N, H, W, {b}]; got '
                             f'shape {mshape}')
        if mshape[-1] is not None and mshape[-1] != b:
            raise ValueError(f'the mask has {mshape[-1]} frames but this EfficientSCI is '
                             f'configured for {b} frames per measurement '
                             f'(sci.compression_ratio); mask shape {mshape}')
        for name, size, msize in (('height', shape[1], mshape[-3]),
                                  ('width', shape[2], mshape[-2])):
            if size is not None and msize is not None and size != msize:
                raise ValueError(f'EfficientSCI measurement {name} {size} does not match the '
                                 f'mask {name} {msize} (meas_re {shape}, mask {mshape})')
            if size is not None and size % 2:
                raise ValueError(f'EfficientSCI measurement {name} must be even (the stride-2 '
                                 f'feature extraction halves it, the pixel shuffle doubles it '
                                 f'back); got {size} (meas_re shape {shape})')

    def network_input(self, meas_re, mask):
        """The official ``x_in = meas_re + Phi * meas_re``, ``[N, B, H, W, 1]``."""
        dtype = self.compute_dtype
        meas_re = tf.cast(tf.convert_to_tensor(meas_re), dtype)
        mask = tf.cast(tf.convert_to_tensor(mask), dtype)
        self.check_input(meas_re, mask)
        x = meas_re[..., None] + mask * meas_re[..., None]    # [N, H, W, B]
        return tf.transpose(x, [0, 3, 1, 2])[..., None]

    # ------------------------------------------------------------------ forward
    def head(self, feat, record=None):
        """``up_conv`` -> PixelShuffle(2) per frame -> ``vrm``: ``[N, B, H/2, W/2, C]`` ->
        ``[N, B, H, W, color_ch]``."""
        up = self.up_conv(feat)
        vrm_in = pixel_shuffle(up, 2)                  # per frame, PyTorch channel order
        if record is not None:
            record.update(up_conv_out=up, vrm_in=vrm_in)
        return self.vrm(vrm_in)

    def output_layout(self, out):
        """``[N, B, H, W, color_ch]`` -> frames last ``[N, H, W, B]`` (colour
        ``[N, H, W, 3, B]``)."""
        if self.color:
            return tf.transpose(out, [0, 2, 3, 4, 1])
        return tf.transpose(out[..., 0], [0, 2, 3, 1])

    def forward_features(self, inputs, units_detail=(0,)):
        """The forward pass returning the named intermediates (NDHWC): ``x_in``, ``fem_out``,
        ``unit<u>_out``, ``up_conv_out``, ``vrm_in``, ``out_raw`` ``[N, B, H, W, color_ch]``,
        ``output`` (frames last); for units in ``units_detail`` also ``u<u>_cf<g>_in``,
        ``u<u>_cf<g>_{scb_out, tsab_out, attn, out}`` and ``u<u>_last_conv_out``."""
        x = self.network_input(*self._split_inputs(inputs))
        rec = {'x_in': x}
        feat = rec['fem_out'] = self.fem(x)
        for u, unit in enumerate(self.resdnet_list):
            detail = {} if u in units_detail else None
            feat = rec[f'unit{u}_out'] = unit.run(feat, detail)
            rec.update({f'u{u}_{k}': v for k, v in (detail or {}).items()})
        out = rec['out_raw'] = self.head(feat, rec)
        rec['output'] = self.output_layout(out)
        return rec

    def call(self, inputs, training=False):
        feat = self.fem(self.network_input(*self._split_inputs(inputs)))
        for unit in self.resdnet_list:
            feat = unit(feat)
        return self.output_layout(self.head(feat))

    # ------------------------------------------------------------------ interface
    def get_config(self):
        return dict(in_ch=self.in_ch, units=self.units, group_num=self.group_num,
                    color_ch=self.color_ch, compress_ratio=self.compress_ratio,
                    jit_compile=self.jit_compile, name=self.name)


def efficientsci_kwargs(cfg):
    """Constructor arguments from ``cfg.efficientsci`` and ``sci.compression_ratio``."""
    e = cfg.efficientsci
    return dict(in_ch=e.in_ch, units=e.units, group_num=e.group_num, color_ch=e.color_ch,
                compress_ratio=int(cfg.sci.compression_ratio), jit_compile=e.jit_compile)


def build_efficientsci(cfg, **overrides):
    """Build EfficientSCI from the config (:func:`efficientsci_kwargs`; ``overrides`` win)."""
    kwargs = efficientsci_kwargs(cfg)
    kwargs.update(overrides)
    return EfficientSCI(name='EfficientSCI', **kwargs)
