"""Guided deformable attention (RVRT) as core TF ops: bilinear gathers, matmuls and a softmax.

Upstream the op (``models/op/deform_attn.py`` ``deform_attn``) exists only as a CUDA extension
(``deform_attn_cuda_forward`` + ``modulated_deformable_im2col`` in ``deform_attn_cuda_pt110.cpp`` /
``deform_attn_cuda_kernel.cu``). This module computes the same forward result in channels-last
layout, differentiable by TF autodiff, freezable and ONNX-exportable (no custom op).

Notation: ``n`` clips of ``clip`` frames, ``P`` query / key / value channels, ``A`` attention heads
(``D = P / A`` channels each), ``G`` deformable groups, ``K = kernel_h * kernel_w`` taps,
``L = clip * K`` keys per query pixel.

Semantics (read from the CUDA source):

* **Frames.** Query frame ``b`` (clip ``b // clip``, slot ``b % clip``) attends, for every
  ``m in 0..clip-1``, to key/value frame ``(m + b) % clip`` of its own clip, with the ``m``-th block
  of its offsets.
* **Offsets** of block ``m`` are laid out ``[g][tap][dy, dx]``, tap ``= i * kernel_w + j``; tap
  ``(i, j)`` of pixel ``(y, x)`` reads ``(y - pad + i * dil + dy, x - pad + j * dil + dx)``.
* **Sampling** is DCNv2 bilinear (mask = 1): a point with ``y <= -1``, ``y >= H``, ``x <= -1`` or
  ``x >= W`` gives 0, otherwise each corner counts only inside the image
  (:func:`ascendcv.layers.sampling.bilinear_sample`).
* **Groups split the 2P kv channels**: group ``g`` covers kv channels ``g*2P/G .. (g+1)*2P/G - 1``,
  so keys (channels ``< P``) and values (``>= P``) use different offset groups, and a group may
  straddle heads or the key/value boundary.
* **Attention.** Head ``a`` uses channels ``a*D .. a*D + D - 1``; logits ``(q * D**-0.5) . k`` over
  all ``L`` samples of both frames, one softmax, output ``sum attn * v``. Out-of-image samples are
  zero vectors that still take part (logit 0): there is no masking.

With zero offsets the op is a zero-padded local window attention over the frames of the clip;
:func:`local_attn` computes that with slices instead of gathers (RVRT Light's attention); both
share :func:`attention_logits` / :func:`attention_output`.

Keys are sampled, the softmax taken, then values are sampled (the two never coexist). With
``jit_compile=True`` the two steps are XLA clusters that fuse the bilinear gathers into their
reductions, so the ``[.., L, P]`` sampled tensors are never stored at all; one cluster for the
whole op is slower (XLA recomputes the gathers in every consumer of the softmax). The plain path
(core ops only) is what freezing and ONNX use. Times and memory: ``benchmarks/rvrt_gda_speed.py``.

Gradients: TF autodiff gives the exact gradient. The official CUDA backward
(``deform_attn_cuda_backward``) computes the gradient w.r.t. the sampled keys as
``(q * scale)^T grad_logits * scale``, with ``q`` already scaled: ``D**-0.5`` times the exact value,
which then flows to the key channels of ``kv`` and, through the keys, to the offsets.
``official_key_grad=True`` reproduces that (to train as the official code trained).
"""
import tensorflow as tf

from ascendcv.layers.sampling import bilinear_sample


def _pair(value, what):
    if isinstance(value, int):
        return value, value
    value = tuple(int(v) for v in value)
    if len(value) != 2:
        raise ValueError(f'{what} must be an int or an (h, w) pair; got {value}')
    return value


def check_attn_args(proj_channels, attention_heads, deformable_groups=None):
    """Raise ValueError unless ``P`` splits into heads (and ``2P`` into deformable groups)."""
    if attention_heads < 1 or proj_channels % attention_heads:
        raise ValueError(f'{proj_channels} attention channels do not split into '
                         f'attention_heads={attention_heads}')
    if deformable_groups is not None and (deformable_groups < 1
                                          or (2 * proj_channels) % deformable_groups):
        raise ValueError(f'{2 * proj_channels} key+value channels do not split into '
                         f'deformable_groups={deformable_groups}')


def _check_shapes(q, kv, clip_size, offset_channels=None):
    """Static shape checks shared by both ops; returns (P, 2P)."""
    if q.shape.rank != 5 or q.shape[1] != 1:
        raise ValueError(f'q must be [n*clip, 1, H, W, P]; got shape {q.shape}')
    if kv.shape.rank != 5:
        raise ValueError(f'kv must be [n, clip, H, W, 2P]; got shape {kv.shape}')
    p, p2 = q.shape[-1], kv.shape[-1]
    if p is None or p2 is None:
        raise ValueError(f'q and kv need static channel sizes; got {q.shape} and {kv.shape}')
    if kv.shape[1] is not None and kv.shape[1] != clip_size:
        raise ValueError(f'kv has {kv.shape[1]} frames per clip, clip_size is {clip_size}')
    if p is not None and p2 is not None and p2 != 2 * p:
        raise ValueError(f'kv must have 2 * {p} = {2 * p} channels [keys | values]; got {p2}')
    if None not in (q.shape[0], kv.shape[0]) and q.shape[0] != kv.shape[0] * clip_size:
        raise ValueError(f'q has {q.shape[0]} frames, expected n * clip = '
                         f'{kv.shape[0]} * {clip_size}')
    if q.shape[2:4] != kv.shape[2:4] and None not in q.shape[2:4] + kv.shape[2:4]:
        raise ValueError(f'q and kv frame sizes differ: {q.shape[2:4]} vs {kv.shape[2:4]}')
    if offset_channels is not None:
        if offset_channels[0].shape.rank != 4:
            raise ValueError(f'offset must be [n*clip, H, W, clip*G*K*2]; got shape '
                             f'{offset_channels[0].shape}')
        got, want = offset_channels[0].shape[-1], offset_channels[1]
        if got is not None and got != want:
            raise ValueError(f'offset must have clip * G * K * 2 = {want} channels; got {got}')
    return p, p2


def _scale_gradient(x, scale):
    """Identity whose gradient is multiplied by ``scale``."""
    @tf.custom_gradient
    def fn(t):
        return tf.identity(t), lambda g: g * tf.constant(scale, g.dtype)
    return fn(x)


def attention_logits(q, columns, attention_heads, official_key_grad=False):
    """``(q * D**-0.5) . k`` for each query pixel, head and sampled key.

    Args:
        q: ``[B, H, W, P]`` queries (unscaled).
        columns: ``[B, H, W, L, 2P]`` sampled ``[keys | values]`` (only the keys, the first
            ``P`` channels, are read; ``[B, H, W, L, P]`` keys alone work too).
        attention_heads: ``A``; ``D = P / A``.
        official_key_grad: scale the gradient reaching the sampled keys by ``D**-0.5`` (what
            the official CUDA backward computes, see the module docstring); forward unchanged.

    Returns:
        ``[B*H*W, L, A]``.
    """
    p = q.shape[-1]
    a = int(attention_heads)
    d = p // a
    # broadcast products + sums instead of [1, D] x [D, L] matmuls: tiny batched matmuls are slow
    # on CPU, and XLA fuses the sampling into these reductions
    qh = tf.reshape(q * tf.constant(d ** -0.5, q.dtype), [-1, 1, a, d])      # [BHW, 1, A, D]
    keys = tf.reshape(columns[..., :p], [-1, columns.shape[-2], a, d])       # [BHW, L, A, D]
    if official_key_grad:
        keys = _scale_gradient(keys, d ** -0.5)
    return tf.reduce_sum(qh * keys, axis=-1)


def attention_output(attn, columns, like):
    """``sum_l attn * v``: ``attn [B*H*W, L, A]``, ``columns [B, H, W, L, 2P]`` (only the values,
    the last ``P`` channels, are read) -> ``[B, H, W, P]`` shaped like the queries ``like``,
    channel ``a * D + d``."""
    p = like.shape[-1]
    a = attn.shape[-1]
    values = tf.reshape(columns[..., -p:], [-1, columns.shape[-2], a, p // a])  # [BHW, L, A, D]
    out = tf.reduce_sum(attn[..., None] * values, axis=1)                    # [BHW, A, D]
    return tf.reshape(out, tf.shape(like))


def _frame_index(num_queries, clip_size):
    """``[B, clip]`` int32: the kv frame (flat ``n*clip`` index) query ``b`` reads in slot ``m``:
    ``(b // clip) * clip + (m + b) % clip``."""
    b = tf.range(num_queries)[:, None]
    m = tf.range(clip_size)[None, :]
    return (b // clip_size) * clip_size + (m + b) % clip_size


def deform_attn(q, kv, offset, kernel_h=3, kernel_w=3, stride=1, padding=1, dilation=1,
                attention_heads=1, deformable_groups=1, clip_size=1, jit_compile=False,
                official_key_grad=False, recompute_grad=False):
    """RVRT's guided deformable attention, channels-last (semantics in the module docstring).

    Args:
        q: ``[n*clip, 1, H, W, P]`` projected queries (official ``(n*clip, 1, P, H, W)``).
        kv: ``[n, clip, H, W, 2P]``, channels ``[keys | values]`` (official ``(n, clip, 2P, H, W)``).
        offset: ``[n*clip, H, W, clip*G*K*2]``, channel ``((m*G + g)*K + tap)*2 + (0: dy, 1: dx)``,
            the official channel order moved last (official ``(n*clip, clip*G*K*2, H, W)``).
        kernel_h, kernel_w: attention window; ``K = kernel_h * kernel_w``.
        stride: must be 1 (the official op only produces full-size outputs).
        padding, dilation: int or ``(h, w)``; RVRT uses ``kernel_h // 2`` and 1.
        attention_heads, deformable_groups, clip_size: ``A``, ``G``, ``clip``.
        jit_compile: XLA in two clusters around the softmax, each sampling what it needs (keys
            for the logits, values for the output) inside its reduction, so the ``[.., L, 2P]``
            columns are never stored (faster and far less memory on CPU; one cluster for all is
            slower: XLA then recomputes the gathers in every consumer of the softmax).
        official_key_grad: reproduce the official CUDA backward, whose gradient through the
            sampled keys (to the key channels of ``kv`` and to the offsets via the keys) is
            ``D**-0.5`` times the exact one; default False = the exact gradient. Forward unchanged.
        recompute_grad: keep only the op's inputs for the backward pass and recompute the rest
            (``tf.recompute_grad``): training memory no longer grows with the sampled tensors of
            every call, for about one more forward per backward.

    Returns:
        ``[n*clip, 1, H, W, P]``.
    """
    q, kv, offset = (tf.convert_to_tensor(t) for t in (q, kv, offset))
    kh, kw = int(kernel_h), int(kernel_w)
    g, clip = int(deformable_groups), int(clip_size)
    if _pair(stride, 'stride') != (1, 1):
        raise ValueError(f'deform_attn supports stride 1 only (as the official op); got {stride}')
    p, _ = _check_shapes(q, kv, clip, (offset, clip * g * kh * kw * 2))
    check_attn_args(p, attention_heads, g)
    window = (kh, kw, _pair(padding, 'padding'), _pair(dilation, 'dilation'), g, clip)
    heads, key_grad = int(attention_heads), bool(official_key_grad)

    def run(q_, kv_, offset_):
        if jit_compile:
            logits = _deform_logits_xla(q_[:, 0], kv_, offset_, window, heads, key_grad)
            attn = tf.nn.softmax(logits, axis=1)
            return _deform_output_xla(attn, kv_, offset_, window, q_[:, 0])[:, None]
        # keys, softmax, then values: the values are sampled after the keys are consumed
        keys = deform_columns(kv_, offset_, *window, part='keys')
        attn = tf.nn.softmax(attention_logits(q_[:, 0], keys, heads, key_grad), axis=1)
        with tf.control_dependencies([attn]):
            values = deform_columns(kv_, offset_, *window, part='values')
        return attention_output(attn, values, q_[:, 0])[:, None]

    return tf.recompute_grad(run)(q, kv, offset) if recompute_grad else run(q, kv, offset)


def deform_columns(kv, offset, kernel_h, kernel_w, padding, dilation, deformable_groups,
                   clip_size, part=None):
    """The sampled keys and values of :func:`deform_attn`: ``[n*clip, H, W, clip*K, 2P]``, key
    order ``m * K + tap`` (``padding``, ``dilation``: ``(h, w)`` pairs).

    ``part='keys'`` / ``'values'``: only channels ``[0, P)`` / ``[P, 2P)`` (``[.., clip*K, P]``)
    when no deformable group straddles the key/value boundary (``G`` even); otherwise all
    ``2P`` (the readers take ``[..., :P]`` and ``[..., -P:]``)."""
    kh, kw = kernel_h, kernel_w
    k, g, clip = kh * kw, deformable_groups, clip_size
    (ph, pw), (dh, dw) = padding, dilation
    shape = tf.shape(offset)
    b, h, w = shape[0], shape[1], shape[2]
    dtype = kv.dtype
    # offsets (m, g, tap, yx) -> coordinates [B, H, W, clip, K, G]: the sampled values then come
    # out as [.., clip*K, 2P] columns with the kv channel order, no transpose of the big tensor
    off = tf.transpose(tf.reshape(offset, [b, h, w, clip, g, k, 2]), [0, 1, 2, 3, 5, 4, 6])
    taps_y = tf.constant([i * dh - ph for i in range(kh) for _ in range(kw)], dtype)
    taps_x = tf.constant([j * dw - pw for _ in range(kh) for j in range(kw)], dtype)
    grid_y = tf.cast(tf.range(h), dtype)[:, None] + taps_y                 # [H, K]
    grid_x = tf.cast(tf.range(w), dtype)[:, None] + taps_x                 # [W, K]
    y = off[..., 0] + grid_y[None, :, None, None, :, None]
    x = off[..., 1] + grid_x[None, None, :, None, :, None]
    frames = _frame_index(b, clip)[:, None, None, :, None, None]           # [B, 1, 1, clip, 1, 1]
    images = tf.reshape(kv, tf.concat([[-1], tf.shape(kv)[2:]], 0))      # [n*clip, H, W, 2P]
    channels = kv.shape[-1]
    if part is not None and g % 2 == 0:  # keys = groups [0, G/2), values = [G/2, G)
        half, channels = g // 2, channels // 2
        groups = slice(0, half) if part == 'keys' else slice(half, g)
        images = images[..., :channels] if part == 'keys' else images[..., channels:]
        y, x, g = y[..., groups], x[..., groups], half
    cols = bilinear_sample(images, y, x, groups=g, batch_index=frames)     # [B,H,W,clip,K,G,2P/G]
    return tf.reshape(cols, [b, h, w, clip * k, channels])


def local_attn(q, kv, kernel_h=3, kernel_w=3, attention_heads=1, clip_size=1, jit_compile=False):
    """:func:`deform_attn` with zero offsets: zero-padded ``kernel_h x kernel_w`` window attention of
    each query frame over all frames of its clip (padding ``kernel_h // 2`` on both axes, as the
    official op), computed with slices instead of gathers. RVRT Light's attention (mindediting
    ``AttnPack.deform_attn``).

    Args: ``q [n*clip, 1, H, W, P]``, ``kv [n, clip, H, W, 2P]`` as in :func:`deform_attn`;
    ``jit_compile``: XLA, as in :func:`deform_attn`.

    Returns: ``[n*clip, 1, H, W, P]``.
    """
    q, kv = tf.convert_to_tensor(q), tf.convert_to_tensor(kv)
    kh, kw, clip = int(kernel_h), int(kernel_w), int(clip_size)
    p, _ = _check_shapes(q, kv, clip)
    check_attn_args(p, attention_heads)
    if max(kh, kw) - 1 > 2 * (kh // 2):
        raise ValueError(f'local_attn: padding kernel_h // 2 = {kh // 2} does not cover the '
                         f'{kh}x{kw} window (the official op pads kernel_h // 2 on both axes)')
    window = (kh, kw, clip)
    if jit_compile:
        logits = _local_logits_xla(q[:, 0], kv[..., :p], window, int(attention_heads))
        attn = tf.nn.softmax(logits, axis=1)
        return _local_output_xla(attn, kv[..., p:], window, q[:, 0])[:, None]
    # keys, softmax, then values (as deform_attn)
    attn = tf.nn.softmax(attention_logits(q[:, 0], local_columns(kv[..., :p], *window),
                                          int(attention_heads)), axis=1)
    with tf.control_dependencies([attn]):
        values = local_columns(kv[..., p:], *window)
    return attention_output(attn, values, q[:, 0])[:, None]


def local_columns(kv, kernel_h, kernel_w, clip_size):
    """:func:`deform_columns` for zero offsets (padding ``kernel_h // 2``), by slicing:
    ``kv [n, clip, H, W, C]`` (keys, values or both) -> ``[n*clip, H, W, clip*K, C]``."""
    kh, kw, clip = kernel_h, kernel_w, clip_size
    pad = kh // 2
    shape = tf.shape(kv)
    h, w = shape[2], shape[3]
    # tap (i, j) of pixel (y, x) reads (y - pad + i, x - pad + j) = padded (y + i, x + j)
    padded = tf.pad(kv, [[0, 0], [0, 0], [pad, pad], [pad, pad], [0, 0]])
    taps = tf.stack([padded[:, :, i:i + h, j:j + w] for i in range(kh) for j in range(kw)],
                    axis=4)                                                # [n, clip, H, W, K, 2P]
    frames = tf.reshape(taps, tf.concat([[-1], tf.shape(taps)[2:]], 0))
    b = tf.shape(frames)[0]
    cols = tf.gather(frames, _frame_index(b, clip))                        # [B, clip, H, W, K, 2P]
    cols = tf.transpose(cols, [0, 2, 3, 1, 4, 5])
    return tf.reshape(cols, [b, h, w, clip * kh * kw, kv.shape[-1]])


def _xla(fn):
    return tf.function(fn, jit_compile=True, autograph=False)


_deform_logits_xla = _xla(lambda q, kv, offset, window, heads, key_grad: attention_logits(
    q, deform_columns(kv, offset, *window, part='keys'), heads, key_grad))
_deform_output_xla = _xla(lambda attn, kv, offset, window, like: attention_output(
    attn, deform_columns(kv, offset, *window, part='values'), like))
_local_logits_xla = _xla(lambda q, kv, window, heads:
                         attention_logits(q, local_columns(kv, *window), heads))
_local_output_xla = _xla(lambda attn, kv, window, like:
                         attention_output(attn, local_columns(kv, *window), like))
