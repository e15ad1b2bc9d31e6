"""Temporal neighbourhoods for sliding-window video models (EDVR/BasicSR test-time convention)."""

PADDING_MODES = ('replicate', 'reflection', 'reflection_circle', 'circle')


def generate_frame_indices(center, num_frames, window, padding='reflection_circle'):
    """Indices of the ``window`` frames around ``center`` in a clip of ``num_frames`` frames.

    Out-of-range positions are padded as BasicSR's ``generate_frame_indices`` does, e.g. for
    ``center=0, window=5``: replicate ``[0, 0, 0, 1, 2]``; reflection ``[2, 1, 0, 1, 2]``;
    reflection_circle ``[4, 3, 0, 1, 2]``; circle ``[3, 4, 0, 1, 2]``.
    """
    if window % 2 == 0:
        raise ValueError(f'window must be odd, got {window}')
    if padding not in PADDING_MODES:
        raise ValueError(f'padding must be one of {PADDING_MODES}, got {padding!r}')
    if not 0 <= center < num_frames:
        raise IndexError(f'frame index {center} is outside the clip of {num_frames} frames')
    last = num_frames - 1
    half = window // 2
    out = []
    for i in range(center - half, center + half + 1):
        if i < 0:
            j = {'replicate': 0, 'reflection': -i, 'reflection_circle': center + half - i,
                 'circle': window + i}[padding]
        elif i > last:
            j = {'replicate': last, 'reflection': 2 * last - i,
                 'reflection_circle': (center - half) - (i - last),
                 'circle': i - window}[padding]
        else:
            j = i
        out.append(min(max(j, 0), last))
    return out
