"""Bayer (RGGB) demosaicking with Malvar-He-Cutler gradient-corrected linear interpolation.

H. S. Malvar, L. He, R. Cutler, "High-quality linear interpolation for demosaicing of
Bayer-patterned color images", ICASSP 2004 -- the method of MATLAB's ``demosaic``. Each missing
colour is a bilinear estimate corrected by the Laplacian of the sampled colour, four 5x5 filters
(coefficients / 8):

* ``G at R/B``: centre 4, the 4 nearest G +2, the 4 same-colour pixels 2 away -1;
* ``R/B at G``, the colour on the left and right: centre 5, left/right +4, the diagonal G -1,
  the 2 G two to the left/right -1, the 2 G two above/below +1/2 (its transpose when the colour
  is above and below);
* ``R at B`` / ``B at R``: centre 6, the 4 diagonal neighbours +2, the 4 same-colour pixels 2 away
  -3/2.

Borders are extended by reflection (2 pixels). Layout RGGB: R at (even, even), G at (even, odd)
and (odd, even), B at (odd, odd) -- :data:`ascendcv.utils.sci_physics.BAYER_OFFSETS`.
"""
import numpy as np
import tensorflow as tf

_G_AT_RB = np.array([[0, 0, -1, 0, 0],
                     [0, 0, 2, 0, 0],
                     [-1, 2, 4, 2, -1],
                     [0, 0, 2, 0, 0],
                     [0, 0, -1, 0, 0]], np.float32) / 8
_ROW = np.array([[0, 0, 0.5, 0, 0],      # the colour sits left and right of the G pixel
                 [0, -1, 0, -1, 0],
                 [-1, 4, 5, 4, -1],
                 [0, -1, 0, -1, 0],
                 [0, 0, 0.5, 0, 0]], np.float32) / 8
_DIAG = np.array([[0, 0, -1.5, 0, 0],    # the colour sits on the diagonals (R at B, B at R)
                  [0, 2, 0, 2, 0],
                  [-1.5, 0, 6, 0, -1.5],
                  [0, 2, 0, 2, 0],
                  [0, 0, -1.5, 0, 0]], np.float32) / 8
MALVAR_KERNELS = np.stack([_G_AT_RB, _ROW, _ROW.T, _DIAG], axis=-1)[:, :, None, :]  # [5, 5, 1, 4]


def demosaic_rggb(raw):
    """RGGB raw frames ``[N, H, W]`` (H, W even, >= 3) -> RGB ``[N, H, W, 3]`` float32."""
    raw = tf.cast(tf.convert_to_tensor(raw), tf.float32)
    if raw.shape.rank != 3:
        raise ValueError(f'demosaic_rggb expects raw frames [N, H, W], got shape {raw.shape}')
    x = tf.pad(raw[..., None], [[0, 0], [2, 2], [2, 2], [0, 0]], mode='REFLECT')
    est = tf.nn.conv2d(x, MALVAR_KERNELS, 1, 'VALID')  # [N, H, W, 4]
    g_at_rb, row, col, diag = tf.unstack(est, axis=-1)
    h, w = tf.shape(raw)[1], tf.shape(raw)[2]
    even_r = tf.equal(tf.range(h) % 2, 0)[:, None]
    even_c = tf.equal(tf.range(w) % 2, 0)[None, :]
    r_site = tf.logical_and(even_r, even_c)
    b_site = tf.logical_and(~even_r, ~even_c)
    g_r_row = tf.logical_and(even_r, ~even_c)   # G with R left/right (B above/below)
    g_b_row = tf.logical_and(~even_r, even_c)   # G with B left/right (R above/below)
    red = tf.where(r_site, raw, tf.where(g_r_row, row, tf.where(g_b_row, col, diag)))
    green = tf.where(tf.logical_or(r_site, b_site), g_at_rb, raw)
    blue = tf.where(b_site, raw, tf.where(g_b_row, row, tf.where(g_r_row, col, diag)))
    return tf.stack([red, green, blue], axis=-1)
