"""Frames of any size and tiled restoration (ascendcv/runner/predict.py: SpatialTiles, ClipToClip).

A small convolutional SR model of known receptive field (two 3x3 convolutions: 2 LR pixels) shows
the blending rule exactly: tiles whose kept part lies beyond the receptive field give the
whole-frame output; without overlap they do not. EDVR (tiny, random weights) through its task
shows the same within tolerance, and frames that are not a multiple of 4 restore (padded).
"""
import os

import numpy as np
import pytest
import tensorflow as tf

from ascendcv.runner.predict import (ClipToClip, SlidingWindow, SpatialTiles, fixed_batch,
                                     pad_to_multiple)

RNG = np.random.default_rng(0)
K1 = RNG.standard_normal((3, 3, 3, 8)).astype(np.float32) * 0.3
K2 = RNG.standard_normal((3, 3, 8, 12)).astype(np.float32) * 0.3


def local_sr_tf(x, per_frame=False):
    """x2 SR of ``[B, T, h, w, 3]`` with a 2-pixel receptive field (zero padding at the borders);
    the mean over frames (``[B, H, W, 3]``) or every frame (``[B, T, H, W, 3]``)."""
    x = tf.convert_to_tensor(x)
    s = tf.shape(x)
    f = tf.reshape(x, [-1, s[2], s[3], 3])
    y = tf.nn.conv2d(tf.nn.relu(tf.nn.conv2d(f, K1, 1, 'SAME')), K2, 1, 'SAME')
    y = tf.nn.depth_to_space(y, 2) + tf.image.resize(f, [2 * s[2], 2 * s[3]], 'nearest')
    y = tf.reshape(y, [s[0], s[1], 2 * s[2], 2 * s[3], 3])
    return y if per_frame else tf.reduce_mean(y, axis=1)


def local_sr(x, per_frame=False):
    return local_sr_tf(x, per_frame).numpy()


def frames(n, h, w):
    return RNG.random((n, h, w, 3), dtype=np.float32)


def test_tiles_equal_the_whole_frame_where_the_receptive_field_fits():
    x = frames(3, 37, 45)[None]
    whole = local_sr(x)
    # half the overlap (in output pixels, as the official test code counts it) >= (2 + 1) * 2
    for tile, overlap in [((16, 16), (12, 12)), ((16, 24), (12, 14)), ((0, 16), (0, 13))]:
        tiled = SpatialTiles(local_sr, tile, overlap)(x)
        assert tiled.shape == whole.shape == (1, 74, 90, 3)
        np.testing.assert_allclose(tiled, whole, atol=1e-5, err_msg=f'{tile} {overlap}')
    # without overlap the tile borders show
    assert np.abs(SpatialTiles(local_sr, (16, 16), (0, 0))(x) - whole).max() > 1e-2


def test_blending_weights_follow_the_official_rule():
    """Every tile but the first drops overlap // 2 output pixels at its start, every tile but
    the last ceil(overlap / 2) at its end; the rest is averaged."""
    calls = []

    def constant_per_tile(x):  # output = the tile's index, x1
        calls.append(x.shape)
        return np.full(x.shape[:1] + x.shape[2:], float(len(calls)), np.float32)

    x = frames(1, 10, 4)[None]
    out = SpatialTiles(constant_per_tile, (6, 0), (2, 0))(x)[0, :, 0, 0]
    # tiles at rows 0-5 and 4-9: the first drops 1 row at its end, the second 1 at its start
    np.testing.assert_array_equal(out, [1] * 5 + [2] * 5)
    calls.clear()
    out = SpatialTiles(constant_per_tile, (6, 0), (3, 0))(x)[0, :, 0, 0]
    # tiles at 0, 3 and 4 (the last shifted back to end at row 10); ends drop ceil(3/2) = 2
    # rows, starts 3 // 2 = 1: rows 0-3 | 4-6 | 5-9
    np.testing.assert_array_equal(out, [1, 1, 1, 1, 2, 2.5, 2.5, 3, 3, 3])
    assert calls == [(1, 1, 6, 4, 3)] * 3


def test_padding_to_a_multiple_mirrors_like_the_official_test_code_and_crops():
    x = frames(2, 30, 42)[None]
    seen = []

    def needs_8(x):
        seen.append(x.shape)
        assert x.shape[2] % 8 == 0 and x.shape[3] % 8 == 0
        return local_sr(x)

    out = SpatialTiles(needs_8, multiple=8)(x)
    assert seen == [(1, 2, 32, 48, 3)] and out.shape == (1, 60, 84, 3)
    # the official rule: cat([x, flip(x[-pad:])]) along each axis
    ref = np.concatenate([x, x[:, :, -2:][:, :, ::-1]], axis=2)
    ref = np.concatenate([ref, ref[:, :, :, -6:][:, :, :, ::-1]], axis=3)
    np.testing.assert_array_equal(pad_to_multiple(x, (32, 48), (2, 3)), ref)
    np.testing.assert_allclose(out, local_sr(ref)[:, :60, :84], atol=1e-6)


def test_bad_tiles_are_refused_naming_the_key():
    with pytest.raises(ValueError, match='inference.tile: a tile height of 18 is not a multiple of 4'):
        SpatialTiles(local_sr, (18, 16), (2, 2), multiple=4,
                     keys=('inference.tile', 'inference.tile_overlap'))
    with pytest.raises(ValueError, match='overlap 16 must be smaller than the tile 16'):
        SpatialTiles(local_sr, (16, 16), (4, 16))
    with pytest.raises(ValueError, match='clip_len=6 must be a multiple of the 4 frames'):
        ClipToClip(6, 2, multiple=4)


def test_clip_to_clip_tiles_in_time_and_space():
    video = frames(9, 20, 28)
    per_frame = lambda x: local_sr(x, per_frame=True)
    whole, _ = ClipToClip(0).restore(per_frame, video)
    got = []
    tiled, _ = ClipToClip(4, 2).restore(SpatialTiles(per_frame, (12, 16), (12 - 4, 12)), video,
                                        callback=lambda idx, out: got.append((idx, out)))
    assert tiled is None
    assert [i for idx, _ in got for i in idx] == list(range(9))  # handed on in order
    np.testing.assert_allclose(np.concatenate([o for _, o in got]), whole, atol=1e-5)
    # frames of clips that overlap are the mean of the clips' outputs (official test_video)
    clip_mean = lambda x: np.repeat(x.mean(axis=1, keepdims=True), x.shape[1], axis=1)
    out, _ = ClipToClip(4, 2).restore(clip_mean, video[:, :2, :2])
    starts = [0, 2, 4, 5]  # range(0, 9 - 4, 2) + [9 - 4]
    means = [video[s:s + 4, :2, :2].mean(axis=0) for s in starts]
    np.testing.assert_allclose(out[3], (means[0] + means[1]) / 2, atol=1e-6)  # clips 0 and 2
    np.testing.assert_allclose(out[5], (means[1] + means[2] + means[3]) / 3, atol=1e-6)


def test_clip_to_clip_pads_the_frame_count_to_the_model_multiple():
    calls = []

    def four_at_a_time(x):
        calls.append(x.shape[1])
        assert x.shape[1] % 4 == 0
        return local_sr(x, per_frame=True)

    video = frames(6, 8, 8)
    out, _ = ClipToClip(0, multiple=4).restore(four_at_a_time, video, indices=[5, 0])
    assert calls == [8] and out.shape == (2, 16, 16, 3)
    np.testing.assert_allclose(out, local_sr(video[None], per_frame=True)[0][[5, 0]], atol=1e-5)


def test_fixed_batch_pads_and_splits():
    seen = []

    def batch_of_4(x):
        seen.append(len(x))
        assert len(x) == 4
        return x * 2
    x = np.arange(7, dtype=np.float32)[:, None]
    np.testing.assert_array_equal(fixed_batch(batch_of_4, 4)(x), x * 2)
    np.testing.assert_array_equal(fixed_batch(batch_of_4, 4)(x[:1]), x[:1] * 2)
    assert seen == [4, 4, 4]


def test_uint8_outputs_blend_to_uint8():
    def uint8_model(x):
        return np.round(np.clip(local_sr(x), 0, 1) * 255).astype(np.uint8)
    x = frames(1, 24, 24)[None]
    whole, tiled = uint8_model(x), SpatialTiles(uint8_model, (16, 16), (12, 12))(x)
    assert tiled.dtype == np.uint8 and np.array_equal(tiled, whole)


@pytest.fixture(scope='module')
def edvr():
    from ascendvsr.config import load_config
    from ascendvsr.zoo import get_entry
    entry = get_entry('EDVR')
    cfg = load_config(None, list(entry.tiny) + ['edvr.num_frame=5'])  # 5-frame windows below
    return entry.make_task(cfg), entry.build(cfg)


def test_edvr_tiles_match_the_whole_frame_within_tolerance(edvr):
    task, model = edvr
    assert task.size_multiple(model) == 4
    video = frames(5, 32, 40)
    window = SlidingWindow(5, 'reflection_circle', 1)
    predict = task.predict_fn(model)
    whole, _ = window.restore(SpatialTiles(predict, multiple=4), video, [2])
    tiled, _ = window.restore(SpatialTiles(predict, (24, 32), (16, 24), 4), video, [2])
    assert np.abs(tiled - whole).max() < 5e-3
    no_overlap, _ = window.restore(SpatialTiles(predict, (16, 0), (0, 0), 4), video, [2])
    assert np.abs(no_overlap - whole).max() > 5e-2
    # a frame that is not a multiple of 4 is padded and cropped back
    odd = video[:, :30, :38]
    out, _ = window.restore(SpatialTiles(predict, multiple=4), odd, [2])
    assert out.shape == (1, 120, 152, 3)
    padded = pad_to_multiple(odd, (32, 40), (1, 2))
    ref, _ = window.restore(predict, padded, [2])
    np.testing.assert_allclose(out, ref[:, :120, :152], atol=1e-6)


class ClipModel:
    """A clip-to-clip model declaring its multiples, as an RVRT-style model would."""
    num_frame, num_in_ch, frame_multiple, size_multiple = 2, 3, 2, 8

    def __call__(self, x, training=False):
        t, h, w = x.shape[1:4]
        assert all(v is None or v % m == 0 for v, m in ((t, 2), (h, 8), (w, 8))), x.shape
        return local_sr_tf(x, per_frame=True)


def test_a_clip_task_declares_its_multiples_and_tiles_in_time_and_space(tmp_path):
    from ascendcv.runner.predict import ClipToClip
    from ascendvsr.config import load_config
    from ascendvsr.tasks.vsr import VideoRestorationTask

    class ClipTask(VideoRestorationTask):
        def strategy(self, model, batch_size, padding):
            return ClipToClip(0)

    video = frames(9, 20, 28)
    whole = local_sr(video[None], per_frame=True)[0]
    for tile, overlap in [([4, 16, 16], [2, 12, 12]), ([0, 0, 0], [0, 0, 0])]:
        cfg = load_config(None, [f'inference.tile={tile}', f'inference.tile_overlap={overlap}'])
        predict, strategy, check = ClipTask(cfg).predictor(ClipModel(), 1, 'reflection_circle')
        check(video.shape)
        assert strategy.multiple == 2 and strategy.clip_len == tile[0]
        out, _ = strategy.restore(predict, video)
        if tile[1]:  # every call is a tile: exactly the whole-video output
            np.testing.assert_allclose(out, whole, atol=1e-5)
        else:  # 9 frames -> 10 (mirrored), 20 x 28 -> 24 x 32 (mirrored), cropped back
            padded = pad_to_multiple(video, (10, 24, 32), (0, 1, 2))
            np.testing.assert_allclose(out, local_sr(padded[None], True)[0, :9, :40, :56],
                                       atol=1e-5)
    cfg = load_config(None, ['inference.tile=[3,16,16]'])
    with pytest.raises(ValueError, match='inference.tile.*multiple of the 2 frames'):
        ClipTask(cfg).predictor(ClipModel(), 1, 'reflection_circle')


def test_failed_inference_leaves_no_empty_output_folder(tmp_path):
    from ascendcv.runner.inferencer import run_inference
    from ascendcv.utils.video_io import write_png
    from ascendvsr.config import load_config
    src = tmp_path / 'clip'
    for i, f in enumerate((frames(3, 8, 8) * 255).astype(np.uint8)):
        write_png(str(src / f'{i:08d}.png'), f)
    cfg = load_config(None, [f'output_dir={tmp_path / "out"}', f'inference.source={src}'])

    def broken(x):
        raise ValueError('model failed')
    with pytest.raises(ValueError, match='model failed'):
        run_inference(cfg, broken, SlidingWindow(3), logger=lambda *_: None)
    assert not os.path.exists(tmp_path / 'out' / 'test')
