"""Progress bars in log files are whole lines, not carriage-return debris."""
import io
import sys

from ascendcv.utils.progress import progress


def test_redirected_progress_writes_whole_lines(monkeypatch):
    log = io.StringIO()
    monkeypatch.setattr(sys, 'stderr', log)  # not a terminal
    for _ in progress(range(5), desc='clip_000', unit='frame', file_interval=0.0):
        pass
    print('2026-12-01 12:00:00 clip_000 PSNR 25.50', file=sys.stderr)
    text = log.getvalue()
    assert '\r' not in text
    lines = text.splitlines()
    assert lines[-1].startswith('2026-12-01')  # the log line stands on its own line
    assert any('clip_000' in line and '5/5' in line for line in lines[:-1])
