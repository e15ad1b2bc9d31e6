"""Tests for ascendcv.utils.mindspore_checkpoint (MindSpore .ckpt reader without MindSpore)."""
import binascii
import hashlib
import json
import os
import re

import numpy as np
import pytest

from ascendcv.utils.mindspore_checkpoint import (CheckpointError, encode_record,
                                                 load_mindspore_checkpoint,
                                                 save_mindspore_checkpoint)

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'fixtures')
CKPT = os.path.join(FIXTURES, 'rvrt_light_tiny_a.ckpt')  # written by mindspore.save_checkpoint
# shape, dtype, SHA-256 of each array of the MindSpore run's rvrt_light_tiny_a_weights.npz (the
# same weights saved by numpy; tools/fixtures/rvrt_light_weights_digest.py)
WEIGHTS = os.path.join(FIXTURES, 'rvrt_light_tiny_a_weights_sha256.json')


def _bytes(path):
    with open(path, 'rb') as f:
        return f.read()


def _write(tmp_path, data, name='x.ckpt'):
    p = tmp_path / name
    p.write_bytes(data)
    return str(p)


def test_real_checkpoint_equals_numpy_weights():
    sd = load_mindspore_checkpoint(CKPT)
    with open(WEIGHTS) as f:
        ref = json.load(f)['entries']
    assert len(sd) == len(ref) == 250
    assert list(sd) == [e['name'] for e in ref]  # file order = parameters_and_names() order
    for e in ref:
        arr = sd[e['name']]
        assert arr.dtype == np.dtype(e['dtype']) == np.float32, e['name']
        assert list(arr.shape) == e['shape'], e['name']
        assert arr.flags['C_CONTIGUOUS'] and \
            hashlib.sha256(arr.tobytes()).hexdigest() == e['sha256'], e['name']  # bit for bit
    assert sd['feat_extract.main.1.weight'].shape == (24, 3, 1, 3, 3)
    assert sd['feat_extract.main.1.weight'].flags['WRITEABLE']


def test_writer_reproduces_mindspore_bytes(tmp_path):
    """Our writer emits exactly what mindspore.save_checkpoint wrote for the fixture."""
    out = save_mindspore_checkpoint(tmp_path / 'rt.ckpt', load_mindspore_checkpoint(CKPT))
    assert _bytes(out) == _bytes(CKPT)


def test_dtypes_scalars_strings_and_slices(tmp_path):
    tensors = {
        'w': np.arange(2 * 3 * 5, dtype=np.float32).reshape(2, 3, 5) / 7,
        'idx': np.arange(-4, 12, dtype=np.int64).reshape(4, 4),
        'half': np.linspace(-2, 2, 9).astype(np.float16),
        'mask': np.array([True, False, True]),
        'u8': np.arange(6, dtype=np.uint8).reshape(2, 3),
        'step': np.array(7, dtype=np.int32),       # scalar -> dims [0]
        'lr': np.array(0.5, dtype=np.float64),
        'one': np.array([3.0], dtype=np.float32),  # dims [1] stays (1,)
        'empty': np.zeros((0,), dtype=np.float32),
        'note': 'epoch_num=3 äö',                  # append_dict string
    }
    path = save_mindspore_checkpoint(tmp_path / 'a.ckpt', tensors, slice_bytes=16)
    raw = _bytes(path)
    assert raw.count(b'\x0a\x01w') > 1  # 'w' really is split into several records
    sd = load_mindspore_checkpoint(path)
    assert list(sd) == list(tensors)
    for k, v in tensors.items():
        if isinstance(v, str):
            assert sd[k] == v
        else:
            assert sd[k].dtype == v.dtype and sd[k].shape == v.shape, k
            np.testing.assert_array_equal(sd[k], v, err_msg=k)


def test_bfloat16_uint_spelling_packed_dims_and_unknown_fields(tmp_path):
    f32 = np.array([1.5, -2.25, 3.0e-3], dtype=np.float32)
    bf16 = (f32.view(np.uint32) >> 16).astype('<u2').tobytes()  # exact for these values' tops
    packed = b'\x0a\x01\x03'  # dims as a packed field: [3]
    tensor = packed + b'\x12\x06Uint16' + b'\x1a\x06' + np.array([1, 2, 65535], '<u2').tobytes()
    tensor += b'\x20\x05'  # unknown varint field 4: skipped
    value = b'\x0a\x03old' + b'\x12' + bytes([len(tensor)]) + tensor
    data = encode_record('bf', [3], 'BFloat16', bf16) + b'\x0a' + bytes([len(value)]) + value
    sd = load_mindspore_checkpoint(_write(tmp_path, data))
    expected = ((f32.view(np.uint32) >> 16) << 16).view(np.float32)
    assert sd['bf'].dtype == np.float32
    np.testing.assert_array_equal(sd['bf'], expected)
    assert sd['old'].dtype == np.uint16 and sd['old'].tolist() == [1, 2, 65535]


def test_crc_trailer_checked_and_stripped(tmp_path):
    tensors = {'a': np.ones((2, 2), np.float32), 'b': np.arange(3, dtype=np.int64)}
    path = save_mindspore_checkpoint(tmp_path / 'c.ckpt', tensors, crc_check=True)
    raw = _bytes(path)
    assert raw[-17:-10] == b'crc_num'
    assert int.from_bytes(raw[-10:], 'big') == binascii.crc32(raw[:-17])
    np.testing.assert_array_equal(load_mindspore_checkpoint(path)['b'], tensors['b'])
    bad = bytearray(raw)
    bad[40] ^= 0x01  # a content byte
    with pytest.raises(CheckpointError, match='CRC check failed'):
        load_mindspore_checkpoint(_write(tmp_path, bytes(bad), 'bad.ckpt'))


@pytest.mark.parametrize('cut', [1, 3, 40, 2500, 1_000_000, -7, -1])
def test_truncated_file_names_file_and_offset(tmp_path, cut):
    raw = _bytes(CKPT)
    path = _write(tmp_path, raw[:cut] if cut > 0 else raw[:cut], 'cut.ckpt')
    with pytest.raises(CheckpointError) as err:
        load_mindspore_checkpoint(path)
    msg = str(err.value)
    assert 'cut.ckpt' in msg and re.search(r'byte offset \d+', msg), msg
    assert 'truncated' in msg, msg


def test_unknown_dtype_is_named(tmp_path):
    data = encode_record('ok', [2], 'Float32', np.zeros(2, np.float32).tobytes())
    data += encode_record('q.weight', [4], 'Int4', b'\x12\x34')
    with pytest.raises(CheckpointError, match=r"'q\.weight'.*byte offset \d+.*'Int4'"):
        load_mindspore_checkpoint(_write(tmp_path, data))


def test_content_size_must_match_shape(tmp_path):
    data = encode_record('w', [2, 3], 'Float32', np.zeros(5, np.float32).tobytes())
    with pytest.raises(CheckpointError, match=r"'w'.*shape \[2, 3\] \(6 elements\) but 5"):
        load_mindspore_checkpoint(_write(tmp_path, data))
    data = encode_record('w', [2], 'Float32', b'\x00' * 7)
    with pytest.raises(CheckpointError, match='not a multiple'):
        load_mindspore_checkpoint(_write(tmp_path, data))


def test_map_parameter_duplicate_and_missing_fields(tmp_path):
    value = b'\x0a\x01m' + b'\x1a\x00'  # maptensor
    with pytest.raises(CheckpointError, match='MapParameter'):
        load_mindspore_checkpoint(_write(tmp_path, b'\x0a' + bytes([len(value)]) + value))
    one = encode_record('a', [1], 'Float32', b'\x00' * 4)
    two = encode_record('b', [1], 'Float32', b'\x00' * 4)
    with pytest.raises(CheckpointError, match="'a'.*appears twice"):
        load_mindspore_checkpoint(_write(tmp_path, one + two + one))
    tensor = b'\x08\x01' + b'\x1a\x04' + b'\x00' * 4  # no tensor_type
    value = b'\x0a\x01t' + b'\x12' + bytes([len(tensor)]) + tensor
    with pytest.raises(CheckpointError, match='required tensor_type'):
        load_mindspore_checkpoint(_write(tmp_path, b'\x0a' + bytes([len(value)]) + value))


def test_not_a_mindspore_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match='does not exist'):
        load_mindspore_checkpoint(tmp_path / 'missing.ckpt')
    with pytest.raises(CheckpointError, match='empty file'):
        load_mindspore_checkpoint(_write(tmp_path, b''))
    # an .npz (zip) and a torch pickle are refused at the first bytes, nothing is unpickled
    npz = os.path.join(FIXTURES, 'rvrt_light_tiny_a_io.npz')
    with pytest.raises(CheckpointError, match=r'io\.npz: not a valid MindSpore checkpoint '
                                              r'at byte offset 0'):
        load_mindspore_checkpoint(npz)
    pickled = b'\x80\x02cos\nsystem\nq\x00X\x04\x00\x00\x00echoq\x01\x85q\x02Rq\x03.'
    with pytest.raises(CheckpointError, match='not a valid MindSpore checkpoint'):
        load_mindspore_checkpoint(_write(tmp_path, pickled, 'evil.ckpt'))
    rng = np.random.default_rng(0)
    with pytest.raises(CheckpointError, match='byte offset'):
        load_mindspore_checkpoint(_write(tmp_path, rng.bytes(4096), 'noise.ckpt'))
