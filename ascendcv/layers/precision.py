"""Reduced-precision compute for the weight layers (bfloat16), chosen per layer.

Only convolutions and matmuls change: a layer whose ``compute_precision`` is ``'bfloat16'``
casts its input and kernel to bfloat16, lets oneDNN run the product (float32 accumulation,
AVX512-BF16 / AMX on CPUs that have them), and casts the product back to float32 before the
bias. Everything else stays float32 -- sampling coordinates of the deformable convolution and
attention, softmax, normalisation, residual streams, the residual base, flows -- so the
network's structure decides nothing about precision (except within chains, below).

A layer takes part by calling :func:`lowered` on the operands of its product and
:func:`raised` (or :func:`with_bias`) on the result; :func:`set_precision` switches a built
model (call it before the first trace of the model's functions), skipping layers whose dotted
name (the PyTorch state-dict path, :func:`ascendcv.layers.torch_compat.named_layers`) contains
one of ``keep_float``.

Chains: where a reduced layer's output reaches another reduced layer only through element-wise
steps (conv - LeakyReLU - conv), the second layer would round its input to bfloat16 anyway, so
the product stays bfloat16 through the bias and the activation: two casts fewer and bfloat16
element-wise ops (EfficientSCI-S: casts were 22 % of the bfloat16 forward). The result differs
from casting back and forth only by double rounding (bias added in bfloat16). A block declares
its chains in ``link_reduced_chains()`` with :func:`link_reduced`; :func:`set_precision` calls
it after choosing every layer's precision.

``int8`` is not a compute dtype of the TF graph: it is onnxruntime's integer kernels on the
exported ONNX (:mod:`ascendcv.runner.onnx_int8`); :func:`check_cpu` covers both.
"""
import logging

import tensorflow as tf

PRECISIONS = ('float32', 'bfloat16', 'int8')

# the instruction sets that make each mode pay on x86 (/proc/cpuinfo flags)
CPU_FLAGS = {'bfloat16': ('avx512_bf16', 'amx_bf16'),
             'int8': ('avx512_vnni', 'avx_vnni', 'amx_int8')}

_DTYPES = {'float32': tf.float32, 'bfloat16': tf.bfloat16}


class ReducedPrecisionLayer:
    """Mixin of the layers whose products may run in bfloat16 (:func:`set_precision`).

    ``compute_precision`` (``'float32'`` by default) is read when the layer's call is traced;
    ``keep_reduced_output`` (set by :func:`link_reduced`) keeps the product in the reduced
    dtype; ``accepts_reduced_input``: the layer's call takes a bfloat16 input as it is (false
    for layers that compute on their input first, e.g. an activation quantizer).
    """
    compute_precision = 'float32'
    keep_reduced_output = False
    accepts_reduced_input = True


class ElementwiseStep:
    """Mixin of parameter-free steps (activations) that compute in their input's dtype, so they
    may sit inside a bfloat16 chain (:func:`link_reduced`)."""


def lowered(layer, *tensors):
    """``tensors`` cast to ``layer``'s compute dtype (unchanged in float32); a tuple."""
    name = getattr(layer, 'compute_precision', 'float32')
    if name == 'float32':
        return tensors
    dtype = _DTYPES[name]
    return tuple(tf.cast(t, dtype) for t in tensors)


def raised(y):
    """A product computed from :func:`lowered` operands, back in float32 (other dtypes, e.g.
    float64 networks, pass through)."""
    return tf.cast(y, tf.float32) if y.dtype == tf.bfloat16 else y


def with_bias(layer, y, bias):
    """The product ``y`` of :func:`lowered` operands plus ``bias`` (None = no bias): in float32,
    or kept in the reduced dtype when ``layer.keep_reduced_output`` (bias cast to it)."""
    if getattr(layer, 'keep_reduced_output', False) and y.dtype == tf.bfloat16:
        return y if bias is None else tf.nn.bias_add(y, tf.cast(bias, y.dtype))
    y = raised(y)
    return y if bias is None else tf.nn.bias_add(y, bias)


def link_reduced(first, steps, second):
    """Declare that ``first``'s output reaches ``second`` only through ``steps`` (element-wise,
    :class:`ElementwiseStep`): when both run reduced and ``second`` takes a reduced input, the
    chain stays bfloat16 (Keras' input autocast of the steps and ``second`` off, it would cast
    back to float32). Returns whether it linked."""
    linked = (isinstance(first, ReducedPrecisionLayer) and isinstance(second, ReducedPrecisionLayer)
              and first.compute_precision != 'float32'
              and first.compute_precision == second.compute_precision
              and second.accepts_reduced_input
              and all(is_elementwise(s) for s in steps))
    if linked:
        first.keep_reduced_output = True
        for layer in (*steps, second):
            if hasattr(layer, 'autocast'):
                layer.autocast = False
    return linked


def is_elementwise(step):
    """Whether ``step`` is a parameter-free element-wise step that keeps its input's dtype (an
    :class:`ElementwiseStep`, or Keras' ReLU / LeakyReLU)."""
    import keras
    return isinstance(step, (ElementwiseStep, keras.layers.ReLU, keras.layers.LeakyReLU))


def link_sequence(steps):
    """:func:`link_reduced` every weight layer of the ``nn.Sequential``-like list ``steps`` to
    the next one when only element-wise steps lie between; returns the number of links."""
    steps, linked = list(steps), 0
    for i, step in enumerate(steps):
        if not isinstance(step, ReducedPrecisionLayer):
            continue
        j = i + 1
        while j < len(steps) and is_elementwise(steps[j]):
            j += 1
        if j < len(steps):
            linked += link_reduced(step, steps[i + 1:j], steps[j])
    return linked


def cpu_flags(path='/proc/cpuinfo'):
    """The set of CPU feature flags (empty where ``/proc/cpuinfo`` does not exist)."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith('flags'):
                    return set(line.split(':', 1)[1].split())
    except OSError:
        pass
    return set()


def check_cpu(precision, allow_fallback=True, flags=None, log=None):
    """The precision to run: ``precision`` where the CPU has an instruction set for it (or a GPU
    is used for bfloat16), else float32 with one warning line naming the missing instruction
    sets; with ``allow_fallback=False`` a missing set is an error instead.

    ``flags``: CPU flags to decide on (default: this machine's, :func:`cpu_flags`).
    """
    if precision not in PRECISIONS:
        raise ValueError(f'model.precision must be one of {PRECISIONS}; got {precision!r}')
    if precision == 'float32':
        return precision
    if precision == 'bfloat16' and flags is None and tf.config.list_physical_devices('GPU'):
        return precision
    have = cpu_flags() if flags is None else set(flags)
    needed = CPU_FLAGS[precision]
    if have & set(needed):
        return precision
    what = ' / '.join(f.upper() for f in needed)
    if not allow_fallback:
        raise RuntimeError(f'model.precision={precision}: this CPU has no {what} '
                           f'(precision.allow_fallback is False)')
    (log or logging.getLogger(__name__).warning)(
        f'model.precision={precision}: this CPU has no {what}; running float32 instead')
    return 'float32'


def set_precision(model, precision, keep_float=()):
    """Set the compute precision of every :class:`ReducedPrecisionLayer` of ``model`` whose
    dotted name contains none of ``keep_float`` and whose class name is not one of them; those
    stay float32.

    Returns ``{'reduced': [names], 'float32': [names kept float32], 'chains': number of
    linked layer pairs (blocks' ``link_reduced_chains()``)}``. ``precision`` is
    ``'float32'`` or ``'bfloat16'`` (``'int8'`` is an onnxruntime mode, not a TF dtype).
    """
    from ascendcv.layers.torch_compat import named_layers
    if precision not in _DTYPES:
        raise ValueError(f"set_precision: precision must be one of {tuple(_DTYPES)} (int8 runs "
                         f"in onnxruntime); got {precision!r}")
    keep = tuple(str(k) for k in keep_float if str(k))
    out = {'reduced': [], 'float32': []}
    if not hasattr(model, '_flatten_layers'):  # not a Keras model (e.g. GAP-TV): no weights
        return out
    names = {id(layer): name for name, layer in named_layers(model)}
    # Keras tracks every sub-layer, also those held privately (named by their layer name)
    layers = list(model._flatten_layers(include_self=True, recursive=True))
    for layer in layers:
        if isinstance(layer, ReducedPrecisionLayer):
            layer.keep_reduced_output = False
        if isinstance(layer, ReducedPrecisionLayer) or is_elementwise(layer):
            layer.autocast = True
        if not isinstance(layer, ReducedPrecisionLayer):
            continue
        name = names.get(id(layer), layer.name)
        stays = precision == 'float32' or type(layer).__name__ in keep or any(
            k in name for k in keep)
        layer.compute_precision = 'float32' if stays else precision
        out['float32' if stays else 'reduced'].append(name or type(layer).__name__)
    out['chains'] = 0
    for layer in layers:
        if hasattr(layer, 'link_reduced_chains'):
            out['chains'] += int(layer.link_reduced_chains() or 0)
    return out

