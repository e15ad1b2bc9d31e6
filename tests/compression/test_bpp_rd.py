"""Bits-per-pixel accounting, Huffman sizes, rate-distortion CSV and PNG plot."""
import keras
import numpy as np
import pytest
from PIL import Image

from ascendvsr.compression.bpp import huffman_bits, storage_report
from ascendvsr.compression.pruning import prune_model
from ascendvsr.compression.quantization import quantize_model
from ascendvsr.compression.rd import nice_ticks, plot_rd, read_rd_csv, write_rd_csv
from ascendvsr.models.nerv import NeRV

TINY = dict(embed='1.25_40', stem_dim_num='64_1', fc_hw_dim='3_4_8', strides=[2, 2],
            lower_width=6, reduction=2, expansion=1.0, act='swish', num_frames=8)


def test_huffman_bits():
    # counts 1, 1, 2, 4 -> code lengths 3, 3, 2, 1 -> 3 + 3 + 4 + 4 = 14 bits
    assert huffman_bits(np.array([7, 8, 9, 9, 5, 5, 5, 5])) == 14
    assert huffman_bits(np.array([3, 3, 3])) == 3
    assert huffman_bits([np.array([1, 2]), np.array([2, 2])]) == 4  # two symbols: 1 bit each
    assert huffman_bits(np.array([], np.int64)) == 0


def test_bpp_counts_stored_nonzero_values():
    keras.utils.set_random_seed(0)
    model = NeRV(**TINY, pruning=True)
    n = model.count_parameters()
    assert n == 15533
    dense = storage_report(model, 8, 12, 16)
    assert dense['params'] == n and dense['stored_values'] == n
    assert dense['bpp'] == pytest.approx(n * 32 / (8 * 12 * 16))
    assert dense['mask_bits'] == 0
    prune_model(model, 0.5)
    codes = quantize_model(model, 6, axis=0)
    rep = storage_report(model, 8, 12, 16, quant_bit=6, quant_axis=0, codes=codes)
    stored = rep['stored_values']
    assert stored < n * 0.6
    assert rep['bpp'] == pytest.approx(stored * 6 / (8 * 12 * 16))
    assert rep['bpp_dense'] == pytest.approx(n * 6 / (8 * 12 * 16))
    assert rep['prunable_sparsity'] == pytest.approx(0.5, abs=1e-3)
    # side information: 64 bits per quantised slice, a bitmap over the prunable weights
    assert rep['quant_overhead_bits'] == 64 * (64 + 96 + 32 + 24 + 3) + 64 * 5
    assert rep['mask_bits'] > 0 and rep['bpp_with_side_info'] > rep['bpp']
    assert 0 < rep['bpp_huffman'] <= rep['bpp'] + 1e-12


def test_rd_csv_round_trip_and_png(tmp_path):
    rows = [dict(series='prune', bpp=0.30, psnr=30.1, prune_ratio=0.9),
            dict(series='prune', bpp=0.20, psnr=29.0, prune_ratio=0.6),
            dict(series='quant', bpp=0.15, psnr=29.5, quant_bit=6),
            dict(series='quant', bpp=0.10, psnr=27.2, quant_bit=4)]
    path = write_rd_csv(tmp_path / 'rd.csv', rows)
    back = read_rd_csv(path)
    assert [r['series'] for r in back] == ['prune'] * 2 + ['quant'] * 2
    assert back[2]['quant_bit'] == 6.0 and back[0]['quant_bit'] == ''
    png = plot_rd(tmp_path / 'rd.png', rows)
    img = np.asarray(Image.open(png).convert('RGB'))
    assert img.shape == (560, 800, 3)
    colours = {tuple(c) for c in img.reshape(-1, 3)}
    assert (31, 119, 180) in colours and (214, 39, 40) in colours  # both series drawn
    with pytest.raises(ValueError, match='lacks'):
        write_rd_csv(tmp_path / 'bad.csv', [dict(series='x', bpp=1.0)])
    with pytest.raises(ValueError, match='finite'):
        plot_rd(tmp_path / 'bad.png', [dict(series='x', bpp=float('nan'), psnr=1.0)])


def test_nice_ticks_cover_the_range():
    ticks = nice_ticks(0.013, 0.25)
    assert ticks[0] <= 0.013 and ticks[-1] >= 0.25 and 3 <= len(ticks) <= 8
    assert nice_ticks(30, 30)[-1] > 30
