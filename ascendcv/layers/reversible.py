"""Reversible blocks: a backward pass that recomputes activations instead of storing them.

A reversible block maps ``x -> y`` such that ``x`` can be recovered from ``y``. A stack of them
then needs to keep only its final output for backpropagation: going backwards block by block,
each block's input is rebuilt from its output, the block's functions are re-run on the rebuilt
tensors under a tape, and the output gradient is pushed through them (Gomez et al., "The
Reversible Residual Network", NeurIPS 2017; RevSCI-net's ``for_backward``). Memory for the
stack becomes independent of its depth at the price of recomputing each block once.

* :class:`ReversibleBlock` -- the protocol: ``call(x)``, ``inverse(y)`` and
  ``backward(y, dy) -> (x, dx, [(variable, grad), ...])``. The default ``backward`` inverts and
  then re-runs ``call`` under a tape (two evaluations of the block's functions).
* :class:`AdditiveCoupling` -- the additive coupling chain used by RevNet / RevSCI / i-RevNet
  style blocks over ``n`` channel chunks, with a fused ``backward`` that evaluates each function
  only once (inversion and recomputation share it).
* :class:`ReversibleSequence` -- runs blocks in order; with ``reversible=True`` the whole stack is
  one ``tf.custom_gradient`` whose gradient function holds nothing but the stack's output.

The forward graph is the same plain ops either way (freezing/ONNX see no custom gradient when
``reversible=False``, which is what inference uses). Only first-order gradients are supported in
reversible mode.
"""
import keras
import tensorflow as tf

try:  # what tf.recompute_grad uses to keep the forward pass off every active tape
    from tensorflow.python.eager.record import stop_recording as _stop_recording
except ImportError:  # pragma: no cover - older TF
    from tensorflow.python.eager.tape import stop_recording as _stop_recording


def _tf_variable(v):
    """The ``tf.Variable`` behind a Keras 3 variable (or ``v`` itself)."""
    inner = getattr(v, 'value', v)
    return inner if isinstance(inner, tf.Variable) else v


class ReversibleBlock(keras.layers.Layer):
    """Base class of blocks usable in a :class:`ReversibleSequence`.

    Subclasses implement ``call(x)`` and ``inverse(y)`` (``inverse(call(x)) == x`` up to float
    round-off); they may override :meth:`backward` with something cheaper.
    """

    def inverse(self, y):
        raise NotImplementedError(f'{type(self).__name__} must implement inverse(y)')

    def backward(self, y, dy):
        """From the output ``y`` and ``dL/dy``: ``(x, dL/dx, [(variable, dL/dvariable), ...])``.

        Generic version: ``x = inverse(y)``, then ``call(x)`` again under a tape.
        """
        with tf.control_dependencies([dy]):  # graph mode: recompute only when dy is known
            x = tf.stop_gradient(self.inverse(y))
        variables = self.trainable_variables
        with tf.GradientTape() as tape:
            tape.watch(x)
            y_again = self.call(x)
        grads = tape.gradient(y_again, [x] + list(variables), output_gradients=dy)
        return x, grads[0], list(zip(variables, grads[1:]))


class AdditiveCoupling(ReversibleBlock):
    """Additive coupling chain over ``n = len(addends)`` equal channel chunks.

    With ``x_0 .. x_{n-1} = split(x, n, axis)`` and the functions ``f_0 .. f_{n-1}`` returned by
    :meth:`coupling_functions`::

        u = x[seed]
        y_i = x[addends[i]] + f_i(u);  u = y_i        (i = 0 .. n-1)
        y = concat(y_0 .. y_{n-1}, axis)

    It is invertible when ``addends`` is a permutation of ``0 .. n-1`` that ends with ``seed``
    (and does not start with it): going backwards, ``x[addends[i]] = y_i - f_i(y_{i-1})`` for
    ``i = n-1 .. 1`` (which recovers ``x[seed]`` first), then
    ``x[addends[0]] = y_0 - f_0(x[seed])``.
    RevNet's ``y1 = x1 + F(x2); y2 = x2 + G(y1)`` is ``n=2, seed=1, addends=(0, 1)``.

    Args:
        addends (sequence of int): chunk added to each ``f_i`` output (see above).
        seed (int): chunk fed to ``f_0``.
        axis (int): channel axis to split along (-1 for channels-last).

    Each ``f_i`` maps a chunk to a tensor of the same shape. Input and output have the same shape.
    """

    def __init__(self, addends, seed, axis=-1, **kwargs):
        super().__init__(**kwargs)
        self.addends, self.seed, self.axis = tuple(int(a) for a in addends), int(seed), int(axis)
        n = len(self.addends)
        if (n < 2 or sorted(self.addends) != list(range(n)) or self.addends[-1] != self.seed
                or self.addends[0] == self.seed):
            raise ValueError(f'AdditiveCoupling(addends={self.addends}, seed={self.seed}) is not '
                             'invertible: addends must be a permutation of 0..n-1 (n >= 2) ending '
                             'with seed and not starting with it')

    @property
    def num_chunks(self):
        return len(self.addends)

    def coupling_functions(self):
        """The ``n`` callables ``f_0 .. f_{n-1}`` (subclasses)."""
        raise NotImplementedError

    def call(self, x):
        fs, xs = self.coupling_functions(), tf.split(x, self.num_chunks, axis=self.axis)
        u, ys = xs[self.seed], []
        for f, a in zip(fs, self.addends):
            u = xs[a] + f(u)
            ys.append(u)
        return tf.concat(ys, axis=self.axis)

    def inverse(self, y):
        fs, ys = self.coupling_functions(), tf.split(y, self.num_chunks, axis=self.axis)
        xs = [None] * self.num_chunks
        for i in range(self.num_chunks - 1, 0, -1):
            xs[self.addends[i]] = ys[i] - fs[i](ys[i - 1])
        xs[self.addends[0]] = ys[0] - fs[0](xs[self.seed])
        return tf.concat(xs, axis=self.axis)

    def backward(self, y, dy):
        """Inversion and gradient in one sweep: each ``f_i`` runs once, under a tape.

        Going from ``i = n-1`` down to 0 with ``g`` = the total gradient of ``y_i`` (its output
        gradient plus what ``f_{i+1}`` sends back): ``u = y_{i-1}`` (or ``x[seed]`` for i = 0),
        ``F = f_i(u)``, ``x[addends[i]] = y_i - F``, ``dx[addends[i]] += g``, and ``F``'s vector-
        Jacobian product with ``g`` gives the gradient of ``u`` and of ``f_i``'s variables.
        """
        n, fs = self.num_chunks, self.coupling_functions()
        ys, dys = tf.split(y, n, axis=self.axis), tf.split(dy, n, axis=self.axis)
        variables = list(self.trainable_variables)
        var_grads = [None] * len(variables)
        xs, dxs = [None] * n, [None] * n
        g = dys[n - 1]
        for i in range(n - 1, -1, -1):
            u = ys[i - 1] if i > 0 else xs[self.seed]
            # In a graph the inversion depends on y only, so the executor would run the whole
            # chain of inversions right after the forward pass and hold every recomputed
            # activation until its gradient arrives. Tying each step to its incoming gradient
            # keeps one block's activations alive at a time (no-op when executing eagerly).
            with tf.control_dependencies([g]):
                u = tf.identity(u)
            with tf.GradientTape() as tape:
                tape.watch(u)
                f_out = fs[i](u)
            a = self.addends[i]
            xs[a] = ys[i] - f_out
            dxs[a] = g if dxs[a] is None else dxs[a] + g
            du, *dvs = tape.gradient(f_out, [u] + variables, output_gradients=g)
            var_grads = [acc if d is None else (d if acc is None else acc + d)
                         for acc, d in zip(var_grads, dvs)]
            if i > 0:
                g = dys[i - 1] + du
            else:
                dxs[self.seed] = dxs[self.seed] + du
        return (tf.concat(xs, axis=self.axis), tf.concat(dxs, axis=self.axis),
                list(zip(variables, var_grads)))

    def get_config(self):
        cfg = super().get_config()
        cfg.update(addends=self.addends, seed=self.seed, axis=self.axis)
        return cfg


def reversible_forward(blocks, x):
    """``blocks[-1](...blocks[0](x))`` with the memory-saving reversible gradient.

    The forward runs with the tapes stopped; the gradient function keeps only the final output and
    walks the blocks backwards with :meth:`ReversibleBlock.backward`. Variables read by the
    blocks receive their gradients through ``tf.custom_gradient``'s ``variables`` mechanism.
    """
    blocks = list(blocks)

    @tf.custom_gradient
    def run(x_in):
        # tf.custom_gradient does not stop the tapes itself: without this, an outer tape
        # records every op of the forward and keeps all activations alive.
        with _stop_recording():
            y_out = x_in
            for block in blocks:
                y_out = block(y_out)

        def grad(dy, variables=None):
            totals = {}
            y_cur, g = y_out, dy
            for block in reversed(blocks):
                y_cur, g, pairs = block.backward(y_cur, g)
                y_cur = tf.stop_gradient(y_cur)
                for var, gv in pairs:
                    if gv is None:
                        continue
                    key = _tf_variable(var).ref()
                    totals[key] = gv if key not in totals else totals[key] + gv
            if not variables:
                return g
            return g, [totals.get(v.ref()) for v in variables]

        return y_out, grad

    return run(x)


class ReversibleSequence(keras.layers.Layer):
    """A stack of :class:`ReversibleBlock` s run in order.

    ``call(x, reversible=True)``: with ``reversible`` the backward pass recomputes the blocks'
    activations (memory independent of the depth); with ``reversible=False`` it is ordinary
    backprop (every activation stored). Same forward values either way.

    ``torch_weights()`` names the blocks' weights ``<i>.<name>``, as a ``nn.ModuleList`` does.
    Input/output: whatever the blocks take (the shape is preserved).
    """

    def __init__(self, blocks, **kwargs):
        super().__init__(**kwargs)
        blocks = list(blocks)
        for b in blocks:
            if not isinstance(b, ReversibleBlock):
                raise TypeError(f'ReversibleSequence needs ReversibleBlock layers, got '
                                f'{type(b).__name__}')
        self._blocks = blocks
        self.built = all(b.built for b in blocks)

    @property
    def blocks(self):
        return list(self._blocks)

    def __len__(self):
        return len(self._blocks)

    def call(self, x, reversible=True):
        if reversible and self._blocks:
            return reversible_forward(self._blocks, x)
        for block in self._blocks:
            x = block(x)
        return x

    def inverse(self, y):
        for block in reversed(self._blocks):
            y = block.inverse(y)
        return y

    def torch_weights(self):
        from ascendcv.layers.torch_compat import torch_state_variables
        out = {}
        for i, block in enumerate(self._blocks):
            out.update(torch_state_variables(block, f'{i}.'))
        return out
