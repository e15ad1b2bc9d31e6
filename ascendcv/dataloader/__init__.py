"""Frame-folder datasets (REDS, Vimeo90K layouts), augmentation and the tf.data pipelines.

The dataset classes and :func:`augment` are numpy-only; the pipeline helpers
(``build_dataset``, ``build_train_pipeline``, ...) are imported on first use, so importing this
package does not import TensorFlow.
"""
from ascendcv.dataloader.augment import augment
from ascendcv.dataloader.frame_indices import generate_frame_indices
from ascendcv.dataloader.frame_clips import ClipInfo, DatasetError, FrameClipDataset
from ascendcv.dataloader.reds import RedsDataset, write_toy_reds
from ascendcv.dataloader.vimeo import Vimeo90KDataset, write_toy_vimeo

_PIPELINE = ('build_dataset', 'build_train_pipeline', 'load_training_sample',
             'global_sample_index', 'describe', 'DATASET_TYPES')

__all__ = ['augment', 'generate_frame_indices', 'ClipInfo', 'DatasetError', 'FrameClipDataset',
           'RedsDataset', 'Vimeo90KDataset', 'write_toy_reds', 'write_toy_vimeo', *_PIPELINE]


def __getattr__(name):
    if name in _PIPELINE:
        from ascendcv.dataloader import pipeline
        return getattr(pipeline, name)
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
