"""Tests for ascendcv.utils.torch_checkpoint (PyTorch .pth reader without torch)."""
import json
import os
import pickle
import struct
import sys
import zipfile
from collections import OrderedDict

import numpy as np
import pytest

from ascendcv.utils.torch_checkpoint import (CheckpointError, PickledObject, get_attr,
                                             load_state_dict, load_torch_file, module_state_dict)

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'fixtures')


def fx(name):
    return os.path.join(FIXTURES, name)


def meta(name):
    with open(fx(name)) as f:
        return json.load(f)


def _read_bytes(path):
    with open(path, 'rb') as f:
        return f.read()


def assert_same_state_dict(a, b):
    assert list(a) == list(b)
    for k in a:
        assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape, k
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def assert_matches_shapes(sd, expected):
    """``expected``: ordered mapping key -> shape list, as in the *_meta.json files."""
    assert list(sd) == list(expected)
    for k, shape in expected.items():
        assert sd[k].shape == tuple(shape), k
        assert sd[k].dtype == np.float32 and sd[k].flags['C_CONTIGUOUS'], k


# ---------------------------------------------------------------------------------------------
# real fixtures written by torch.save


def test_edvr_a_zip_params_wrapper():
    m = meta('edvr_tiny_a_meta.json')['checkpoint']
    raw = load_torch_file(fx('edvr_tiny_a_ckpt.pth'))
    assert list(raw) == m['structure']['keys_in_order'] == ['params']
    assert isinstance(raw['params'], OrderedDict)
    sd = load_state_dict(fx('edvr_tiny_a_ckpt.pth'))
    assert_matches_shapes(sd, m['state_dict_keys'])
    assert sum(v.size for v in sd.values()) == m['structure']['params']['n_elements']


def test_edvr_a_legacy_cuda_equals_zip():
    zip_sd = load_state_dict(fx('edvr_tiny_a_ckpt.pth'))
    legacy_sd = load_state_dict(fx('edvr_tiny_a_params_legacy_cuda.pth'))
    assert_same_state_dict(legacy_sd, zip_sd)
    assert list(load_torch_file(fx('edvr_tiny_a_params_legacy_cuda.pth'))) == ['params']


def test_edvr_b_raw_state_dict():
    m = meta('edvr_tiny_b_meta.json')['checkpoint']
    sd = load_state_dict(fx('edvr_tiny_b_ckpt.pth'))
    assert_matches_shapes(sd, m['state_dict_keys'])
    assert len(sd) == m['structure']['n_tensors']
    assert sum(v.size for v in sd.values()) == m['structure']['n_elements']


def test_edvr_c_prefers_params_ema():
    m = meta('edvr_tiny_c_meta.json')['checkpoint']
    raw = load_torch_file(fx('edvr_tiny_c_ckpt.pth'))
    assert list(raw) == ['params', 'params_ema']
    default = load_state_dict(fx('edvr_tiny_c_ckpt.pth'))
    ema = load_state_dict(fx('edvr_tiny_c_ckpt.pth'), key='params_ema')
    params = load_state_dict(fx('edvr_tiny_c_ckpt.pth'), key='params')
    assert_matches_shapes(default, m['state_dict_keys'])
    assert_matches_shapes(params, m['state_dict_keys'])
    assert_same_state_dict(default, ema)
    assert any(not np.array_equal(params[k], ema[k]) for k in ema)


def test_revsci_whole_module_pickle_state_dict():
    m = meta('revsci_g2b2_meta.json')
    model = load_torch_file(fx('revsci_g2b2_model.pth'))
    assert isinstance(model, PickledObject)
    assert (model.module, model.name) == ('models', 're_3dcnn')
    assert 'models' not in sys.modules and 'my_tools' not in sys.modules  # nothing was imported
    sd = module_state_dict(model)
    assert_matches_shapes(sd, m['checkpoints']['state_dict']['keys'])
    assert_same_state_dict(sd, load_state_dict(fx('revsci_g2b2_state_dict.pth')))
    assert_same_state_dict(sd, load_state_dict(fx('revsci_g2b2_state_dict_legacy_cuda.pth')))
    assert_same_state_dict(sd, load_state_dict(fx('revsci_g2b2_model.pth')))
    assert sum(v.size for v in sd.values()) == m['n_params']


def test_revsci_module_attributes():
    m = meta('revsci_g2b2_meta.json')
    model = load_torch_file(fx('revsci_g2b2_model.pth'))
    mask = get_attr(model, 'mask')
    assert isinstance(mask, np.ndarray) and mask.dtype == np.float32
    assert mask.shape == tuple(m['arrays']['mask']['shape']) == (8, 32, 32)
    assert set(np.unique(mask)) <= {0.0, 1.0}
    conv = get_attr(model, 'conv1.0')
    assert (conv.module, conv.name) == ('torch.nn.modules.conv', 'Conv3d')
    assert get_attr(conv, 'kernel_size') == (5, 5, 5)
    assert get_attr(model, 'layers').name == 'ModuleList'
    np.testing.assert_array_equal(get_attr(model, 'conv1.0.weight'),
                                  module_state_dict(model)['conv1.0.weight'])
    with pytest.raises(AttributeError):
        get_attr(model, 'no_such_attribute')


def test_revsci_rev1b2_whole_module_pickle():
    m = meta('revsci_rev1b2_meta.json')
    model = load_torch_file(fx('revsci_rev1b2_model.pth'))
    assert model.name == 're_3dcnn1'
    sd = load_state_dict(fx('revsci_rev1b2_model.pth'))
    assert_matches_shapes(sd, m['checkpoints']['state_dict']['keys'])
    assert get_attr(model, 'mask').shape == tuple(m['arrays']['mask']['shape'])


def test_nerv_state_dict_keys():
    expected = OrderedDict()
    with open(fx('nerv_tiny_state_dict_keys.txt')) as f:
        for line in f:
            if line.strip() and not line.startswith('#'):
                name, shape, dtype = line.rstrip('\n').split('\t')
                assert dtype == 'torch.float32'
                expected[name] = list(eval(shape))  # "(64, 80)" -> [64, 80]
    sd = load_state_dict(fx('nerv_tiny_state_dict.pth'))
    assert_matches_shapes(sd, expected)
    assert sum(v.size for v in sd.values()) == 15533


# ---------------------------------------------------------------------------------------------
# error cases


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match='nope.pth.*does not exist'):
        load_state_dict(tmp_path / 'nope.pth')


def test_text_file(tmp_path):
    path = tmp_path / 'notes.pth'
    path.write_text('these are not the weights you are looking for\n')
    with pytest.raises(CheckpointError, match='notes.pth.*is not a PyTorch checkpoint'):
        load_state_dict(path)
    (tmp_path / 'empty.pth').write_bytes(b'')
    with pytest.raises(CheckpointError, match='empty.pth.*is not a PyTorch checkpoint'):
        load_torch_file(tmp_path / 'empty.pth')


def test_npz_file(tmp_path):
    path = tmp_path / 'weights.npz'
    np.savez(path, w=np.ones(3, np.float32))
    with pytest.raises(CheckpointError, match='weights.npz.*is not a PyTorch checkpoint'):
        load_state_dict(path)


@pytest.mark.parametrize('fraction', [0.5, 0.99])
def test_truncated_zip(tmp_path, fraction):
    data = _read_bytes(fx('edvr_tiny_a_ckpt.pth'))
    path = tmp_path / 'cut_zip.pth'
    path.write_bytes(data[:int(len(data) * fraction)])
    with pytest.raises(CheckpointError, match='cut_zip.pth.*truncated or corrupt'):
        load_state_dict(path)


@pytest.mark.parametrize('cut', [8, 100, 5000, 16000, 20000, -1000, -1])
def test_truncated_legacy(tmp_path, cut):
    data = _read_bytes(fx('edvr_tiny_a_params_legacy_cuda.pth'))
    path = tmp_path / 'cut_legacy.pth'
    path.write_bytes(data[:cut])
    with pytest.raises(CheckpointError, match='cut_legacy.pth.*truncated or corrupt'):
        load_state_dict(path)


def test_missing_key_lists_available_keys():
    with pytest.raises(CheckpointError, match=r"edvr_tiny_a_ckpt.pth.*'params_ema'.*\['params'\]"):
        load_state_dict(fx('edvr_tiny_a_ckpt.pth'), key='params_ema')
    with pytest.raises(CheckpointError, match='revsci_g2b2_model.pth.*not found'):
        load_state_dict(fx('revsci_g2b2_model.pth'), key='params')


# ---------------------------------------------------------------------------------------------
# hand-written pickles (protocol-2 opcodes) for the formats torch.save can produce


def _g(module, name):
    return b'c%s\n%s\n' % (module.encode(), name.encode())


def _s(text):
    raw = text.encode()
    return b'X' + struct.pack('<I', len(raw)) + raw


def _i(value):
    return b'J' + struct.pack('<i', value)


def _t(*items):
    return b'(' + b''.join(items) + b't'


def _dict(items):
    return b'}(' + b''.join(_s(k) + v for k, v in items) + b'u'


_EMPTY_OD = _g('collections', 'OrderedDict') + b')R'


def _tensor_args(storage_global, key, numel, size, stride, offset=0, view=None):
    pid = [_s('storage'), _g(*storage_global), _s(key), _s('cuda:0'), _i(numel)]
    if view is not None:
        pid.append(_t(_s(view[0]), _i(view[1]), _i(view[2])))
    return _t(_t(*pid) + b'Q', _i(offset), _t(*map(_i, size)), _t(*map(_i, stride)), b'\x89', _EMPTY_OD)


def _tensor(*args, **kwargs):
    return _g('torch._utils', '_rebuild_tensor_v2') + _tensor_args(*args, **kwargs) + b'R'


def _pickle(body):
    return b'\x80\x02' + body + b'.'


def _write_zip(path, data_pkl, records, folder='some odd-name', byteorder=b'little'):
    with zipfile.ZipFile(path, 'w') as z:
        z.writestr(folder + '/data.pkl', data_pkl)
        if byteorder is not None:
            z.writestr(folder + '/byteorder', byteorder)
        for key, raw in records.items():
            z.writestr('%s/data/%s' % (folder, key), raw)
    return path


def _write_legacy(path, obj_pickle, records):
    """records: ordered {key: (n_elements, raw little-endian bytes)}."""
    with open(path, 'wb') as f:
        for header in (0x1950a86a20f9469cfc6c, 1001,
                       dict(protocol_version=1001, little_endian=True,
                            type_sizes=dict(short=2, int=4, long=4))):
            f.write(pickle.dumps(header, protocol=2))
        f.write(obj_pickle)
        f.write(pickle.dumps(list(records), protocol=2))
        for count, raw in records.values():
            f.write(struct.pack('<q', count) + raw)
    return path


F32 = np.arange(24, dtype=np.float32) * 0.5 - 3
F16 = np.array([0.5, -1.25, 65504, 3], np.float16)
BF16_VALUES = np.array([1.5, -2.25, 3.0, 2.0 ** -10], np.float32)  # exact in bf16
BF16_BITS = (BF16_VALUES.view(np.uint32) >> 16).astype(np.uint16)
I64 = np.array([1, -2, 3 << 40, 4], np.int64)
BOOLS = np.array([True, False, True], np.bool_)
U8 = np.array([1, 2, 250], np.uint8)

SYNTHETIC = _pickle(_dict([
    ('strided', _tensor(('torch', 'FloatStorage'), '0', 24, (2, 3), (1, 2), offset=1)),
    ('shared', _tensor(('torch', 'FloatStorage'), '0', 24, (3,), (2,), offset=10)),
    ('scalar', _tensor(('torch', 'FloatStorage'), '0', 24, (), (), offset=5)),
    ('empty', _tensor(('torch', 'FloatStorage'), '0', 24, (0, 4), (4, 1))),
    ('half', _tensor(('torch', 'HalfStorage'), '1', 4, (4,), (1,))),
    ('bf16', _tensor(('torch', 'BFloat16Storage'), '2', 4, (2, 2), (2, 1))),
    ('long_dtype_form', _tensor(('torch', 'int64'), '3', 4, (2, 2), (1, 2))),
    ('bool', _tensor(('torch', 'BoolStorage'), '4', 3, (3,), (1,))),
    ('untyped', _tensor(('torch.storage', 'UntypedStorage'), '5', 3, (3,), (1,))),
    ('float_dtype_form', _tensor(('torch', 'float32'), '0', 24, (4,), (1,))),
    ('param', _g('torch._utils', '_rebuild_parameter')
     + _t(_tensor(('torch', 'FloatStorage'), '0', 24, (2,), (1,)), b'\x88', _EMPTY_OD) + b'R'),
    ('from_type', _g('torch._tensor', '_rebuild_from_type_v2')
     + _t(_g('torch._utils', '_rebuild_tensor_v2'), _g('torch.nn.parameter', 'Parameter'),
          _tensor_args(('torch', 'FloatStorage'), '0', 24, (3,), (1,)), b'}') + b'R'),
    ('size', _g('torch', 'Size') + _t(_t(_i(2), _i(3))) + b'R'),
]))

EXPECTED = {
    'strided': np.lib.stride_tricks.as_strided(F32[1:], (2, 3), (4, 8)),
    'shared': F32[10:16:2], 'scalar': np.array(F32[5]), 'empty': np.zeros((0, 4), np.float32),
    'half': F16, 'bf16': BF16_VALUES.reshape(2, 2), 'long_dtype_form': I64.reshape(2, 2).T,
    'bool': BOOLS, 'untyped': U8, 'float_dtype_form': F32[:4], 'param': F32[:2], 'from_type': F32[:3],
}


def _records(order='<'):
    arrays = [F32, F16, BF16_BITS, I64, BOOLS, U8]
    return {str(i): a.astype(a.dtype.newbyteorder(order)).tobytes() for i, a in enumerate(arrays)}


@pytest.mark.parametrize('order,tag', [('<', b'little'), ('>', b'big'), ('<', None)])
def test_synthetic_zip_dtypes_strides_byteorder(tmp_path, order, tag):
    path = _write_zip(tmp_path / 'synthetic.pth', SYNTHETIC, _records(order), byteorder=tag)
    obj = load_torch_file(path)
    assert obj['size'] == (2, 3)
    for name, expected in EXPECTED.items():
        got = obj[name]
        assert isinstance(got, np.ndarray) and got.flags['C_CONTIGUOUS'] and got.flags['WRITEABLE'], name
        assert got.dtype == expected.dtype and got.dtype.isnative and got.shape == expected.shape, name
        np.testing.assert_array_equal(got, expected, err_msg=name)
    assert obj['bf16'].dtype == np.float32
    obj['param'][:] = 99  # tensors sharing a storage are independent copies
    np.testing.assert_array_equal(obj['float_dtype_form'], F32[:4])


def test_synthetic_legacy_with_storage_views(tmp_path):
    body = _pickle(_dict([
        ('module.a', _tensor(('torch', 'FloatStorage'), '7', 24, (2, 2), (2, 1),
                             view=('7_view', 4, 6))),
        ('module.b', _tensor(('torch', 'LongStorage'), '3', 4, (4,), (1,))),
        ('module.c', _tensor(('torch', 'FloatStorage'), '7', 24, (3,), (1,), offset=20)),
    ]))
    path = _write_legacy(tmp_path / 'legacy.pth', body,
                         OrderedDict([('3', (4, I64.tobytes())), ('7', (24, F32.tobytes()))]))
    sd = load_state_dict(path)
    assert list(sd) == ['a', 'b', 'c']  # DataParallel 'module.' prefix removed
    np.testing.assert_array_equal(sd['a'], F32[4:8].reshape(2, 2))
    np.testing.assert_array_equal(sd['b'], I64)
    np.testing.assert_array_equal(sd['c'], F32[20:23])


def test_state_dict_wrappers_and_prefix(tmp_path):
    t = _tensor(('torch', 'FloatStorage'), '0', 24, (2,), (1,))
    for wrapper in ('state_dict', 'model', 'params'):
        body = _pickle(_dict([('epoch', _i(3)), (wrapper, _dict([('module.x', t), ('y', t)]))]))
        sd = load_state_dict(_write_zip(tmp_path / ('%s.pth' % wrapper), body, _records()))
        assert list(sd) == ['module.x', 'y']  # prefix kept: not shared by every key


def test_no_tensors(tmp_path):
    path = _write_zip(tmp_path / 'no_tensors.pth', _pickle(_dict([('epoch', _i(3))])), {})
    assert load_torch_file(path) == {'epoch': 3}
    with pytest.raises(CheckpointError, match=r"no_tensors.pth.*no tensors.*\['epoch'\]"):
        load_state_dict(path)


def test_storage_out_of_bounds_is_corrupt(tmp_path):
    body = _pickle(_dict([('w', _tensor(('torch', 'FloatStorage'), '0', 24, (5, 5), (5, 1)))]))
    with pytest.raises(CheckpointError, match='oob.pth.*truncated or corrupt'):
        load_state_dict(_write_zip(tmp_path / 'oob.pth', body, _records()))


@pytest.mark.parametrize('module,name,arg', [
    ('os', 'system', 'touch {marker}'), ('posix', 'system', 'touch {marker}'),
    ('subprocess', 'call', 'touch {marker}'), ('builtins', 'eval', "open({marker!r}, 'w')"),
    ('__builtin__', 'exec', "open({marker!r}, 'w')")])
@pytest.mark.parametrize('container', ['zip', 'legacy'])
def test_malicious_pickle_is_refused(tmp_path, module, name, arg, container):
    marker = str(tmp_path / 'pwned')
    body = _pickle(_dict([('x', _g(module, name) + _t(_s(arg.format(marker=marker))) + b'R')]))
    path = tmp_path / 'evil.pth'
    if container == 'zip':
        _write_zip(path, body, {})
    else:
        _write_legacy(path, body, {})
    with pytest.raises(CheckpointError, match='evil.pth.*refusing.*%s' % name):
        load_torch_file(path)
    assert not os.path.exists(marker)


def test_unknown_classes_become_stand_ins(tmp_path):
    body = _pickle(_dict([
        ('obj', _g('somepkg.mod', 'Thing') + b')\x81' + _dict([('a', _i(1))]) + b'b'),
        ('ns', _g('argparse', 'Namespace') + _t(_i(5)) + b'R'),
    ]))
    obj = load_torch_file(_write_zip(tmp_path / 'objs.pth', body, {}))
    assert isinstance(obj['obj'], PickledObject) and obj['obj'].state == {'a': 1}
    assert (obj['obj'].module, obj['obj'].name) == ('somepkg.mod', 'Thing')
    assert obj['ns'].args == (5,) and 'somepkg' not in sys.modules
    assert repr(obj['obj']) == '<PickledObject somepkg.mod.Thing>'


def test_fixture_copy_with_other_archive_name(tmp_path):
    """The archive folder name inside the zip is irrelevant."""
    with zipfile.ZipFile(fx('nerv_tiny_state_dict.pth')) as src, \
            zipfile.ZipFile(tmp_path / 'renamed.pth', 'w') as dst:
        for info in src.infolist():
            dst.writestr('archive/' + info.filename.split('/', 1)[1], src.read(info))
    assert_same_state_dict(load_state_dict(tmp_path / 'renamed.pth'),
                           load_state_dict(fx('nerv_tiny_state_dict.pth')))
