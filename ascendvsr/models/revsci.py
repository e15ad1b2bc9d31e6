"""RevSCI-net: memory-efficient reversible 3-D CNN for video snapshot compressive imaging.

Cheng et al., "Memory-Efficient Network for Large-scale Video Compressive Sensing", CVPR 2021;
official code BoChenGroup/RevSCI-net (``models.py``: ``re_3dcnn`` / ``re_3dcnn1``, ``my_tools.py``:
``rev_3d_part1``, ``f_g_layer``, ``rev_3d_part``). Same layers, activations (every LeakyReLU has
PyTorch's default slope 0.01) and weight names (``conv1.0.weight``,
``layers.3.f.1.nn_layer.2.bias``, ``layers.3.f1.0.weight`` ...), so official checkpoints load
through ``ascendvsr.convert.revsci``.

Data flow (channels-last; ``cr`` = compression ratio ``B`` = 8 frames per measurement)::

    meas_re [N, H, W]           the normalised measurement  meas / sum_t(mask_t)  (zeros -> 1)
    net_in  [N, cr, H, W, 1]    meas_re + mask * meas_re, frames moved to the depth axis
    conv1   [N, cr, H/2, W/2, 64]   Conv3d 5^3 / 3^3 / 1^3 / 3^3 stride (1, 2, 2), LeakyReLUs
    layers  [N, cr, H/2, W/2, 64]   num_block reversible blocks
    conv2   [N, cr, H, W, 1]    ConvTranspose3d (1, 3, 3) stride (1, 2, 2), Conv3d 3^3 / 1^3 / 3^3
    output  [N, cr, H, W]       the reconstructed frames (no clipping, as the official test)

The sensing mask: every SCI use passes it with the measurement, ``model((meas_re, mask))``
with ``mask`` ``[H, W, cr]`` or ``[N, H, W, cr]`` (training samples, each benchmark file's own
mask, the frozen graph's ``mask`` input). The model also keeps a *stored* mask, as the official
code (``net.mask``, which the whole-module checkpoints carry): a non-trainable weight ``mask`` of
shape ``[H, W, cr]`` (PyTorch name ``mask``, layout ``(cr, H, W)``), the default of a call
without one (``model(meas_re)``). It comes from the checkpoint (an official whole-module pickle
through the converter, or a TF checkpoint), from the builder's ``mask`` array or from
:meth:`RevSCI.set_mask`; the model never reads a file (masks are read by
:func:`ascendcv.dataloader.sci.load_mask`). Until it is set it is all zeros and an eager call
without a mask is refused.

Colour (``variant='color'``, the official "color model", Bayer RGGB measurements of RGB video,
official setting B = 24 at 1080x1920)::

    meas_re [N, H, W]            normalised Bayer measurement  sum_t mask_t * raw_t / mask_s
    net_in  [N, cr, H, W, 2]     channel 0 = mask, channel 1 = meas_re (both broadcast over cr)
    conv1   [N, cr, H/2, W/2, 64]   Conv3d 5^3 (2->16) / 3^3 (16) / 1^3 (32) / (1,3,3) stride (1,2,2)
    layers  [N, cr, H/2, W/2, 64]   num_block rev_3d_part(32) blocks
    conv2   [N, cr, H, W, 3]     ConvTranspose3d (1,3,3) s (1,2,2), Conv3d 3^3 (16) / 1^3 / 3^3 (3)
    output  [N, cr, H, W, 3]     RGB frames (official layout (N, 3, cr, H, W))

The official colour module also has ``fuse_r`` (``Conv2d(1, 8, 3, p1)``), which its forward
never uses; it is kept (and loaded) so official checkpoints convert key for key.

The measurement physics (normalisation ``meas / mask_s``) is :mod:`ascendcv.utils.sci_physics`.
The SCI task's reconstruction convention (raw ``meas`` ``[N, H, W]`` -> frames-last video
``[N, H, W, cr]``) is :meth:`RevSCI.reconstruct`.

Training: ``model(meas_re, training=True)`` with ``reversible=True`` (default) backpropagates
through the blocks by recomputation (:mod:`ascendcv.layers.reversible`): peak memory does not
grow with ``num_block``. Loss of the official code: ``MSELoss`` (mean) between the output and the
ground-truth frames ``[N, cr, H, W]``.
"""
import keras
import numpy as np
import tensorflow as tf

from ascendcv.layers.conv import Conv2d
from ascendcv.layers.conv3d import Conv3d, ConvTranspose3d
from ascendcv.layers.precision import link_sequence
from ascendcv.layers.reversible import AdditiveCoupling, ReversibleSequence
from ascendcv.layers.torch_compat import torch_state_variables
from ascendcv.utils.sci_physics import normalize_measurement_tf

NEGATIVE_SLOPE = 0.01  # nn.LeakyReLU() default, used everywhere in RevSCI-net
VARIANTS = {'re_3dcnn': 'rev_3d_part1 blocks (num_group chunks, f.<i>.nn_layer)',
            're_3dcnn1': 'rev_3d_part blocks (two halves, f1/g1)',
            'color': 'colour model ("color model/models.py" re_3dcnn1): RGGB Bayer measurement '
                     '-> RGB frames, rev_3d_part blocks'}
COLOR_CHANNELS = 3
NUM_FEAT = 64  # channels between conv1 and conv2 (fixed in the official code)


def _lrelu():
    return keras.layers.LeakyReLU(negative_slope=NEGATIVE_SLOPE)


def run_sequential(layers, x):
    """Apply ``layers`` in order, like ``nn.Sequential`` (list indices = PyTorch indices)."""
    for layer in layers:
        x = layer(x)
    return x


def _conv_pair(ch):
    """``Conv3d(ch, ch, 3, p1) - LeakyReLU - Conv3d(ch, ch, 3, p1)`` (indices 0 and 2)."""
    return [Conv3d(ch, ch, 3, 1, 1, name='0'), _lrelu(), Conv3d(ch, ch, 3, 1, 1, name='2')]


class FGLayer(keras.layers.Layer):
    """Official ``f_g_layer(ch)``: ``nn_layer = Conv3d 3^3 - LeakyReLU - Conv3d 3^3``.

    Input and output ``[N, D, H, W, ch]``; weights ``nn_layer.{0,2}.{weight,bias}``.
    """

    def __init__(self, ch, **kwargs):
        super().__init__(**kwargs)
        self.ch = int(ch)
        self.nn_layer = _conv_pair(self.ch)
        self.built = True  # weights exist from construction

    def link_reduced_chains(self):
        """conv - LeakyReLU - conv may stay bfloat16 (:mod:`ascendcv.layers.precision`)."""
        return link_sequence(self.nn_layer)

    def call(self, x):
        return run_sequential(self.nn_layer, x)

    def get_config(self):
        return dict(super().get_config(), ch=self.ch)


class Rev3DPart1(AdditiveCoupling):
    """Official ``rev_3d_part1(in_ch, n)``: reversible block over ``n`` channel groups.

    ``x_0 .. x_{n-1} = chunk(x, n)``; ``y_0 = x_{n-1} + f_0(x_0)``,
    ``y_i = x_{n-1-i} + f_i(y_{i-1})``; output ``concat(y_0 .. y_{n-1})``. Weights
    ``f.<i>.nn_layer.{0,2}.*``. Input/output ``[N, D, H, W, in_ch]``; ``in_ch % n == 0``, n >= 2.
    """

    def __init__(self, in_ch, n, **kwargs):
        in_ch, n = int(in_ch), int(n)
        if n < 2 or in_ch % n:
            raise ValueError(f'rev_3d_part1 needs num_group >= 2 dividing {in_ch} channels; '
                             f'got num_group={n}')
        super().__init__(addends=[n - 1 - i for i in range(n)], seed=0, axis=-1, **kwargs)
        self.in_ch, self.n = in_ch, n
        self.f = [FGLayer(in_ch // n, name=f'f_{i}') for i in range(n)]
        self.built = True

    def coupling_functions(self):
        return list(self.f)

    def get_config(self):
        cfg = super().get_config()
        for k in ('addends', 'seed', 'axis'):
            cfg.pop(k)
        return dict(cfg, in_ch=self.in_ch, n=self.n)


class Rev3DPart(AdditiveCoupling):
    """Official ``rev_3d_part(in_ch)``: ``x1, x2`` = channel halves, ``y1 = x1 + f1(x2)``,
    ``y2 = x2 + g1(y1)``, output ``concat(y1, y2)``.

    Weights ``f1.{0,2}.*`` and ``g1.{0,2}.*`` (each ``Conv3d(in_ch, in_ch, 3, p1) - LeakyReLU -
    Conv3d``). Input/output ``[N, D, H, W, 2 * in_ch]``.
    """

    def __init__(self, in_ch, **kwargs):
        super().__init__(addends=(0, 1), seed=1, axis=-1, **kwargs)
        self.in_ch = int(in_ch)
        self.f1 = _conv_pair(self.in_ch)
        self.g1 = _conv_pair(self.in_ch)
        self.built = True

    def coupling_functions(self):
        return [lambda x: run_sequential(self.f1, x), lambda x: run_sequential(self.g1, x)]

    def link_reduced_chains(self):
        """conv - LeakyReLU - conv of f1 and g1 may stay bfloat16."""
        return link_sequence(self.f1) + link_sequence(self.g1)

    def get_config(self):
        cfg = super().get_config()
        for k in ('addends', 'seed', 'axis'):
            cfg.pop(k)
        return dict(cfg, in_ch=self.in_ch)


def _bhw_to_hwb(m):
    """Official mask layout (cr, H, W) -> ours (H, W, cr)."""
    return np.transpose(m, (1, 2, 0))


class RevSCI(keras.Model):
    """RevSCI-net (official ``re_3dcnn`` / ``re_3dcnn1``).

    Args:
        variant (str): 're_3dcnn' (blocks ``rev_3d_part1(64, num_group)``, the paper's model),
            're_3dcnn1' (blocks ``rev_3d_part(32)`` with f1/g1; num_group unused) or 'color'
            (the colour model: Bayer measurement in, RGB frames out; rev_3d_part blocks).
        num_block (int): reversible blocks (official default 18).
        num_group (int): channel groups per 're_3dcnn' block (official default 2).
        compress_ratio (int): frames per measurement, the official ``B`` (8;
            ``sci.compression_ratio``).
        mask_size ((int, int)): ``[H, W]`` of the mask = of the measurement (official ``size``).
        reversible (bool): memory-saving recomputing backward in training calls; False = plain
            autograd (every block activation stored). Forward values are identical.
        jit_compile (bool): accepted for the runner's interface; unused (no XLA-only ops here).

    Call: ``model(meas_re, training)`` with ``meas_re`` ``[N, H, W]`` or ``[N, H, W, 1]``, or
    ``model((meas_re, mask))`` to use another mask ``[H, W, cr]`` / ``[N, H, W, cr]``.
    Returns ``[N, cr, H, W]`` (grayscale) or ``[N, cr, H, W, 3]`` (``variant='color'``, the
    input being a Bayer RGGB measurement).
    """

    def __init__(self, variant='re_3dcnn', num_block=18, num_group=2, compress_ratio=8,
                 mask_size=(256, 256), reversible=True, jit_compile=False, **kwargs):
        super().__init__(**kwargs)
        if variant not in VARIANTS:
            raise ValueError(f'unknown RevSCI variant {variant!r} (revsci.variant); '
                             f'choose one of {sorted(VARIANTS)}')
        num_block, num_group, cr = int(num_block), int(num_group), int(compress_ratio)
        h, w = (int(s) for s in mask_size)
        if num_block < 0 or cr < 1:
            raise ValueError(f'RevSCI needs num_block >= 0 and compress_ratio >= 1; got '
                             f'{num_block}, {cr}')
        if h <= 0 or w <= 0 or h % 2 or w % 2:
            raise ValueError(f'RevSCI mask_size must be positive and even (stride-2 encoder and '
                             f'x2 decoder); got {[h, w]} (revsci.mask_size)')
        self.arch = dict(variant=variant, num_block=num_block,
                         num_group=num_group if variant == 're_3dcnn' else None)
        self.color = variant == 'color'
        self.variant, self.num_block, self.num_group = variant, num_block, num_group
        self.compress_ratio, self.mask_size = cr, (h, w)
        self.reversible, self.jit_compile = bool(reversible), bool(jit_compile)

        if self.color:  # "color model/models.py": other widths, 2 input / 3 output channels
            self.conv1 = [Conv3d(2, 16, 5, 1, 2), _lrelu(), Conv3d(16, 16, 3, 1, 1), _lrelu(),
                          Conv3d(16, 32, 1, 1, 0), _lrelu(),
                          Conv3d(32, NUM_FEAT, (1, 3, 3), (1, 2, 2), (0, 1, 1)), _lrelu()]
            mid, out_ch = 16, COLOR_CHANNELS
        else:
            self.conv1 = [Conv3d(1, 16, 5, 1, 2), _lrelu(), Conv3d(16, 32, 3, 1, 1), _lrelu(),
                          Conv3d(32, 32, 1, 1, 0), _lrelu(),
                          Conv3d(32, NUM_FEAT, 3, (1, 2, 2), 1), _lrelu()]
            mid, out_ch = 32, 1
        self.conv2 = [ConvTranspose3d(NUM_FEAT, 32, (1, 3, 3), (1, 2, 2), (0, 1, 1), (0, 1, 1)),
                      _lrelu(), Conv3d(32, mid, 3, 1, 1), _lrelu(), Conv3d(mid, 16, 1, 1, 0),
                      _lrelu(), Conv3d(16, out_ch, 3, 1, 1)]
        if self.color:  # official fuse_r: in the state dict, unused by the forward pass
            self.fuse_r = [Conv2d(1, 8, 3, 1, 1)]
            self.fuse_r[0].trainable = False  # no gradient ever reaches it
        if variant == 're_3dcnn':
            blocks = [Rev3DPart1(NUM_FEAT, num_group, name=f'layers_{i}') for i in range(num_block)]
        else:
            blocks = [Rev3DPart(NUM_FEAT // 2, name=f'layers_{i}') for i in range(num_block)]
        # held privately: ``keras.Model.layers`` is taken; torch_weights() names them layers.<i>
        self._rev_layers = ReversibleSequence(blocks, name='layers')
        self.mask = self.add_weight(name='mask', shape=(h, w, cr), initializer='zeros',
                                    trainable=False)
        self.built = True  # every weight exists now: no symbolic build-by-call on first use

    def link_reduced_chains(self):
        """The encoder's and decoder's conv - LeakyReLU - conv steps may stay bfloat16 (the
        encoder's last output, the reversible blocks' residual stream, stays float32)."""
        return link_sequence(self.conv1) + link_sequence(self.conv2)

    # ------------------------------------------------------------------ weights
    def torch_weights(self):
        """``layers.<i>.*`` (the ModuleList) and ``mask`` (the official module attribute)."""
        out = dict(torch_state_variables(self._rev_layers, 'layers.'))
        out['mask'] = (self.mask, _bhw_to_hwb)
        return out

    @property
    def blocks(self):
        return self._rev_layers.blocks

    def set_mask(self, mask):
        """Store the sensing mask ``[H, W, cr]`` (an array, e.g. read by
        :func:`ascendcv.dataloader.sci.load_mask`)."""
        mask = np.asarray(mask, dtype=np.float32)
        expected = (*self.mask_size, self.compress_ratio)
        if mask.shape != expected:
            raise ValueError(f'mask of shape {mask.shape} does not fit this RevSCI, built for '
                             f'[H, W, cr] = {list(expected)} (revsci.mask_size, '
                             f'sci.compression_ratio)')
        self.mask.assign(mask)

    def has_mask(self):
        return bool(np.any(self.mask.numpy() != 0))

    def _check_stored_mask(self):
        """Refuse (when executing eagerly) a call that relies on a stored mask never set."""
        if tf.executing_eagerly() and not self.has_mask():
            raise ValueError('this RevSCI has no stored sensing mask (a state-dict checkpoint or '
                             'a model built without one): call it with (meas_re, mask), or store '
                             'one (a whole-module checkpoint, build_revsci(cfg, mask=...), '
                             'set_mask)')

    # ------------------------------------------------------------------ input
    def _split_inputs(self, inputs):
        if isinstance(inputs, dict):
            return inputs['meas_re'], inputs.get('mask')
        if isinstance(inputs, (tuple, list)):
            if len(inputs) != 2:
                raise ValueError(f'RevSCI takes meas_re or (meas_re, mask); '
                                 f'got {len(inputs)} inputs')
            return inputs[0], inputs[1]
        return inputs, None

    def check_input(self, meas_re, mask=None):
        """Fail early, naming the shapes, when the inputs do not fit the model."""
        shape = meas_re.shape
        if shape.rank not in (3, 4) or (shape.rank == 4 and shape[-1] not in (None, 1)):
            raise ValueError(f'RevSCI expects the normalised measurement meas_re [N, H, W] (or '
                             f'[N, H, W, 1]); got shape {shape}')
        h, w = shape[1], shape[2]
        if mask is None:
            mh, mw = self.mask_size
            where = f'the model mask is {self.mask_size[0]}x{self.mask_size[1]} (revsci.mask_size)'
        else:
            mshape = mask.shape
            if mshape.rank not in (3, 4) or mshape[-1] not in (None, self.compress_ratio):
                raise ValueError(f'RevSCI mask must be [H, W, {self.compress_ratio}] or '
                                 f'[N, H, W, {self.compress_ratio}]; got shape {mshape}')
            mh, mw = mshape[-3], mshape[-2]
            where = f'the given mask is {mh}x{mw}'
        for name, size, msize in (('height', h, mh), ('width', w, mw)):
            if size is not None and msize is not None and size != msize:
                raise ValueError(f'RevSCI measurement {name} {size} does not match the mask: '
                                 f'{where}; meas_re shape {shape}')
            if size is not None and size % 2:
                raise ValueError(f'RevSCI measurement {name} must be even; got {size} '
                                 f'(shape {shape})')

    def network_input(self, meas_re, mask=None):
        """The official forward's network input: ``meas_re + mask * meas_re`` ``[N, cr, H, W, 1]``
        (grayscale), or ``[mask, meas_re]`` stacked on channels ``[N, cr, H, W, 2]`` (colour)."""
        meas_re = tf.convert_to_tensor(meas_re, tf.float32)
        if mask is not None:
            mask = tf.convert_to_tensor(mask, tf.float32)
        self.check_input(meas_re, mask)
        if meas_re.shape.rank == 3:
            meas_re = meas_re[..., None]
        if mask is None:
            self._check_stored_mask()
            mask = self.mask
        if self.color:
            masks = mask + tf.zeros_like(meas_re)               # [N, H, W, cr]
            data = tf.stack([masks, meas_re + tf.zeros_like(masks)], axis=-1)
            return tf.transpose(data, [0, 3, 1, 2, 4])          # [N, cr, H, W, 2]
        data = meas_re + mask * meas_re                     # [N, H, W, cr]
        return tf.transpose(data, [0, 3, 1, 2])[..., None]  # [N, cr, H, W, 1]

    # ------------------------------------------------------------------ forward
    def forward_features(self, inputs):
        """Forward pass (plain ops) returning the named intermediates.

        Returns a dict: ``net_in`` ``[N, cr, H, W, 1 | 2]``; ``conv1_out`` and ``block<i>_out``
        ``[N, cr, H/2, W/2, 64]``; ``output`` ``[N, cr, H, W]`` (colour ``[N, cr, H, W, 3]``).
        """
        x = self.network_input(*self._split_inputs(inputs))
        out = {'net_in': x}
        feat = run_sequential(self.conv1, x)
        out['conv1_out'] = feat
        for i, block in enumerate(self.blocks):
            feat = block(feat)
            out[f'block{i}_out'] = feat
        out['output'] = self._output(run_sequential(self.conv2, feat))
        return out

    def _output(self, x):
        return x if self.color else x[..., 0]

    def call(self, inputs, training=False):
        x = self.network_input(*self._split_inputs(inputs))
        feat = run_sequential(self.conv1, x)
        feat = self._rev_layers(feat, reversible=bool(training) and self.reversible)
        return self._output(run_sequential(self.conv2, feat))

    def reconstruct(self, meas, mask=None):
        """SCI reconstruction-function convention (:mod:`ascendvsr.tasks.sci`): raw measurement
        ``meas`` ``[N, H, W]`` (frames' scale) and mask ``[H, W, cr]`` (None = the model's) ->
        frames ``[N, H, W, cr]`` (frames last; colour ``[N, H, W, 3, cr]``, as a colour
        ``orig``). Normalises ``meas`` as the official code does."""
        if mask is None:
            self._check_stored_mask()
            mask = self.mask
        mask = tf.convert_to_tensor(mask, tf.float32)
        out = self((normalize_measurement_tf(meas, mask), mask), training=False)
        return tf.transpose(out, [0, 2, 3, 4, 1] if self.color else [0, 2, 3, 1])

    # ------------------------------------------------------------------ interface
    def get_config(self):
        return dict(variant=self.variant, num_block=self.num_block, num_group=self.num_group,
                    compress_ratio=self.compress_ratio, mask_size=list(self.mask_size),
                    reversible=self.reversible, jit_compile=self.jit_compile, name=self.name)


def revsci_kwargs(cfg):
    """RevSCI constructor arguments from the config tree: ``cfg.revsci`` (architecture, stored
    mask size) and ``sci.compression_ratio`` (frames per measurement, shared by every SCI
    model)."""
    r = cfg.revsci
    return dict(variant=r.variant, num_block=r.num_block, num_group=r.num_group,
                compress_ratio=int(cfg.sci.compression_ratio), mask_size=tuple(r.mask_size),
                reversible=r.reversible)


def build_revsci(cfg, mask=None, **overrides):
    """Build RevSCI from the config (:func:`revsci_kwargs`; keyword ``overrides`` win).

    ``mask``: an optional ``[H, W, cr]`` array to store as the model's default mask (e.g. read by
    :func:`ascendcv.dataloader.sci.load_mask`); without it the stored mask comes from the
    checkpoint loaded afterwards. No file is read here: the SCI task passes each measurement's
    mask with it (training samples, benchmark files, the frozen graph's ``mask`` input).
    """
    kwargs = revsci_kwargs(cfg)
    kwargs.update(overrides)
    model = RevSCI(name='RevSCI', **kwargs)
    if mask is not None:
        model.set_mask(mask)
    return model
