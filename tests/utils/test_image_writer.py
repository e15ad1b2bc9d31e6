"""Tests for ascendcv.utils.image_writer.QueuedImageWriter (real PNG files in tmp_path)."""
import os
import time

import numpy as np
import pytest

from ascendcv.utils.image_writer import DRAIN_MESSAGE, ImageWriteError, QueuedImageWriter
from ascendcv.utils.video_io import read_frame_folder

MESSAGE = 'Writing images to files. This may take some time...'


def _frames(n, h=24, w=32, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, 3), dtype=np.uint8)


def _temp_files(folder):
    found = []
    for root, _, files in os.walk(folder):
        found += [os.path.join(root, f) for f in files if f.startswith('.tmp-')]
    return found


def _wait_until(condition, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, 'timed out'
        time.sleep(0.005)


def test_drain_message_text():
    assert DRAIN_MESSAGE == MESSAGE


def test_writes_all_images_with_small_queue(tmp_path):
    frames = _frames(40)
    out = tmp_path / 'out'
    with QueuedImageWriter(num_workers=2, max_queue=2) as writer:
        buffer = np.empty_like(frames[0])
        for i, frame in enumerate(frames):
            buffer[...] = frame                   # the caller reuses its buffer
            writer.put(out / f'{i:04d}.png', buffer)
    assert writer.written == 40 and writer.failed == 0 and writer.pending == 0
    assert sorted(os.listdir(out)) == [f'{i:04d}.png' for i in range(40)]
    np.testing.assert_array_equal(read_frame_folder(out), frames)
    assert _temp_files(tmp_path) == []


def test_close_prints_message_when_items_remain(tmp_path, capsys):
    # big noise frames compress slowly: one worker cannot finish 6 of them before close()
    frames = _frames(6, 512, 512, seed=1)
    writer = QueuedImageWriter(num_workers=1, max_queue=8)
    for i, frame in enumerate(frames):
        writer.put(tmp_path / f'{i}.png', frame)
    writer.close()
    assert capsys.readouterr().out == MESSAGE + '\n'
    assert writer.written == 6
    np.testing.assert_array_equal(read_frame_folder(tmp_path), frames)
    assert _temp_files(tmp_path) == []


def test_close_is_silent_when_nothing_remains(tmp_path, capsys):
    writer = QueuedImageWriter(num_workers=1, max_queue=4)
    writer.put(tmp_path / 'a.png', _frames(1)[0])
    _wait_until(lambda: writer.pending == 0)
    writer.close()
    writer.close()                                # idempotent
    assert capsys.readouterr().out == ''
    assert writer.written == 1


def test_worker_error_raised_from_close(tmp_path):
    blocker = tmp_path / 'file.txt'
    blocker.write_text('a regular file, not a folder')
    bad = blocker / 'x.png'
    frames = _frames(5)
    writer = QueuedImageWriter(num_workers=2, max_queue=2)
    writer.put(tmp_path / 'ok0.png', frames[0])
    writer.put(bad, frames[1])
    for i in (2, 3, 4):
        try:
            writer.put(tmp_path / f'ok{i}.png', frames[i])
        except ImageWriteError:
            break                                 # error already noticed: put refuses
    with pytest.raises(ImageWriteError) as info:
        writer.close()
    assert str(bad) in str(info.value)
    assert info.value.path == str(bad)
    assert isinstance(info.value, OSError) and isinstance(info.value.__cause__, OSError)
    assert writer.failed == 1
    assert (tmp_path / 'ok0.png').is_file()       # the good frames were still written
    assert _temp_files(tmp_path) == []


def test_put_raises_after_worker_error(tmp_path):
    blocker = tmp_path / 'file.txt'
    blocker.write_text('x')
    writer = QueuedImageWriter(num_workers=1, max_queue=4)
    writer.put(blocker / 'bad.png', _frames(1)[0])
    _wait_until(lambda: writer.failed == 1)
    start = time.monotonic()
    with pytest.raises(ImageWriteError, match='bad.png'):
        writer.put(tmp_path / 'later.png', _frames(1)[0])
    assert time.monotonic() - start < 1.0
    with pytest.raises(ImageWriteError, match='bad.png'):
        writer.close()
    assert not (tmp_path / 'later.png').exists()


def test_failing_writes_never_deadlock_the_producer(tmp_path):
    blocker = tmp_path / 'file.txt'
    blocker.write_text('x')
    frame = _frames(1)[0]
    writer = QueuedImageWriter(num_workers=1, max_queue=1)
    start = time.monotonic()
    with pytest.raises(ImageWriteError):
        for i in range(10_000):                   # put() must start raising long before this
            writer.put(blocker / f'{i}.png', frame)
    assert time.monotonic() - start < 30
    with pytest.raises(ImageWriteError, match='images failed in total|file.txt'):
        writer.close()


def test_keyboard_interrupt_still_drains_everything(tmp_path, capsys):
    frames = _frames(20, 256, 256, seed=2)
    with pytest.raises(KeyboardInterrupt):
        with QueuedImageWriter(num_workers=1, max_queue=20) as writer:
            for i, frame in enumerate(frames):
                writer.put(tmp_path / f'{i:03d}.png', frame)
            raise KeyboardInterrupt               # Ctrl-C while frames are still queued
    assert writer.written == 20
    np.testing.assert_array_equal(read_frame_folder(tmp_path), frames)
    assert _temp_files(tmp_path) == []
    assert MESSAGE in capsys.readouterr().out


def test_close_in_finally_after_interrupt(tmp_path):
    frames = _frames(10, 64, 64, seed=3)
    writer = QueuedImageWriter(num_workers=2, max_queue=3)
    with pytest.raises(KeyboardInterrupt):
        try:
            for i, frame in enumerate(frames):
                writer.put(tmp_path / f'{i}.png', frame)
                if i == 6:
                    raise KeyboardInterrupt
        finally:
            writer.close()
    assert writer.written == 7
    np.testing.assert_array_equal(read_frame_folder(tmp_path), frames[:7])


def test_body_exception_wins_over_write_error(tmp_path):
    blocker = tmp_path / 'file.txt'
    blocker.write_text('x')
    with pytest.raises(RuntimeError, match='model crashed') as info:
        with QueuedImageWriter(num_workers=1) as writer:
            writer.put(blocker / 'bad.png', _frames(1)[0])
            raise RuntimeError('model crashed')
    notes = getattr(info.value, '__notes__', [])
    assert any('bad.png' in note for note in notes)


def test_put_after_close_and_bad_input(tmp_path):
    writer = QueuedImageWriter(num_workers=1, max_queue=2)
    with pytest.raises(TypeError, match='uint8'):
        writer.put(tmp_path / 'f.png', np.zeros((4, 4, 3), np.float32))
    with pytest.raises(ValueError, match='PNG'):
        writer.put(tmp_path / 'f.jpg', np.zeros((4, 4, 3), np.uint8))
    writer.close()
    with pytest.raises(RuntimeError, match='closed'):
        writer.put(tmp_path / 'f.png', np.zeros((4, 4, 3), np.uint8))
    assert writer.written == 0 and os.listdir(tmp_path) == []


@pytest.mark.parametrize('kwargs', [{'num_workers': 0}, {'max_queue': 0}, {'num_workers': 1.5}])
def test_bad_constructor_arguments(kwargs):
    with pytest.raises(ValueError):
        QueuedImageWriter(**kwargs)
