"""RVRT attention packs (ascendvsr.layers.rvrt_attention) and the shared Mlp.

* GuidedDeformAttnPack against the official ``deform_align.backward_1`` call of RVRT variant a
  (``tests/fixtures/rvrt_tiny_a_gda.npz``: inputs, output and updated flows, (n, t, c, h, w)),
  weights from ``rvrt_tiny_a_ckpt.pth`` through the official keys.
* LocalAttnPack against mindediting's AttnPack (``rvrt_light_tiny_a_attn.npz``: the first
  ``deform_align.backward_1`` call of RVRT Light variant a and that pack's MindSpore weights).
Both subsets are made by ``tools/fixtures/rvrt_attention_subset.py``.
"""
import os

import numpy as np
import pytest
import tensorflow as tf

from ascendcv.layers.mlp import Mlp
from ascendcv.layers.torch_compat import torch_state_dict, torch_state_variables
from ascendcv.utils.torch_checkpoint import load_state_dict
from ascendvsr.convert.common import assign_state_dict
from ascendvsr.layers.rvrt_attention import GuidedDeformAttnPack, LocalAttnPack

FIXTURES = os.path.join(os.path.dirname(__file__), '..', 'fixtures')
PREFIX = 'deform_align.backward_1.'


def _nthwc(a):
    return tf.constant(np.moveaxis(a, 2, -1))


def _official(t):
    return np.moveaxis(np.asarray(t), -1, 2)


@pytest.fixture(scope='module')
def gda():
    return np.load(os.path.join(FIXTURES, 'rvrt_tiny_a_gda.npz'))


@pytest.fixture(scope='module')
def pack_weights():
    sd = load_state_dict(os.path.join(FIXTURES, 'rvrt_tiny_a_ckpt.pth'))
    return {k[len(PREFIX):]: v for k, v in sd.items() if k.startswith(PREFIX)}


def _inputs(gda):
    get = lambda n: _nthwc(gda[f'backward_1.in.{n}'])  # noqa: E731
    return (get('feat_q'), get('feat_k'), get('feat_prop'), [get('warped1'), get('warped2')],
            [get('flow_n1'), get('flow_n2')])


def test_guided_pack_matches_official(gda, pack_weights):
    pack = GuidedDeformAttnPack(24, 24, (3, 3), attention_heads=2, deformable_groups=2,
                                clip_size=2, name='backward_1')
    assert list(torch_state_variables(pack)) == list(pack_weights)  # keys and order
    assign_state_dict(pack, pack_weights, 'rvrt_tiny_a_ckpt.pth')
    out, (flow1, flow2) = pack(*_inputs(gda), True)
    assert np.abs(_official(out) - gda['backward_1.out.feat']).max() < 1e-5
    assert np.abs(_official(flow1) - gda['backward_1.out.updated_flow_n1']).max() < 1e-5
    assert np.abs(_official(flow2) - gda['backward_1.out.updated_flow_n2']).max() < 1e-5
    # the learned residual offsets matter (the fixture's last conv_offset is not zero)
    assert np.abs(_official(flow1) - gda['backward_1.in.flow_n1']).max() > 0.1
    alone = pack(*_inputs(gda), return_updateflow=False)
    assert np.abs(alone.numpy() - out.numpy()).max() == 0
    # round trip of the weights in PyTorch names and layouts
    back = torch_state_dict(pack)
    assert all(np.array_equal(back[k], pack_weights[k]) for k in pack_weights)


def test_guided_pack_fresh_init_offsets_are_the_flows(gda):
    """Official init: conv_offset.10 is zero, so the offsets are exactly the flows as (dy, dx)
    repeated over groups and taps, and the updated flows equal the input flows."""
    pack = GuidedDeformAttnPack(24, 24, (3, 3), attention_heads=2, deformable_groups=6)
    assert not np.any(pack.conv_offset[10].kernel.numpy())
    q, k, v, warped, flows = _inputs(gda)
    off1, off2 = pack.offsets(q, warped, flows)
    assert off1.shape[-1] == 6 * 9 * 2
    for off, flow in ((off1, flows[0]), (off2, flows[1])):
        pairs = tf.reshape(off, off.shape[:4] + [54, 2]).numpy()
        assert np.array_equal(pairs, np.broadcast_to(flow.numpy()[..., None, ::-1], pairs.shape))
    out, new_flows = pack(q, k, v, warped, flows, True)
    assert out.shape == q.shape
    for new, flow in zip(new_flows, flows):
        assert np.abs(new.numpy() - flow.numpy()).max() < 1e-5  # float32 mean of 54 equal values


def test_guided_pack_exports_to_onnx(gda, pack_weights):
    """Frozen graph with dynamic n, H, W -> tf2onnx -> onnxruntime equals the live pack, also on
    another shape (exact GELU is written with Erf: tf.nn.gelu's Erfc has no ONNX converter)."""
    from tensorflow.python.framework.convert_to_constants import \
        convert_variables_to_constants_v2
    tf2onnx = pytest.importorskip('tf2onnx')
    ort = pytest.importorskip('onnxruntime')
    pack = GuidedDeformAttnPack(24, 24, (3, 3), 2, 2, 2)
    assign_state_dict(pack, pack_weights)
    names = ['q', 'k', 'v', 'w1', 'w2', 'f1', 'f2']
    specs = [tf.TensorSpec([None, 2, None, None, 2 if n[0] == 'f' else 24], tf.float32, name=n)
             for n in names]

    @tf.function(input_signature=specs)
    def serve(q, k, v, w1, w2, f1, f2):
        out, (g1, g2) = pack(q, k, v, [w1, w2], [f1, f2], True)
        return tf.identity(out, name='out'), tf.identity(g1, name='flow1')

    graph_def = convert_variables_to_constants_v2(serve.get_concrete_function()).graph.as_graph_def()
    model, _ = tf2onnx.convert.from_graph_def(graph_def, input_names=[n + ':0' for n in names],
                                              output_names=['out:0', 'flow1:0'], opset=17)
    sess = ort.InferenceSession(model.SerializeToString(), providers=['CPUExecutionProvider'])
    q, k, v, (w1, w2), (f1, f2) = _inputs(gda)
    full = [t.numpy() for t in (q, k, v, w1, w2, f1, f2)]
    for arrays in (full, [a[:, :, 3:20, 5:30] for a in full]):
        out, flow1 = sess.run(None, {n + ':0': a for n, a in zip(names, arrays)})
        ref_out, ref_flow = serve(*arrays)
        assert np.abs(out - ref_out.numpy()).max() < 1e-5
        assert np.abs(flow1 - ref_flow.numpy()).max() < 1e-5
    assert np.abs(out).max() > 0.1  # a real output, not zeros


def test_guided_pack_bad_arguments(gda):
    with pytest.raises(ValueError, match='clip_size=2'):
        GuidedDeformAttnPack(24, 24, clip_size=3)
    with pytest.raises(ValueError, match='attention_heads=5'):
        GuidedDeformAttnPack(24, 24, attention_heads=5, deformable_groups=2)
    with pytest.raises(ValueError, match='deformable_groups=5'):
        GuidedDeformAttnPack(24, 24, attention_heads=2, deformable_groups=5)
    pack = GuidedDeformAttnPack(24, 24, attention_heads=2, deformable_groups=2)
    q, k, v, warped, flows = _inputs(gda)
    with pytest.raises(ValueError, match='2 warped features and 2 flows'):
        pack(q, k, v, warped[:1], flows, True)
    with pytest.raises(ValueError, match='3 frames'):
        pack(tf.concat([q, q[:, :1]], 1), k, v, warped, flows, True)


def test_guided_pack_config_round_trip():
    pack = GuidedDeformAttnPack(24, 24, (3, 3), 2, 4, 2, 5, approximate_gelu=True)
    clone = GuidedDeformAttnPack.from_config(pack.get_config())
    assert (clone.deformable_groups, clone.max_residue_magnitude, clone.approximate_gelu,
            clone.mlp['1'].approximate_gelu) == (4, 5.0, True, True)


@pytest.fixture(scope='module')
def light():
    return np.load(os.path.join(FIXTURES, 'rvrt_light_tiny_a_attn.npz'))


def _light_pack(light, approximate_gelu, jit_compile=False):
    pack = LocalAttnPack(24, 24, (3, 3), attention_heads=2, clip_size=2,
                         approximate_gelu=approximate_gelu, jit_compile=jit_compile)
    weights = {k[len(PREFIX):]: light[k] for k in light.files if k.startswith(PREFIX)}
    assert list(torch_state_variables(pack)) == list(weights)  # mindediting names and order
    assign_state_dict(pack, weights, 'rvrt_light_tiny_a_weights.npz')
    return pack


def test_local_pack_matches_mindediting(light):
    args = [_nthwc(light[k]) for k in ('attn_q_in', 'attn_k_in', 'attn_v_in')]
    out = _light_pack(light, approximate_gelu=True)(*args)
    assert np.abs(_official(out) - light['attn_out']).max() < 1e-5
    out_xla = _light_pack(light, approximate_gelu=True, jit_compile=True)(*args)
    assert np.abs(_official(out_xla) - light['attn_out']).max() < 1e-5
    # exact GELU (PyTorch convention) is measurably different from what MindSpore ran
    exact = _light_pack(light, approximate_gelu=False)(*args)
    assert np.abs(_official(exact) - light['attn_out']).max() > 1e-5


def test_local_pack_is_guided_attention_with_zero_offsets(gda, pack_weights):
    """Same weights, offsets forced to 0 (flows 0, zero last offset conv): the two packs agree."""
    guided = GuidedDeformAttnPack(24, 24, (3, 3), 2, 2, 2, name='g')
    assign_state_dict(guided, pack_weights)
    guided.conv_offset[10].kernel.assign(tf.zeros_like(guided.conv_offset[10].kernel))
    guided.conv_offset[10].bias.assign(tf.zeros_like(guided.conv_offset[10].bias))
    local = LocalAttnPack(24, 24, (3, 3), 2, 2, name='l')
    assign_state_dict(local, {k: v for k, v in pack_weights.items()
                              if not k.startswith('conv_offset')})
    q, k, v, warped, flows = _inputs(gda)
    zero_flows = [tf.zeros_like(f) for f in flows]
    a = guided(q, k, v, warped, zero_flows, False).numpy()
    b = local(q, k, v).numpy()
    assert np.abs(a - b).max() < 1e-5


def test_local_pack_bad_input(light):
    pack = LocalAttnPack(24, 24, attention_heads=2, clip_size=2)
    x = _nthwc(light['attn_q_in'])
    with pytest.raises(ValueError, match='3 frames'):
        pack(tf.concat([x, x[:, :1]], 1), x, x)
    with pytest.raises(ValueError, match='attention_heads=7'):
        LocalAttnPack(24, 24, attention_heads=7)


def test_mlp_gelu_forms_and_names():
    mlp = Mlp(4, 8, 3, name='mlp')
    assert list(torch_state_variables(mlp)) == ['fc1.weight', 'fc1.bias', 'fc2.weight', 'fc2.bias']
    x = np.random.default_rng(0).standard_normal((2, 5, 4)).astype(np.float32)
    h = x @ mlp.fc1.kernel.numpy() + mlp.fc1.bias.numpy()
    from math import erf, sqrt
    exact = h * 0.5 * (1 + np.vectorize(erf)(h / sqrt(2)))
    want = exact @ mlp.fc2.kernel.numpy() + mlp.fc2.bias.numpy()
    assert np.abs(mlp(x).numpy() - want).max() < 1e-5
    tanh = Mlp.from_config(dict(mlp.get_config(), approximate_gelu=True))
    tanh.set_weights(mlp.get_weights())
    approx = 0.5 * h * (1 + np.tanh(np.sqrt(2 / np.pi) * (h + 0.044715 * h ** 3)))
    want = approx @ mlp.fc2.kernel.numpy() + mlp.fc2.bias.numpy()
    assert np.abs(tanh(x).numpy() - want).max() < 1e-5
    assert (Mlp(6).hidden_features, Mlp(6).out_features) == (6, 6)
