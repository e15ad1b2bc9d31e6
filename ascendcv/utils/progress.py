"""Progress bars that stay readable in log files.

On a terminal :func:`progress` is a plain ``tqdm`` bar. When stderr is redirected (``nohup``,
``> log 2>&1``, CI) tqdm's carriage-return redraws would pile up on one line and glue the next
log line to the bar, so the bar is written instead as whole lines, at most one every
``file_interval`` seconds plus the final one.
"""
import sys

from tqdm import tqdm

__all__ = ['progress', 'LineStream']


class LineStream:
    """A text stream for tqdm that turns each redraw (``'\\r' + bar``) into its own line."""

    def __init__(self, stream):
        self.stream = stream

    def write(self, text):
        text = text.replace('\r', '').strip()
        if text:
            self.stream.write(text + '\n')

    def flush(self):
        self.stream.flush()


def _is_tty(stream):
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def progress(iterable=None, total=None, desc=None, unit='it', file_interval=30.0, **kwargs):
    """``tqdm(iterable, total=..., desc=..., unit=...)`` that writes whole lines when stderr is
    not a terminal (see the module docstring)."""
    if not _is_tty(sys.stderr):
        kwargs.setdefault('file', LineStream(sys.stderr))
        kwargs.setdefault('mininterval', file_interval)
        kwargs.setdefault('ncols', 100)
        kwargs['leave'] = True  # the final line is the record of the work in a log
    else:
        kwargs.setdefault('dynamic_ncols', True)
    return tqdm(iterable, total=total, desc=desc, unit=unit, **kwargs)
