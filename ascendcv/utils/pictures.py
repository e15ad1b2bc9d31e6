"""Labelled pictures of results: frame grids (SCI ground truth above reconstruction, NeRV decoded
frames beside ground truth) and side-by-side strips (bicubic | model | ground truth), drawn with
PIL and written atomically as PNG."""
import numpy as np

__all__ = ['write_grid', 'write_strip']

BAND = 14  # label band above each tile (pixels)
GAP = 4    # black gap between tiles


def write_grid(path, rows, labels):
    """Write a labelled grid PNG.

    Args:
        path: the PNG to write.
        rows: list of frame rows, each ``[B, H, W]`` (grayscale) or ``[B, H, W, 3]`` (RGB), float
            in [0, 1] (clipped) or uint8; every row has the same ``B, H, W``.
        labels: one list of ``B`` strings per row, drawn above each tile.
    Returns ``path``.
    """
    from PIL import Image, ImageDraw

    from ascendcv.utils.video_io import to_uint8, write_png
    rows = [np.asarray(r) for r in rows]
    b, h, w = rows[0].shape[:3]
    for i, (r, lab) in enumerate(zip(rows, labels)):
        if r.shape != rows[0].shape or len(lab) != b:
            raise ValueError(f'write_grid: row {i} has shape {r.shape} and {len(lab)} labels; '
                             f'expected {rows[0].shape} and {b}')
    color = rows[0].ndim == 4
    white = (255, 255, 255) if color else 255
    canvas = Image.new('RGB' if color else 'L',
                       (b * w + (b + 1) * GAP, len(rows) * (h + BAND + GAP) + GAP), 0)
    draw = ImageDraw.Draw(canvas)
    for r, (frames, row_labels) in enumerate(zip(rows, labels)):
        y = GAP + r * (h + BAND + GAP)
        for t in range(b):
            x = GAP + t * (w + GAP)
            draw.text((x + 2, y + 1), row_labels[t], fill=white)
            tile = frames[t] if frames.dtype == np.uint8 else to_uint8(np.clip(frames[t], 0, 1))
            canvas.paste(Image.fromarray(tile), (x, y + BAND))
    write_png(path, np.asarray(canvas))
    return path


def write_strip(path, panels, labels):
    """One row of same-size frames side by side: ``panels`` a list of ``[H, W(, 3)]`` frames,
    ``labels`` one string each (e.g. ``['bicubic 24.4 dB', 'EDVR 25.5 dB', 'ground truth']``)."""
    return write_grid(path, [np.stack([np.asarray(p) for p in panels])], [list(labels)])
