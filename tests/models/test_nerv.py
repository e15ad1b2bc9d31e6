"""NeRV parity with the official Generator (fixture made by haochen-rye/NeRV) and its checks."""
import json
import math
import os
import struct
import zipfile
from collections import OrderedDict

import numpy as np
import pytest
import tensorflow as tf

from ascendcv.layers.torch_compat import torch_state_dict
from ascendcv.utils.torch_checkpoint import CheckpointError, load_state_dict
from ascendvsr.convert.nerv import assign_nerv_state_dict, infer_nerv_arch, load_nerv_weights
from ascendvsr.layers.nerv_blocks import activation, positional_encoding
from ascendvsr.models.nerv import NeRV

FIX = os.path.join(os.path.dirname(os.path.dirname(__file__)), 'fixtures')
CKPT = os.path.join(FIX, 'nerv_tiny_state_dict.pth')
IO = np.load(os.path.join(FIX, 'nerv_tiny_io.npz'))
with open(os.path.join(FIX, 'nerv_tiny_meta.json')) as _f:
    META = json.load(_f)


def tiny_kwargs(**kw):
    a = META['args']
    out = dict(embed=a['embed'], stem_dim_num=a['stem_dim_num'], fc_hw_dim=a['fc_hw_dim'],
               expansion=a['expansion'], num_blocks=a['num_blocks'], norm=a['norm'], act=a['act'],
               reduction=a['reduction'], conv_type=a['conv_type'], strides=a['strides'],
               single_res=a['single_res'], lower_width=a['lower_width'], sigmoid=a['sigmoid'],
               num_frames=int(IO['num_frames']))
    out.update(kw)
    return out


def tiny(**kw):
    model = NeRV(**tiny_kwargs(**kw))
    load_nerv_weights(model, CKPT)
    return model


def nchw(x):
    return np.asarray(x).transpose(0, 3, 1, 2)


# ----------------------------------------------------------------------------- torch files

def _torch_zip(path, state_dict, wrap=True):
    """Write ``{'epoch': 300, 'state_dict': sd}`` (or ``sd``) in torch.save's zip format."""
    def g(module, name):
        return b'c%s\n%s\n' % (module.encode(), name.encode())

    def s(text):
        raw = text.encode()
        return b'X' + struct.pack('<I', len(raw)) + raw

    def i(v):
        return b'J' + struct.pack('<i', v)

    def t(*items):
        return b'(' + b''.join(items) + b't'

    od = g('collections', 'OrderedDict') + b')R'
    records, items = {}, []
    for n, (key, arr) in enumerate(state_dict.items()):
        arr = np.ascontiguousarray(arr, np.float32)
        records[str(n)] = arr.tobytes()
        stride = [int(st // 4) for st in arr.strides] if arr.ndim else []
        pid = t(s('storage'), g('torch', 'FloatStorage'), s(str(n)), s('cpu'), i(arr.size)) + b'Q'
        tensor = (g('torch._utils', '_rebuild_tensor_v2')
                  + t(pid, i(0), t(*map(i, arr.shape)), t(*map(i, stride)), b'\x89', od) + b'R')
        items.append(s(key) + tensor)
    sd = od + (b'(' + b''.join(items) + b'u' if items else b'')
    body = (b'}(' + s('epoch') + i(300) + s('state_dict') + sd + b'u') if wrap else sd
    with zipfile.ZipFile(path, 'w') as z:
        z.writestr('archive/data.pkl', b'\x80\x02' + body + b'.')
        for key, raw in records.items():
            z.writestr(f'archive/data/{key}', raw)
    return str(path)


# ----------------------------------------------------------------------------- parity

def test_parity_with_official_generator_from_stored_embedding():
    model = tiny()
    out = model.forward_features(embed=IO['embed'])
    assert np.abs(out['stem'].numpy() - IO['stem']).max() <= 1e-6
    assert np.abs(nchw(out['layer0']) - IO['layer0']).max() <= 1e-6
    assert np.abs(nchw(out['layer1']) - IO['layer1']).max() <= 1e-6
    assert np.abs(nchw(out['output']) - IO['output']).max() <= 1e-5
    # fused head (call path) equals the plain head
    fused = model.forward_features(embed=IO['embed'], features=False)['output']
    assert np.abs(fused.numpy() - out['output'].numpy()).max() <= 1e-6
    # the float64 reference differs by ~1e-6 (float32 noise): our error is below it
    assert np.abs(nchw(out['output']) - IO['output_f64']).max() <= 5e-6


def test_positional_encoding_matches_official_float32_order():
    """The official computes (t * 1.25**i) * pi in float32; arguments reach ~2e4 rad where one
    ulp is ~2e-3 rad, so the op order matters at the 1e-3 level (float64 differs by ~1e-3).
    With the same order only sin/cos rounding remains (~1e-7)."""
    t = IO['norm_idx']
    emb = positional_encoding(t, '1.25_40').numpy()
    assert emb.shape == (4, 80)
    assert np.abs(emb - IO['embed']).max() <= 1e-5
    assert np.abs(IO['embed_f64'] - IO['embed']).max() > 1e-4  # why f64 is no reference
    # interleaving [sin_0, cos_0, sin_1, ...]: level 0 of t=0.5 is sin(pi/2) = 1, cos = 0
    assert abs(emb[2, 0] - 1) < 1e-6 and abs(emb[2, 1]) < 1e-6
    # another op order really is distinguishable at this tolerance
    cols = []
    for i in range(40):
        v = t * np.float32(1.25 ** i * math.pi)
        cols += [np.sin(v), np.cos(v)]
    assert np.abs(np.stack(cols, 1) - IO['embed']).max() > 1e-4


def test_frame_index_input_in_eager_and_graph():
    model = tiny()
    idx = IO['frame_idx'].astype(np.float32)
    eager = model(idx).numpy()
    graph = tf.function(lambda x: model(x, training=False))(tf.constant(idx)).numpy()
    assert np.abs(nchw(eager) - IO['output']).max() <= 1e-5
    # grappler must not re-associate the encoding (it would move the output by ~1e-4)
    assert np.abs(nchw(graph) - IO['output']).max() <= 1e-5
    np.testing.assert_allclose(model.normalize_index(idx).numpy(), IO['norm_idx'], rtol=0, atol=0)
    assert model(IO['frame_idx'].astype(np.int32)).shape == (4, 12, 16, 3)


def test_frame_index_out_of_range():
    model = tiny()
    with pytest.raises(ValueError, match=r'frame index 132 is out of range.*132 frames'):
        model(np.array([0, 132], np.float32))
    with pytest.raises(ValueError, match='out of range'):
        model(np.array([-1], np.float32))
    fn = tf.function(lambda x: model(x))
    with pytest.raises(tf.errors.InvalidArgumentError, match='out of range'):
        fn(tf.constant([140.0]))
    assert model(np.array([131.0, 0.5], np.float32)).shape == (2, 12, 16, 3)  # fractional is fine


def test_size_and_option_errors():
    model = NeRV(**tiny_kwargs())
    assert model.output_size == (12, 16)
    with pytest.raises(ValueError, match=r'produces 12x16 frames.*is 720x1280'):
        model.check_frame_size(720, 1280)
    model.check_frame_size(12, 16)
    with pytest.raises(ValueError, match='fc_hw_dim'):
        NeRV(**tiny_kwargs(fc_hw_dim='3_4'))
    with pytest.raises(ValueError, match='act'):
        NeRV(**tiny_kwargs(act='tanh'))
    with pytest.raises(ValueError, match="embed"):
        NeRV(**tiny_kwargs(embed='1.25'))


def test_nerv_s_configuration_size_and_config_round_trip():
    m = NeRV(num_frames=132)  # defaults = NeRV-S
    assert m.output_size == (720, 1280)
    assert m.count_parameters() == 3201905  # the paper's 3.2M
    assert m.widths == [26, 96, 96, 96, 96]
    config = tiny().get_config()
    again = NeRV.from_config(config)
    assert dict(again.get_config(), name=None) == dict(config, name=None)
    assert again.output_size == (12, 16) and again.count_parameters() == 15533


# ----------------------------------------------------------------------------- checkpoints

def test_official_training_checkpoint_and_pruned_checkpoint(tmp_path):
    sd = load_state_dict(CKPT)
    path = _torch_zip(tmp_path / 'model_latest.pth',
                      OrderedDict(('module.' + k, v) for k, v in sd.items()))
    model = NeRV(**tiny_kwargs())
    load_nerv_weights(model, path)  # {'epoch', 'state_dict'} with DDP prefixes
    assert np.abs(nchw(model(IO['frame_idx'].astype(np.float32))) - IO['output']).max() <= 1e-5

    # a pruned checkpoint: weight_orig * weight_mask
    rng = np.random.default_rng(0)
    pruned = OrderedDict()
    expect = {}
    for k, v in sd.items():
        if k.endswith('weight') and not k.startswith('head'):
            mask = (rng.random(v.shape) > 0.5).astype(np.float32)
            orig = v + 0.5  # what the masked-out entries hold must not matter
            pruned[k + '_orig'], pruned[k + '_mask'] = orig, mask
            expect[k] = orig * mask
        else:
            pruned[k] = v
            expect[k] = v
    path = _torch_zip(tmp_path / 'nerv_pruned.pth', pruned)
    model = NeRV(**tiny_kwargs())
    load_nerv_weights(model, path)
    got = torch_state_dict(model)
    for k, v in expect.items():
        np.testing.assert_array_equal(got[k], v)
    assert (got['stem.0.weight'] == 0).mean() > 0.4


def test_checkpoint_of_another_configuration_is_a_clear_error():
    with pytest.raises(CheckpointError, match=r'another configuration.*lower_width 32'):
        load_nerv_weights(NeRV(**tiny_kwargs(lower_width=32)), CKPT)
    with pytest.raises(CheckpointError, match='stem_dims'):
        load_nerv_weights(NeRV(**tiny_kwargs(stem_dim_num='32_1')), CKPT)
    with pytest.raises(CheckpointError, match='not a NeRV checkpoint'):
        assign_nerv_state_dict(NeRV(**tiny_kwargs()), {'conv_first.weight': np.zeros((1,))})
    arch = infer_nerv_arch(load_state_dict(CKPT))
    assert arch['block_out_channels'] == [32, 24] and arch['heads'] == [1]


def test_multi_res_heads_and_other_block_types_build_and_name_weights():
    m = NeRV(**tiny_kwargs(single_res=False))
    keys = set(torch_state_dict(m))
    assert {'head_layers.0.weight', 'head_layers.1.weight'} <= keys
    out = m.forward_features(frame_index=np.array([0.0], np.float32))
    assert [o.shape[1:3] for o in out['outputs']] == [(6, 8), (12, 16)]
    bn = NeRV(**tiny_kwargs(norm='bn', num_blocks=2))
    assert 'layers.3.norm.running_var' in torch_state_dict(bn)
    assert bn(np.array([1.0], np.float32), training=True).shape == (1, 12, 16, 3)


def test_deconv_block_matches_transposed_convolution_definition():
    m = NeRV(**tiny_kwargs(conv_type='deconv'))
    w = torch_state_dict(m)['layers.0.conv.conv.weight']  # (in, out, s, s)
    assert w.shape == (8, 8, 2, 2)
    block = m._blocks[0].conv
    x = np.random.default_rng(1).normal(size=(1, 3, 4, 8)).astype(np.float32)
    y = block(tf.constant(x)).numpy()
    b = block.conv.bias.numpy()
    ref = np.einsum('nhwc,coij->nhiwjo', x, w).reshape(1, 6, 8, 8) + b
    np.testing.assert_allclose(y, ref, atol=1e-5)


def test_activations_follow_pytorch_definitions():
    x = tf.constant(np.linspace(-30, 30, 61, dtype=np.float32))
    xn = x.numpy()
    np.testing.assert_allclose(activation('leaky')(x).numpy(), np.where(xn > 0, xn, 0.01 * xn))
    np.testing.assert_allclose(activation('hardswish')(x).numpy(),
                               xn * np.clip(xn + 3, 0, 6) / 6, atol=1e-6)
    np.testing.assert_allclose(activation('softplus')(x).numpy()[-1], 30.0)  # threshold 20
    np.testing.assert_allclose(activation('gelu')(tf.constant([1.0])).numpy(), [0.8413447],
                               atol=1e-6)  # exact erf form, not the tanh approximation
