"""Rate-distortion results: a CSV table and a PSNR-vs-bpp PNG plot drawn with PIL.

A result row is a dict with at least ``series`` (curve label, e.g. 'prune' or 'quant'),
``bpp`` and ``psnr``; other keys (``ms_ssim``, ``prune_ratio``, ``quant_bit``, ...) become CSV
columns. Files are written atomically (temporary name, then rename).
"""
import csv
import io
import math
from ascendcv.utils.fileio import atomic_write_bytes as _atomic_write

__all__ = ['write_rd_csv', 'read_rd_csv', 'plot_rd', 'nice_ticks']

_PALETTE = [(31, 119, 180), (214, 39, 40), (44, 160, 44), (255, 127, 14), (148, 103, 189),
            (140, 86, 75), (227, 119, 194), (127, 127, 127)]


def write_rd_csv(path, rows):
    """Write ``rows`` (list of dicts) as CSV; columns: series, bpp, psnr first, then the rest."""
    if not rows:
        raise ValueError('write_rd_csv: no rows')
    for i, r in enumerate(rows):
        missing = [k for k in ('series', 'bpp', 'psnr') if k not in r]
        if missing:
            raise ValueError(f'rate-distortion row {i} lacks {missing}: {r}')
    cols = ['series', 'bpp', 'psnr']
    for r in rows:
        cols += [k for k in r if k not in cols]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=cols, lineterminator='\n')
    writer.writeheader()
    for r in rows:
        writer.writerow({k: r.get(k, '') for k in cols})
    _atomic_write(path, buf.getvalue().encode())
    return path


def read_rd_csv(path):
    """Rows of a CSV written by :func:`write_rd_csv` (numbers parsed back to float)."""
    out = []
    with open(path, newline='') as f:
        for row in csv.DictReader(f):
            parsed = {}
            for k, v in row.items():
                try:
                    parsed[k] = float(v) if k != 'series' and v != '' else v
                except ValueError:
                    parsed[k] = v
            out.append(parsed)
    return out


def nice_ticks(lo, hi, n=5):
    """About ``n`` round tick values covering ``[lo, hi]``."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError(f'tick range must be finite; got {lo}, {hi}')
    if hi <= lo:
        hi = lo + (abs(lo) * 0.1 or 1.0)
    raw = (hi - lo) / max(n, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.floor(lo / step) * step
    ticks, v = [], start
    while v <= hi + step * 1e-9:
        ticks.append(round(v, 12))
        v += step
    if ticks[-1] < hi:
        ticks.append(round(v, 12))
    return ticks


def _fmt(v):
    return f'{v:.4g}'


def plot_rd(path, rows, x='bpp', y='psnr', title='NeRV rate-distortion', size=(800, 560)):
    """Draw ``y`` against ``x`` for each ``series`` (lines through points sorted by ``x``) and
    save a PNG. Returns the path."""
    from PIL import Image, ImageDraw, ImageFont

    pts = [r for r in rows if _finite(r.get(x)) and _finite(r.get(y))]
    if not pts:
        raise ValueError(f'plot_rd: no row has finite {x!r} and {y!r}')
    series = []
    for r in pts:
        if r['series'] not in series:
            series.append(r['series'])
    xs = [float(r[x]) for r in pts]
    ys = [float(r[y]) for r in pts]
    xt, yt = nice_ticks(min(xs), max(xs)), nice_ticks(min(ys), max(ys))
    x0, x1, y0, y1 = xt[0], xt[-1], yt[0], yt[-1]

    w, h = size
    left, right, top, bottom = 80, 30, 50, 60
    img = Image.new('RGB', (w, h), 'white')
    d = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    pw, ph = w - left - right, h - top - bottom

    def px(vx, vy):
        return (left + (vx - x0) / (x1 - x0) * pw, top + ph - (vy - y0) / (y1 - y0) * ph)

    for t in xt:  # grid and tick labels
        gx, _ = px(t, y0)
        d.line([(gx, top), (gx, top + ph)], fill=(225, 225, 225))
        d.text((gx - 12, top + ph + 6), _fmt(t), fill='black', font=font)
    for t in yt:
        _, gy = px(x0, t)
        d.line([(left, gy), (left + pw, gy)], fill=(225, 225, 225))
        d.text((left - 45, gy - 6), _fmt(t), fill='black', font=font)
    d.rectangle([left, top, left + pw, top + ph], outline='black')
    d.text((left + pw // 2 - 30, h - 25), f'{x}', fill='black', font=font)
    d.text((8, top - 30), f'{y} (dB)' if y == 'psnr' else y, fill='black', font=font)
    d.text((left + pw // 2 - 60, 12), title, fill='black', font=font)

    for k, name in enumerate(series):
        color = _PALETTE[k % len(_PALETTE)]
        sp = sorted(((float(r[x]), float(r[y])) for r in pts if r['series'] == name))
        coords = [px(a, b) for a, b in sp]
        if len(coords) > 1:
            d.line(coords, fill=color, width=2)
        for cx, cy in coords:
            d.ellipse([cx - 4, cy - 4, cx + 4, cy + 4], fill=color, outline='black')

    # legend in the lower-right corner (rate-distortion curves rise to the upper right)
    widths = [d.textlength(str(name), font=font) for name in series]
    box_w, box_h = int(max(widths)) + 40, 16 * len(series) + 10
    bx, by = left + pw - box_w - 10, top + ph - box_h - 10
    d.rectangle([bx, by, bx + box_w, by + box_h], fill='white', outline=(160, 160, 160))
    for k, name in enumerate(series):
        color = _PALETTE[k % len(_PALETTE)]
        ly = by + 6 + 16 * k
        d.rectangle([bx + 8, ly, bx + 20, ly + 10], fill=color, outline='black')
        d.text((bx + 26, ly - 1), str(name), fill='black', font=font)

    buf = io.BytesIO()
    img.save(buf, format='PNG')
    _atomic_write(path, buf.getvalue())
    return path


def _finite(v):
    try:
        return math.isfinite(float(v))
    except (TypeError, ValueError):
        return False
