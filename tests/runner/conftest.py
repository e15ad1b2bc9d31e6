"""Fixtures for the workflow tests."""
import pytest


@pytest.fixture(scope='session')
def sample_dataset(tmp_path_factory):
    """REDS-layout dataset from the bundled real clips: bikes (train), carphone (val), 10 frames."""
    from ascendcv.dataloader.prepare import prepare_dataset
    out = tmp_path_factory.mktemp('data') / 'sample'
    prepare_dataset(['bikes'], str(out), clip_len=5, val_sources=['carphone'], max_frames=10,
                    progress=False)
    return str(out)
