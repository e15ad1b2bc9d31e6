"""Freeze a model to a GraphDef (``output_dir/<Model>.pb``, no variables) and export ONNX.

The serving signature honours the config keys of the original tooling:

* ``data.eval_batch_size``: the batch dimension (``-1`` -> ``None``, any batch);
* ``data.eval_in_size``: ``[H, W]`` of the LR input (a value ``<= 0`` makes that size dynamic);
* ``model.input_format_dimension``: ``5`` = ``[N, D, H, W, C]`` input; ``4`` = ``[N*D, H, W, C]``,
  reshaped to 5-D inside the graph (for runtimes that only take 4-D tensors);
* ``model.convert_output_to_uint8``: output ``round(clip(y, 0, 1) * 255)`` as uint8.

Input tensor ``input:0``, output ``output:0``; a sidecar ``<Model>.json`` records them with the
shapes and the number of frames, so :class:`FrozenGraphModel` can run the ``.pb`` alone.
With ``export.pb_xla_dcn`` (default) the ``.pb`` keeps the deformable convolutions as XLA-compiled
functions (in the GraphDef's function library; the TF runtime compiles them on first use), which
makes the frozen graph as fast as the live ``tf.function`` model (2.95 s vs 3.47 s per EDVR-M
frame at 180x320 here). ONNX is always exported from a plain graph of core ops, which tf2onnx
converts and any runtime executes.
"""
import json
import os

import numpy as np
import tensorflow as tf
from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

from ascendcv.utils.fileio import atomic_write_bytes as _atomic_write


def serving_function(model, cfg):
    """A ``tf.function`` with the frozen signature described in the module docstring.

    Models that are not clip-to-frame video models declare their own input with
    ``model.serving_input_spec(cfg) -> tf.TensorSpec`` (e.g. a frame index for NeRV, a
    measurement for SCI); ``model.convert_output_to_uint8`` still applies.
    """
    to_uint8 = cfg.model.convert_output_to_uint8
    if hasattr(model, 'serving_input_spec'):
        spec = model.serving_input_spec(cfg)

        @tf.function(input_signature=[tf.TensorSpec(spec.shape, spec.dtype, name='input')])
        def serve_custom(x):
            y = model(x, training=False)
            if to_uint8:
                y = tf.cast(tf.round(tf.clip_by_value(y, 0.0, 1.0) * 255.0), tf.uint8)
            return tf.identity(y, name='output')

        return serve_custom, spec.shape.as_list()
    t, c = model.num_frame, model.num_in_ch
    b = None if cfg.data.eval_batch_size < 0 else int(cfg.data.eval_batch_size)
    h, w = [None if s <= 0 else int(s) for s in cfg.data.eval_in_size]
    dim = cfg.model.input_format_dimension
    if dim == 5:
        shape = [b, t, h, w, c]
    elif dim == 4:
        shape = [None if b is None else b * t, h, w, c]
    else:
        raise ValueError(f'model.input_format_dimension must be 4 or 5, got {dim}')

    @tf.function(input_signature=[tf.TensorSpec(shape, tf.float32, name='input')])
    def serve(x):
        if dim == 4:
            s = tf.shape(x)
            x = tf.reshape(x, [-1, t, s[1], s[2], c])
            x.set_shape([b, t, h, w, c])
        y = model(x, training=False)
        if to_uint8:
            y = tf.cast(tf.round(tf.clip_by_value(y, 0.0, 1.0) * 255.0), tf.uint8)
        return tf.identity(y, name='output')

    return serve, shape


def freeze(model, cfg, path):
    """Write the frozen GraphDef to ``path`` atomically; returns ``(path, meta)``."""
    serve, shape = serving_function(model, cfg)
    concrete = serve.get_concrete_function()
    frozen = convert_variables_to_constants_v2(concrete)
    graph_def = frozen.graph.as_graph_def()
    leftover = [n.op for n in graph_def.node if n.op in ('VarHandleOp', 'ReadVariableOp', 'VariableV2')]
    if leftover:
        raise RuntimeError(f'freezing left variable ops in the graph: {sorted(set(leftover))}')
    input_name = frozen.inputs[0].name
    output_name = frozen.outputs[0].name
    meta = dict(model=cfg.model.name, input=input_name, output=output_name, input_shape=shape,
                input_dtype=frozen.inputs[0].dtype.name,
                input_format_dimension=(cfg.model.input_format_dimension
                                        if not hasattr(model, 'serving_input_spec') else len(shape)),
                output_dtype='uint8' if cfg.model.convert_output_to_uint8 else 'float32',
                num_frame=getattr(model, 'num_frame', None),
                num_in_ch=getattr(model, 'num_in_ch', None), scale=cfg.model.scale,
                nodes=len(graph_def.node))
    _atomic_write(path, graph_def.SerializeToString())
    _atomic_write(os.path.splitext(path)[0] + '.json', json.dumps(meta, indent=1).encode())
    return path, meta


class FrozenGraphModel:
    """Run a frozen ``.pb`` written by :func:`freeze` (needs its ``.json`` sidecar).

    ``model(x)`` takes the graph's input layout and returns a tensor; ``num_frame`` and
    ``input_format_dimension`` come from the sidecar.
    """

    def __init__(self, path):
        meta_path = os.path.splitext(path)[0] + '.json'
        if not os.path.isfile(path):
            raise FileNotFoundError(f'frozen graph not found: {path}')
        if not os.path.isfile(meta_path):
            raise FileNotFoundError(f'{path}: missing sidecar {meta_path} (written by --mode freeze)')
        with open(meta_path) as f:
            self.meta = json.load(f)
        graph_def = tf.compat.v1.GraphDef()
        with open(path, 'rb') as f:
            try:
                graph_def.ParseFromString(f.read())
            except Exception as err:  # protobuf DecodeError
                raise ValueError(f'{path} is not a frozen TF GraphDef: {err}') from err

        def imported():
            tf.compat.v1.import_graph_def(graph_def, name='')

        wrapped = tf.compat.v1.wrap_function(imported, [])
        g = wrapped.graph
        self._fn = wrapped.prune(g.get_tensor_by_name(self.meta['input']),
                                 g.get_tensor_by_name(self.meta['output']))
        self.num_frame = self.meta['num_frame']
        self.num_in_ch = self.meta['num_in_ch']
        self.name = self.meta['model']

    def __call__(self, x, training=False):
        x = tf.convert_to_tensor(x, self.meta.get('input_dtype', 'float32'))
        if self.num_frame and self.meta['input_format_dimension'] == 4 and x.shape.rank == 5:
            x = tf.reshape(x, [-1, *x.shape[2:]])
        return self._fn(x)


def export_onnx(pb_path, onnx_path, opset=17):
    """Convert the frozen graph to ONNX with tf2onnx (atomic write); returns the path."""
    import tf2onnx
    with open(os.path.splitext(pb_path)[0] + '.json') as f:
        meta = json.load(f)
    graph_def = tf.compat.v1.GraphDef()
    with open(pb_path, 'rb') as f:
        graph_def.ParseFromString(f.read())
    tmp = os.path.join(os.path.dirname(os.path.abspath(onnx_path)), '.tmp-' + os.path.basename(onnx_path))
    try:
        tf2onnx.convert.from_graph_def(graph_def, input_names=[meta['input']],
                                       output_names=[meta['output']], opset=opset,
                                       output_path=tmp)
        os.replace(tmp, onnx_path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return onnx_path


def check_onnx(onnx_path, pb_model, x):
    """Max abs difference between onnxruntime and the frozen TF graph on input ``x``."""
    import onnxruntime as ort
    sess = ort.InferenceSession(onnx_path, providers=['CPUExecutionProvider'])
    inp = sess.get_inputs()[0]
    name = inp.name
    if len(inp.shape) == 4 and x.ndim == 5:
        x = x.reshape(-1, *x.shape[2:])
    y_onnx = sess.run(None, {name: x.astype(np.float32)})[0]
    y_tf = pb_model(x).numpy()
    return float(np.abs(y_onnx.astype(np.float64) - y_tf.astype(np.float64)).max())


def export_and_check(cfg, logger):
    """``--mode freeze``: build without XLA, restore ``model.checkpoint``, freeze to
    ``output_dir/<Model>.pb``, check the frozen graph against the eager model, then (with
    ``export.onnx``) export ONNX and check it in onnxruntime. Returns a dict of paths and errors."""
    from ascendcv.runner.checkpoint import restore_checkpoint
    from ascendcv.utils.torch_checkpoint import CheckpointError
    from ascendvsr.models import build_model
    if not cfg.model.checkpoint:
        raise CheckpointError('model.checkpoint is empty: give the TF checkpoint to freeze')
    model = build_model(cfg, jit_compile=False)
    prefix = restore_checkpoint(model, cfg.model.checkpoint)
    pb = os.path.join(cfg.output_dir, f'{cfg.model.name}.pb')
    pb_model = model
    if cfg.export.pb_xla_dcn:
        pb_model = build_model(cfg, jit_compile=True)
        restore_checkpoint(pb_model, prefix)
    path, meta = freeze(pb_model, cfg, pb)
    logger.info(f'Froze {prefix} -> {path} (input {meta["input"]} {meta["input_shape"]}, '
                f'output {meta["output"]} {meta["output_dtype"]}, {meta["nodes"]} nodes)')
    frozen = FrozenGraphModel(path)
    if hasattr(model, 'example_input'):
        x = model.example_input(cfg)
        y_eager = model(tf.constant(x), training=False).numpy()
        if meta['output_dtype'] == 'uint8':
            y_eager = np.round(np.clip(y_eager, 0, 1) * 255)
        return _finish_export(cfg, logger, model, pb_model, path, frozen, x, y_eager)
    # check on a small random input of the frozen layout (dynamic sizes get the configured size)
    rng = np.random.default_rng(0)
    shape = [2 if s is None else s for s in meta['input_shape']]
    if meta['input_format_dimension'] == 4:
        shape[0] = (2 if meta['input_shape'][0] is None else shape[0] // model.num_frame) * model.num_frame
    for i, size in ((-3, 64), (-2, 64)):
        if meta['input_shape'][i] is None:
            shape[i] = size
    x = rng.random(shape, dtype=np.float32)
    x5 = x.reshape(-1, model.num_frame, *x.shape[1:]) if x.ndim == 4 else x
    y_eager = model(tf.constant(x5), training=False).numpy()
    if meta['output_dtype'] == 'uint8':
        y_eager = np.round(np.clip(y_eager, 0, 1) * 255)
    return _finish_export(cfg, logger, model, pb_model, path, frozen, x, y_eager)


def _finish_export(cfg, logger, model, pb_model, path, frozen, x, y_eager):
    """Compare the frozen graph with the eager model, then export and check ONNX."""
    err = float(np.abs(frozen(x).numpy().astype(np.float64) - y_eager).max())
    logger.info(f'Frozen graph vs eager model: max abs diff {err:.3g} on input {list(x.shape)}')
    result = dict(pb=path, pb_max_abs_diff=err)
    if cfg.export.onnx:
        onnx_path = os.path.splitext(path)[0] + '.onnx'
        source = path
        if pb_model is not model:  # tf2onnx needs the plain graph of core ops
            source = os.path.join(cfg.output_dir, f'.plain-{cfg.model.name}.pb')
            freeze(model, cfg, source)
        try:
            export_onnx(source, onnx_path, cfg.export.onnx_opset)
        finally:
            if source != path:
                for p in (source, os.path.splitext(source)[0] + '.json'):
                    if os.path.exists(p):
                        os.remove(p)
        diff = check_onnx(onnx_path, frozen, x)
        logger.info(f'ONNX written to {onnx_path}; onnxruntime vs TF: max abs diff {diff:.3g}')
        result.update(onnx=onnx_path, onnx_max_abs_diff=diff)
    return result
