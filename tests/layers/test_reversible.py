"""Reversible blocks: exact inversion, gradients equal to ordinary backprop, bounded memory."""
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from ascendcv.layers.conv3d import Conv3d
from ascendcv.layers.reversible import AdditiveCoupling, ReversibleBlock, ReversibleSequence

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class ConvCoupling(AdditiveCoupling):
    """Test coupling: f_i = conv3d - tanh - conv3d on chunks of ``ch`` channels."""

    def __init__(self, ch, addends, seed, kernel_size=3, **kwargs):
        super().__init__(addends, seed, **kwargs)
        k, p = kernel_size, kernel_size // 2
        self.convs = [[Conv3d(ch, ch, k, 1, p), Conv3d(ch, ch, k, 1, p)] for _ in addends]

    def coupling_functions(self):
        return [lambda x, a=a, b=b: b(tf.tanh(a(x))) for a, b in self.convs]


class GenericCoupling(ConvCoupling):
    """Same block through the generic ``ReversibleBlock.backward`` (invert, then recompute)."""
    backward = ReversibleBlock.backward


def _x(shape=(2, 3, 6, 5, 12), seed=0):
    return tf.constant(np.random.default_rng(seed).standard_normal(shape).astype(np.float32))


@pytest.mark.parametrize('addends,seed', [((1, 0), 0), ((0, 1), 1), ((2, 1, 0), 0),
                                          ((1, 3, 2, 0), 0)])
def test_coupling_inverts(addends, seed):
    keras.utils.set_random_seed(0)
    block = ConvCoupling(12 // len(addends), addends, seed)
    x = _x()
    y = block(x)
    assert np.abs(y.numpy() - x.numpy()).max() > 0.1  # not the identity
    assert np.abs(block.inverse(y).numpy() - x.numpy()).max() < 1e-5


@pytest.mark.parametrize('addends,seed', [((0, 1), 0), ((0,), 0), ((1, 1), 1), ((1, 0), 1)])
def test_coupling_rejects_non_invertible_orders(addends, seed):
    with pytest.raises(ValueError, match='not invertible'):
        AdditiveCoupling(addends, seed)


def _grads(seq, x, reversible, graph):
    def step(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = seq(x, reversible=reversible)
            loss = tf.reduce_sum(tf.sin(y) * y)  # a non-trivial output gradient
        return [loss] + tape.gradient(loss, [x] + seq.trainable_variables)
    return [t.numpy() for t in (tf.function(step) if graph else step)(x)]


@pytest.mark.parametrize('cls', [ConvCoupling, GenericCoupling])
@pytest.mark.parametrize('graph', [False, True])
def test_reversible_gradients_equal_backprop(cls, graph):
    keras.utils.set_random_seed(1)
    seq = ReversibleSequence([cls(6, (1, 0), 0), cls(4, (2, 0, 1), 1), cls(6, (0, 1), 1)])
    x = _x(seed=2)
    plain = _grads(seq, x, False, graph)
    rev = _grads(seq, x, True, graph)
    assert len(plain) == 2 + len(seq.trainable_variables) == 2 + 8 + 12 + 8
    assert abs(rev[0] - plain[0]) <= 1e-6 * abs(plain[0])
    for a, b in zip(rev[1:], plain[1:]):
        scale = np.abs(b).max()
        assert scale > 1e-3
        assert np.abs(a - b).max() <= 1e-5 * scale


def test_reversible_backward_recomputes_each_function_once():
    calls = []

    class Counting(ConvCoupling):
        def coupling_functions(self):
            return [lambda x, f=f: (calls.append(1), f(x))[1] for f in super().coupling_functions()]

    keras.utils.set_random_seed(3)
    seq = ReversibleSequence([Counting(6, (1, 0), 0) for _ in range(3)])
    x = _x(seed=4)
    seq(x)  # first call: Keras also builds the layers by a symbolic run
    calls.clear()
    with tf.GradientTape() as tape:
        y = seq(x, reversible=True)
    assert len(calls) == 6  # forward: 3 blocks x 2 functions
    tape.gradient(y, seq.trainable_variables)
    assert len(calls) == 12  # backward: each function once more (inversion + gradient fused)


def test_sequence_inverse_and_torch_names():
    keras.utils.set_random_seed(5)
    seq = ReversibleSequence([ConvCoupling(6, (1, 0), 0) for _ in range(2)])
    x = _x(seed=6)
    assert np.abs(seq.inverse(seq(x)).numpy() - x.numpy()).max() < 1e-5
    with pytest.raises(TypeError, match='ReversibleBlock'):
        ReversibleSequence([Conv3d(2, 2)])


_MEMORY_SCRIPT = r"""
import json, sys
import numpy as np, tensorflow as tf
sys.path.insert(0, sys.argv[1])
from test_reversible import ConvCoupling
from ascendcv.layers.reversible import ReversibleSequence

def status(key):
    with open('/proc/self/status') as f:
        return [int(l.split()[1]) / 1024 for l in f if l.startswith(key)][0]

x = tf.constant(np.random.default_rng(0).standard_normal((1, 8, 96, 96, 16)).astype(np.float32))
out = {}
for name, reversible, num_block in [('reversible_2', True, 2), ('reversible_10', True, 10),
                                    ('ordinary_2', False, 2), ('ordinary_10', False, 10)]:
    seq = ReversibleSequence([ConvCoupling(8, (1, 0), 0, kernel_size=1) for _ in range(num_block)])

    @tf.function
    def step(x):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(seq(x, reversible=reversible) ** 2)
        return tape.gradient(loss, seq.trainable_variables)

    [g.numpy() for g in step(x)]  # trace and run once: one-time kernel state is allocated now
    before = status('VmRSS')
    with open('/proc/self/clear_refs', 'w') as f:
        f.write('5')  # reset the peak-RSS mark to the current RSS
    [g.numpy() for g in step(x)]
    out[name] = status('VmHWM') - before
print(json.dumps(out))
"""


@pytest.mark.skipif(not os.path.exists('/proc/self/clear_refs'), reason='needs Linux /proc')
def test_reversible_training_step_memory_does_not_grow_with_depth():
    """Peak memory of a graph-mode training step on [1, 8, 96, 96, 16] (1x1x1 convs: cheap to
    run, same activation sizes), 2 vs 10 blocks: ordinary backprop stores every block's
    activations (~9 MiB per block here); the reversible step does
    not grow. So that RSS follows live memory, the subprocess runs without oneDNN (whose pooling
    CPU allocator never shrinks) and mmaps large buffers (MALLOC_MMAP_THRESHOLD_); each step is
    measured on its second run, after one-time kernel state exists."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3', PYTHONPATH=ROOT, TF_ENABLE_ONEDNN_OPTS='0',
               MALLOC_MMAP_THRESHOLD_='65536')
    proc = subprocess.run([sys.executable, '-c', _MEMORY_SCRIPT, os.path.dirname(__file__)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    peak = json.loads(proc.stdout.strip().splitlines()[-1])
    ordinary = peak['ordinary_10'] - peak['ordinary_2']
    reversible = peak['reversible_10'] - peak['reversible_2']
    assert ordinary > 40, peak
    assert reversible < 0.1 * ordinary, peak
