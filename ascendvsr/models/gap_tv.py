"""GAP-TV: generalized alternating projection with total-variation denoising, for video SCI.

X. Yuan, "Generalized alternating projection based total variation minimization for compressive
sensing", ICIP 2016; the settings and evaluation of PnP-SCI (Yuan, Liu, Suo, Dai, CVPR 2020,
``test_pnpsci.m`` / ``gapdenoise.m``), whose GAP-TV row this reproduces on the grayscale
benchmarks (Traffic 20.89 dB, Runner 28.52, Drop 34.63; see ``tests/models/test_gap_tv.py``).

Forward model (:mod:`ascendcv.utils.sci_physics`): ``y = A(x) = sum_t mask_t * x_t``, adjoint
``A^T(y) = y * mask``, ``A A^T = diag(phi_sum)`` with ``phi_sum = sum_t mask_t ** 2`` (pixels never
sampled get 1, as in the reference, so nothing is divided by zero and such pixels are left to the
TV prior). One GAP iteration with acceleration (``accelerate=True``)::

    yb = A(x)
    y1 = y1 + (y - yb)                                # accumulated residual, y1 starts at 0
    x  = x + lambda * A^T((y1 - yb) / phi_sum)        # without acceleration: (y - yb)
    x  = tv_denoise(x, tv_weight, tv_iter_max)        # each frame on its own

starting from ``x = A^T(y)``. ``tv_denoise`` is the TV denoiser of the PnP-SCI/DeSCI MATLAB code
(``TV_denoising.m``): a Chambolle-type dual projection for anisotropic TV, per 2-D frame, with dual
variables ``zh`` / ``zv`` on the horizontal / vertical forward differences (Neumann boundary,
zero-initialised at every call), step 1/5 and clipping at ``tv_weight / 2``::

    x  = y0 - (Dh^T zh + Dv^T zv) / 2
    zh = clip(zh + Dh x / 5, tv_weight / 2);  zv = clip(zv + Dv x / 5, tv_weight / 2)

returning the ``x`` of the last of ``tv_iter_max`` passes. Standard (PnP-SCI) settings, the
defaults here: 100 iterations, lambda 1, acceleration on, TV weight 0.07, 5 TV passes, data in
``[0, 1]`` (8-bit measurements divided by 255). The TV weight is absolute, so the result depends
on that scaling.

Colour (``bayer=True``): a Bayer RGGB measurement is four grayscale SCI problems, one per 2x2
site (R, G1, G2, B: the measurement and the mask subsampled by 2); GAP-TV solves them as one
batch, the planes are put back into raw frames, which are demosaicked
(:func:`ascendcv.layers.demosaic.demosaic_rggb`, Malvar-He-Cutler, as MATLAB's ``demosaic``):
``[N, H, W]`` -> ``[N, H, W, 3, B]``. The colour baseline next to the colour RevSCI.

Note: the Python ``TV_denoiser`` circulating in SCI repositories is a different (isotropic,
frame-coupled) Chambolle iteration; it is not what produced the published GAP-TV numbers.

:class:`GapTV` runs in TensorFlow (graph mode, ``tf.function``; CPU or GPU), batched over
measurements; :func:`gap_tv_numpy` is a plain numpy reference of the same computation.
"""
import numpy as np
import tensorflow as tf

from ascendcv.layers.demosaic import demosaic_rggb
from ascendcv.utils.sci_physics import BAYER_OFFSETS

__all__ = ['GapTV', 'gap_tv_numpy', 'tv_denoise', 'tv_denoise_numpy', 'build_gap_tv']

_TV_STEP = 0.2  # 1 / alpha with alpha = 5 in TV_denoising.m


# ============================================================================ TensorFlow

def _edge(n, dtype):
    """``[n]`` ones with a zero at the last index (forward differences stop at the border)."""
    return tf.cast(tf.range(n) < n - 1, dtype)


def _clip_bounds(shape, tv_weight, edge_h, edge_w):
    """Full-shape clip bounds ``(hi_h, hi_v)`` for the halved duals: ``tv_weight / 4`` except 0
    on the last column (``hi_h``) / last row (``hi_v``), which keeps those duals at zero."""
    bound = 0.25 * tv_weight
    return tf.broadcast_to(bound * edge_w, shape), tf.broadcast_to(bound * edge_h, shape)


def _tv_passes(y0, n_iter, h_axis, w_axis, hi_h, hi_v):
    """The TV passes on ``y0`` with the frame axes ``h_axis`` / ``w_axis`` (see module doc).

    Works on ``s = z / 2`` so that ``x = y0 - Dh^T sh - Dv^T sv`` and
    ``s <- clip(s + D(x) / 10, tv_weight / 4)``. With ``s`` zero on the last row/column (enforced
    by the zero clip bound there, see :func:`_clip_bounds`), ``D^T s = roll(s, 1) - s`` and
    ``D x = roll(x, -1) - x`` on all but the last index, so no padding or slicing is needed.
    """
    lo_h, lo_v = -hi_h, -hi_v
    x, sh, sv = y0, None, None
    for i in range(n_iter):
        if i > 0:
            x = tf.add_n([y0, sh, sv]) - tf.add_n([tf.roll(sh, 1, w_axis),
                                                   tf.roll(sv, 1, h_axis)])
        if i < n_iter - 1:  # the last pass's dual update would not change the output
            step = (0.5 * _TV_STEP) * x
            gh = tf.roll(step, -1, w_axis) - step
            gv = tf.roll(step, -1, h_axis) - step
            # ClipByValue with same-shape bounds: one kernel instead of minimum + maximum
            sh = tf.raw_ops.ClipByValue(t=gh if sh is None else sh + gh, clip_value_min=lo_h,
                                        clip_value_max=hi_h)
            sv = tf.raw_ops.ClipByValue(t=gv if sv is None else sv + gv, clip_value_min=lo_v,
                                        clip_value_max=hi_v)
    return x


def tv_denoise(x, tv_weight=0.07, n_iter=5):
    """Frame-wise anisotropic TV denoising (``TV_denoising.m``) of ``x [..., H, W, B]``.

    Each ``[H, W]`` frame ``x[..., b]`` is denoised on its own; float32 in, float32 out.
    """
    x = tf.convert_to_tensor(x, tf.float32)
    if x.shape.rank is not None and x.shape.rank < 3:
        raise ValueError(f'tv_denoise expects [..., H, W, B], got shape {x.shape}')
    if int(n_iter) < 1:
        raise ValueError(f'tv_denoise n_iter must be >= 1, got {n_iter}')
    rank = tf.rank(x)
    shape = tf.shape(x)
    h, w = shape[-3], shape[-2]
    edge_h = tf.reshape(_edge(h, x.dtype), [-1, 1, 1])
    edge_w = tf.reshape(_edge(w, x.dtype), [-1, 1])
    hi_h, hi_v = _clip_bounds(shape, float(tv_weight), edge_h, edge_w)
    return _tv_passes(x, int(n_iter), rank - 3, rank - 2, hi_h, hi_v)


class GapTV(tf.Module):
    """GAP-TV reconstruction of video SCI measurements (see the module docstring).

    Args:
        iter_max (int): GAP iterations (100).
        lambda_ (float): step of the Euclidean projection (1).
        accelerate (bool): accelerated GAP (residual accumulation ``y1``) (True).
        tv_weight (float): TV denoising weight for data in [0, 1] (0.07).
        tv_iter_max (int): TV passes per GAP iteration (5).
        per_measurement (bool): loop over the measurements of a batch inside the graph instead of
            processing them as one tensor (same result; keeps the working set of one measurement
            in cache, which is faster on CPU).
        bayer (bool): the measurements are of RGB video through an RGGB Bayer filter; returns
            RGB frames ``[N, H, W, 3, B]`` (H, W even).

    Call: ``model(meas, mask)`` with ``meas`` ``[N, H, W]`` (or ``[H, W]``) on the scale of the
    frames (8-bit data: measurement / 255) and ``mask`` ``[H, W, B]`` (shared) or ``[N, H, W, B]``
    (one per measurement). Returns float32 ``[N, H, W, B]`` (``[H, W, B]`` for ``[H, W]`` input).
    Not clipped to [0, 1], as in the reference. Any numeric dtype is accepted (cast to float32).
    """

    def __init__(self, iter_max=100, lambda_=1.0, accelerate=True, tv_weight=0.07,
                 tv_iter_max=5, per_measurement=True, bayer=False, name='GapTV'):
        super().__init__(name=name)
        if int(iter_max) < 0:
            raise ValueError(f'GapTV iter_max must be >= 0, got {iter_max}')
        if int(tv_iter_max) < 1:
            raise ValueError(f'GapTV tv_iter_max must be >= 1, got {tv_iter_max}')
        if float(tv_weight) < 0:
            raise ValueError(f'GapTV tv_weight must be >= 0, got {tv_weight}')
        self.iter_max = int(iter_max)
        self.lambda_ = float(lambda_)
        self.accelerate = bool(accelerate)
        self.tv_weight = float(tv_weight)
        self.tv_iter_max = int(tv_iter_max)
        self.per_measurement = bool(per_measurement)
        self.bayer = bool(bayer)
        self._fn = tf.function(self._reconstruct, input_signature=[
            tf.TensorSpec([None, None, None], tf.float32),
            tf.TensorSpec([None, None, None, None], tf.float32)])

    def get_config(self):
        return dict(iter_max=self.iter_max, lambda_=self.lambda_, accelerate=self.accelerate,
                    tv_weight=self.tv_weight, tv_iter_max=self.tv_iter_max,
                    per_measurement=self.per_measurement, bayer=self.bayer)

    # ------------------------------------------------------------------ graph
    def _solve(self, y, mask):
        """GAP-TV on ``y [n, H, W, 1]`` with ``mask [1 or n, H, W, B]`` -> ``[n, H, W, B]``."""
        phi_sum = tf.reduce_sum(mask * mask, axis=-1, keepdims=True)
        phi_sum = tf.where(phi_sum == 0, tf.ones_like(phi_sum), phi_sum)
        scaled_mask = (self.lambda_ / phi_sum) * mask  # lambda * A^T(r / phi_sum) = r * this
        shape = tf.shape(mask)
        edge_h = tf.reshape(_edge(shape[1], tf.float32), [-1, 1, 1])
        edge_w = tf.reshape(_edge(shape[2], tf.float32), [-1, 1])
        x0 = y * mask
        hi_h, hi_v = _clip_bounds(tf.shape(x0), self.tv_weight, edge_h, edge_w)
        y1 = tf.zeros_like(y)

        def body(k, x, y1):
            yb = tf.reduce_sum(x * mask, axis=-1, keepdims=True)
            if self.accelerate:
                y1 = y1 + (y - yb)
                x = x + (y1 - yb) * scaled_mask
            else:
                x = x + (y - yb) * scaled_mask
            x = _tv_passes(x, self.tv_iter_max, 1, 2, hi_h, hi_v)
            return k + 1, x, y1

        _, x, _ = tf.while_loop(lambda k, x, y1: k < self.iter_max, body,
                                (tf.constant(0), x0, y1))
        return x

    def _reconstruct(self, meas, mask):
        if self.bayer:
            return self._reconstruct_bayer(meas, mask)
        return self._reconstruct_gray(meas, mask)

    def _reconstruct_bayer(self, meas, mask):
        """``[N, H, W]``, ``[1 or N, H, W, B]`` -> RGB ``[N, H, W, 3, B]``."""
        n = tf.shape(meas)[0]
        masks = tf.broadcast_to(mask, tf.concat([[n], tf.shape(mask)[1:]], 0))
        sites = list(BAYER_OFFSETS.values())  # R, G1, G2, B: (r, c) in depth_to_space order
        planes = self._reconstruct_gray(
            tf.concat([meas[:, r::2, c::2] for r, c in sites], 0),
            tf.concat([masks[:, r::2, c::2] for r, c in sites], 0))  # [4N, H/2, W/2, B]
        planes = tf.stack(tf.split(planes, 4, axis=0), axis=-1)      # [N, H/2, W/2, B, 4]
        shape = tf.shape(planes)
        per_frame = tf.reshape(tf.transpose(planes, [0, 3, 1, 2, 4]),
                               [-1, shape[1], shape[2], 4])
        raw = tf.nn.depth_to_space(per_frame, 2)[..., 0]             # [N*B, H, W]
        rgb = demosaic_rggb(raw)                                     # [N*B, H, W, 3]
        rgb = tf.reshape(rgb, [n, shape[3], 2 * shape[1], 2 * shape[2], 3])
        return tf.transpose(rgb, [0, 2, 3, 4, 1])

    def _reconstruct_gray(self, meas, mask):
        y = meas[..., None]
        if not self.per_measurement:
            return self._solve(y, mask)
        n = tf.shape(y)[0]
        masks = tf.broadcast_to(mask, tf.concat([[n], tf.shape(mask)[1:]], 0))
        return tf.map_fn(lambda ym: self._solve(ym[0][None], ym[1][None])[0], (y, masks),
                         fn_output_signature=tf.float32, parallel_iterations=1)

    # ------------------------------------------------------------------ API
    def __call__(self, meas, mask):
        meas = tf.cast(tf.convert_to_tensor(meas), tf.float32)
        mask = tf.cast(tf.convert_to_tensor(mask), tf.float32)
        single = meas.shape.rank == 2
        if single:
            meas = meas[None]
        if meas.shape.rank != 3:
            raise ValueError(f'GapTV: meas must be [N, H, W] or [H, W], got shape {meas.shape}')
        if mask.shape.rank == 3:
            mask = mask[None]
        if mask.shape.rank != 4:
            raise ValueError(f'GapTV: mask must be [H, W, B] or [N, H, W, B], got shape '
                             f'{mask.shape}')
        # static checks only where the sizes are known (a serving signature may leave them open)
        for m_size, k_size in zip(meas.shape[1:], mask.shape[1:3]):
            if m_size is not None and k_size is not None and m_size != k_size:
                raise ValueError(f'GapTV: measurement size {tuple(meas.shape[1:])} differs from '
                                 f'the mask size {tuple(mask.shape[1:3])} (mask shape '
                                 f'{mask.shape})')
        if None not in (mask.shape[0], meas.shape[0]) and mask.shape[0] not in (1, meas.shape[0]):
            raise ValueError(f'GapTV: {mask.shape[0]} masks for {meas.shape[0]} measurements')
        sizes = [s for s in mask.shape[1:3] if s is not None]
        if sizes and min(sizes) < 2:
            raise ValueError(f'GapTV: frames must be at least 2x2, got {tuple(mask.shape[1:3])}')
        if self.bayer and sizes and (any(s % 2 for s in sizes) or min(sizes) < 6):
            raise ValueError(f'GapTV (bayer): frames must have even sizes >= 6 (RGGB 2x2 '
                             f'sites), got {tuple(mask.shape[1:3])}')
        out = self._fn(meas, mask)
        return out[0] if single else out

    def reconstruct(self, meas, mask):
        """Like calling the model, but returns a numpy array."""
        return self(meas, mask).numpy()


def build_gap_tv(cfg, **overrides):
    """GapTV from ``cfg.sci.gap_tv_*`` (keyword ``overrides`` win; ``jit_compile``, which the
    runner passes to every builder when freezing, is ignored: GAP-TV has no XLA-only ops)."""
    overrides.pop('jit_compile', None)
    sci = cfg.sci
    kwargs = dict(iter_max=sci.gap_tv_iter_max, lambda_=sci.gap_tv_lambda,
                  accelerate=sci.gap_tv_accelerate, tv_weight=sci.gap_tv_tv_weight,
                  tv_iter_max=sci.gap_tv_tv_iter_max, bayer=sci.gap_tv_bayer)
    kwargs.update(overrides)
    return GapTV(**kwargs)


# ============================================================================ numpy reference

def tv_denoise_numpy(y0, tv_weight=0.07, n_iter=5):
    """Numpy ``TV_denoising.m`` on ``y0 [..., H, W, B]`` (frame-wise), written plainly with
    explicit differences and padding, as an independent check of :func:`tv_denoise`."""
    y0 = np.asarray(y0)
    h_ax, w_ax = y0.ndim - 3, y0.ndim - 2
    half = tv_weight / 2.0
    zh = np.zeros_like(y0)  # horizontal duals; the last column stays 0 (H x (W-1) in MATLAB)
    zv = np.zeros_like(y0)  # vertical duals; the last row stays 0

    def adjoint(z, ax):  # D^T z = [-z_0, z_0 - z_1, ..., z_{n-3} - z_{n-2}, z_{n-2}]
        n = z.shape[ax]
        prev = np.take(z, range(0, n - 1), axis=ax)
        pad = [(0, 0)] * z.ndim
        pad[ax] = (1, 0)
        return np.pad(prev, pad) - np.where(_last_mask(z.shape, ax), 0, z)

    def forward(x, ax):  # D x with a zero last entry
        n = x.shape[ax]
        diff = np.take(x, range(1, n), axis=ax) - np.take(x, range(0, n - 1), axis=ax)
        pad = [(0, 0)] * x.ndim
        pad[ax] = (0, 1)
        return np.pad(diff, pad)

    x = y0
    for _ in range(n_iter):
        x = y0 - 0.5 * (adjoint(zh, w_ax) + adjoint(zv, h_ax))
        zh = np.clip(zh + _TV_STEP * forward(x, w_ax), -half, half)
        zv = np.clip(zv + _TV_STEP * forward(x, h_ax), -half, half)
    return x


def _last_mask(shape, ax):
    idx = np.arange(shape[ax]) == shape[ax] - 1
    view = [1] * len(shape)
    view[ax] = shape[ax]
    return idx.reshape(view)


def gap_tv_numpy(meas, mask, iter_max=100, lambda_=1.0, accelerate=True, tv_weight=0.07,
                 tv_iter_max=5, dtype=np.float32):
    """Numpy reference GAP-TV of one measurement ``meas [H, W]`` with ``mask [H, W, B]``.

    Same algorithm and defaults as :class:`GapTV`; returns ``[H, W, B]`` of ``dtype``.
    """
    mask = np.asarray(mask, dtype)
    y = np.asarray(meas, dtype)
    phi_sum = (mask * mask).sum(-1)
    phi_sum[phi_sum == 0] = 1
    x = y[..., None] * mask
    y1 = np.zeros_like(y)
    for _ in range(iter_max):
        yb = (x * mask).sum(-1)
        if accelerate:
            y1 = y1 + (y - yb)
            x = x + lambda_ * (((y1 - yb) / phi_sum)[..., None] * mask)
        else:
            x = x + lambda_ * (((y - yb) / phi_sum)[..., None] * mask)
        x = tv_denoise_numpy(x, tv_weight, tv_iter_max)
    return x.astype(dtype, copy=False)
