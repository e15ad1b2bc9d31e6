"""Frozen graphs serve every batch and frame size the runner feeds them (issue #12 items 1-2).

The default export takes any batch. A tiny EDVR (random weights) frozen the strictest way --
a static batch of 4 windows, 4-D input, 36x44 frames -- evaluates with partial and larger
batches and restores 34x42 frames (padded to its recorded multiple of 4) like the live model;
frames it cannot take are refused before any work, naming the .pb, its shape and the data's.
"""
import logging
import os

import numpy as np
import pytest

from ascendcv.dataloader.frame_indices import generate_frame_indices
from ascendcv.runner.freezer import FrozenGraphModel, freeze
from ascendcv.utils.video_io import read_frame_folder, write_png
from ascendvsr.config import load_config
from ascendvsr.zoo import get_entry

LOG = logging.getLogger('test_frozen_batches')
STATIC = ('export.batch_size=4', 'model.input_format_dimension=4', 'data.eval_in_size=[36,44]')


def make(sample_dataset, out, *opts):
    entry = get_entry('EDVR')
    cfg = load_config(None, list(entry.tiny) + [
        'edvr.num_frame=5',  # the window sizes below (the registered tiny EDVR takes 3)
        f'data.data_dir={sample_dataset}', f'output_dir={out}', 'eval.compute_ssim=False',
        'export.pb_xla_dcn=False', *opts])
    return entry.make_task(cfg), cfg


def live_restore(model, frames):
    """The live model (eager, one call) on every window of ``frames`` uint8 ``[N, h, w, 3]``."""
    x = frames.astype(np.float32) / 255.0
    n = len(x)
    windows = np.stack([x[generate_frame_indices(i, n, 5, 'reflection_circle')] for i in range(n)])
    return np.asarray(model(windows, training=False))


def folder(path, frames):
    for i, f in enumerate(frames):
        write_png(str(path / f'{i:08d}.png'), f)
    return path


def test_default_export_takes_any_batch(sample_dataset, tmp_path):
    entry = get_entry('EDVR')
    for opts, batch in [((), None), (('data.eval_batch_size=4',), None),
                        (('data.eval_batch_size=-1',), None), (('export.batch_size=2',), 2)]:
        task, cfg = make(sample_dataset, tmp_path, *opts)
        model = entry.build(cfg)
        assert task.serving_signature(model)[0].shape.as_list() == [batch, 5, 180, 320, 3]


@pytest.fixture(scope='module')
def static_graph(sample_dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp('frozen')
    task, cfg = make(sample_dataset, out, *STATIC)
    import keras
    keras.utils.set_random_seed(0)
    model = get_entry('EDVR').build(cfg)
    path, meta = freeze(task, model, os.path.join(out, 'EDVR.pb'))
    assert meta['inputs'][0]['shape'] == [20, 36, 44, 3]  # 4 windows x 5 frames
    assert meta['size_multiple'] == 4
    return model, FrozenGraphModel(path)


def test_static_batch_graph_is_fed_partial_and_larger_batches(sample_dataset, static_graph,
                                                              tmp_path):
    model, graph = static_graph
    lr = read_frame_folder(os.path.join(sample_dataset, 'images', '002', 'blur4'))
    want = live_restore(model, lr)
    for batch in (3, 6):  # 5 windows: batches of 3 + 2, or one of 5 (split into 4 + 1)
        task, _ = make(sample_dataset, tmp_path, *STATIC, f'data.eval_batch_size={batch}')
        predict, strategy, check = task.predictor(graph, batch, 'reflection_circle')
        check(lr.shape)
        got, _ = strategy.restore(predict, lr.astype(np.float32) / 255.0)
        np.testing.assert_allclose(got, want, atol=1e-4)
    # the whole evaluation (its last batch partial) runs and scores every frame
    report = task.evaluate(graph, LOG)
    assert [v['frames'] for v in report['videos'].values()] == [5, 5]


def test_frames_padded_to_the_recorded_multiple_or_refused_before_any_work(
        sample_dataset, static_graph, tmp_path):
    model, graph = static_graph
    lr = read_frame_folder(os.path.join(sample_dataset, 'images', '002', 'blur4'))
    # 34 x 42 frames (not multiples of 4) are padded to the graph's 36 x 44 and cropped back
    src = folder(tmp_path / 'odd', lr[:3, :34, :42])
    task, _ = make(sample_dataset, tmp_path / 'a', *STATIC, 'data.eval_batch_size=1',
                   f'inference.source={src}')
    restored = read_frame_folder(task.infer(graph, LOG))
    assert restored.shape == (3, 136, 168, 3)
    padded = np.pad(lr[:3, :34, :42], ((0, 0), (0, 2), (0, 2), (0, 0)), mode='symmetric')
    want = np.round(np.clip(live_restore(model, padded)[:, :136, :168], 0, 1) * 255)
    assert np.abs(restored.astype(np.float64) - want).max() <= 1
    # 28 x 36 frames cannot become 36 x 44: refused before the graph runs or a folder is made
    src = folder(tmp_path / 'small', lr[:3, :28, :36])
    task, _ = make(sample_dataset, tmp_path / 'b', *STATIC, f'inference.source={src}')
    calls, run = [], graph._fn
    graph._fn = lambda *a: calls.append(1) or run(*a)
    try:
        with pytest.raises(ValueError) as err:
            task.infer(graph, LOG)
    finally:
        graph._fn = run
    msg = str(err.value)
    assert graph.path in msg and '[20, 36, 44, 3]' in msg and '[3, 28, 36, 3]' in msg
    assert 'data.eval_in_size=[28,36]' in msg
    assert not calls and not os.path.exists(tmp_path / 'b' / 'test')
