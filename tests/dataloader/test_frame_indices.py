"""Temporal padding at clip ends, as BasicSR's generate_frame_indices (its documented examples)."""
import pytest

from ascendcv.dataloader.frame_indices import generate_frame_indices


@pytest.mark.parametrize('padding,start,end', [
    ('replicate', [0, 0, 0, 1, 2], [97, 98, 99, 99, 99]),
    ('reflection', [2, 1, 0, 1, 2], [97, 98, 99, 98, 97]),
    ('reflection_circle', [4, 3, 0, 1, 2], [97, 98, 99, 96, 95]),
    ('circle', [3, 4, 0, 1, 2], [97, 98, 99, 95, 96]),
])
def test_basicsr_examples(padding, start, end):
    assert generate_frame_indices(0, 100, 5, padding) == start
    assert generate_frame_indices(99, 100, 5, padding) == end
    assert generate_frame_indices(50, 100, 5, padding) == [48, 49, 50, 51, 52]


def test_window_of_seven_and_short_clip_stays_in_range():
    for padding in ('replicate', 'reflection', 'reflection_circle', 'circle'):
        for c in range(3):
            idx = generate_frame_indices(c, 3, 7, padding)
            assert len(idx) == 7 and idx[3] == c and all(0 <= i < 3 for i in idx)


def test_bad_arguments():
    with pytest.raises(ValueError, match='odd'):
        generate_frame_indices(0, 10, 4)
    with pytest.raises(ValueError, match='padding'):
        generate_frame_indices(0, 10, 5, 'zeros')
    with pytest.raises(IndexError, match='frame index 10 is outside the clip of 10 frames'):
        generate_frame_indices(10, 10, 5)
