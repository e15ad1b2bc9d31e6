"""Freeze a model to a GraphDef (``output_dir/<Model>.pb``, no variables) and export ONNX.

The graph's inputs are the task's serving signature (:meth:`ascendcv.runner.task.Task.
serving_signature`: one named ``tf.TensorSpec`` per input, several allowed) and its computation
:meth:`Task.serve`; with ``model.convert_output_to_uint8`` the output is
``round(clip(y, 0, 1) * 255)`` as uint8. Output tensor ``output:0``; a sidecar ``<Model>.json``
records the inputs (names, shapes, dtypes), the output and the task's :meth:`Task.export_meta`,
so :class:`FrozenGraphModel` runs the ``.pb`` alone.

With ``export.pb_xla_dcn`` (default) the ``.pb`` is frozen from a model built with
``jit_compile=True``, so XLA-compiled functions (EDVR's deformable convolutions) stay in the
GraphDef's function library and the TF runtime compiles them on first use (see
``benchmarks/frozen_speed.py`` for the figures). ONNX is always exported from a plain graph of
core ops (``jit_compile=False``), which tf2onnx converts and any runtime executes.
"""
import json
import os

import numpy as np
import tensorflow as tf
from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

from ascendcv.utils.fileio import atomic_write_bytes as _atomic_write, atomic_write_via


def serving_function(task, model):
    """``(tf.function with the task's input signature, list of input specs)``."""
    specs = list(task.serving_signature(model))
    names = [s.name for s in specs]
    if not specs or any(not n for n in names) or len(set(names)) != len(names):
        raise ValueError(f'{type(task).__name__}.serving_signature must give named, distinct '
                         f'TensorSpecs; got {specs}')
    to_uint8 = task.cfg.model.convert_output_to_uint8

    @tf.function(input_signature=specs)
    def serve(*inputs):
        y = task.serve(model, *inputs)
        if to_uint8:
            y = tf.cast(tf.round(tf.clip_by_value(y, 0.0, 1.0) * 255.0), tf.uint8)
        return tf.identity(y, name='output')

    return serve, specs


def freeze(task, model, path, precision='float32'):
    """Write the frozen GraphDef to ``path`` atomically (and its ``.json`` sidecar, which records
    the compute ``precision`` of the graph); returns ``(path, meta)``."""
    cfg = task.cfg
    serve, specs = serving_function(task, model)
    frozen = convert_variables_to_constants_v2(serve.get_concrete_function())
    graph_def = frozen.graph.as_graph_def()
    leftover = [n.op for n in graph_def.node if n.op in ('VarHandleOp', 'ReadVariableOp', 'VariableV2')]
    if leftover:
        raise RuntimeError(f'freezing left variable ops in the graph: {sorted(set(leftover))}')
    inputs = [dict(name=t.name, shape=spec.shape.as_list(), dtype=t.dtype.name)
              for t, spec in zip(frozen.inputs, specs)]
    meta = dict(model=cfg.model.name, inputs=inputs, output=frozen.outputs[0].name,
                output_dtype='uint8' if cfg.model.convert_output_to_uint8 else 'float32',
                nodes=len(graph_def.node), precision=precision, **task.export_meta(model))
    _atomic_write(path, graph_def.SerializeToString())
    _atomic_write(os.path.splitext(path)[0] + '.json', json.dumps(meta, indent=1).encode())
    return path, meta


class FrozenGraphModel:
    """Run a frozen ``.pb`` written by :func:`freeze` (needs its ``.json`` sidecar).

    ``model(*inputs)`` takes one array per graph input (the serving signature's order) and
    returns a tensor; ``meta`` is the sidecar (the task's export entries included).
    """

    def __init__(self, path):
        meta_path = os.path.splitext(path)[0] + '.json'
        if not os.path.isfile(path):
            raise FileNotFoundError(f'frozen graph not found: {path}')
        if not os.path.isfile(meta_path):
            raise FileNotFoundError(f'{path}: missing sidecar {meta_path} (written by --mode freeze)')
        with open(meta_path) as f:
            self.meta = json.load(f)
        if 'inputs' not in self.meta:
            raise ValueError(f'{meta_path} has no "inputs" entry: freeze the model again with '
                             f'--mode freeze')
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
        self._fn = wrapped.prune([g.get_tensor_by_name(i['name']) for i in self.meta['inputs']],
                                 g.get_tensor_by_name(self.meta['output']))
        self.name = self.meta['model']
        self.path = path

    def __call__(self, *inputs, training=False):
        if len(inputs) != len(self.meta['inputs']):
            raise ValueError(f'{self.path} takes {len(self.meta["inputs"])} input(s) '
                             f'{[i["name"] for i in self.meta["inputs"]]}; got {len(inputs)}')
        return self._fn(*[tf.convert_to_tensor(x, spec['dtype'])
                          for x, spec in zip(inputs, self.meta['inputs'])])


def export_onnx(pb_path, onnx_path, opset=17):
    """Convert the frozen graph to ONNX with tf2onnx (atomic write); returns the path."""
    import tf2onnx
    with open(os.path.splitext(pb_path)[0] + '.json') as f:
        meta = json.load(f)
    graph_def = tf.compat.v1.GraphDef()
    with open(pb_path, 'rb') as f:
        graph_def.ParseFromString(f.read())

    def write(tmp):
        tf2onnx.convert.from_graph_def(graph_def, input_names=[i['name'] for i in meta['inputs']],
                                       output_names=[meta['output']], opset=opset,
                                       output_path=tmp)
    return atomic_write_via(onnx_path, write)


def check_onnx(onnx_path, frozen, inputs):
    """Max abs difference between onnxruntime and the frozen TF graph on ``inputs``."""
    import onnxruntime as ort
    sess = ort.InferenceSession(onnx_path, providers=['CPUExecutionProvider'])
    feed = {i.name: np.asarray(x) for i, x in zip(sess.get_inputs(), inputs)}
    y_onnx = sess.run(None, feed)[0]
    y_tf = frozen(*inputs).numpy()
    return float(np.abs(y_onnx.astype(np.float64) - y_tf.astype(np.float64)).max())


def export_and_check(cfg, task, factory, logger):
    """``--mode freeze``: build the model with ``factory`` (no XLA), restore
    ``model.checkpoint``, freeze to ``output_dir/<Model>.pb``, compare the frozen graph with the
    live model on the task's example inputs, then (with ``export.onnx``) export ONNX and check it
    in onnxruntime. Returns a dict of paths and errors.

    ``model.precision`` (:mod:`ascendcv.runner.precision`): ``bfloat16`` freezes the bfloat16
    graph (ONNX has no bfloat16 Conv/MatMul, so the ``.onnx`` is the float32 graph); ``int8``
    adds ``<Model>.int8.onnx`` (the ``.pb`` stays float32), unless the task has an integer twin
(:meth:`Task.integer_model`, Q-SCI), whose int8 graph the ``.pb`` then holds. With
    ``precision.guard`` a mode losing more than ``precision.max_drop_<mode>`` dB on the
    evaluation data is refused before anything of it is written."""
    from ascendcv.runner import precision as prec
    from ascendcv.runner.checkpoint import build_and_restore
    from ascendcv.utils.torch_checkpoint import CheckpointError
    if task.needs_checkpoint and not cfg.model.checkpoint:
        raise CheckpointError('model.checkpoint is empty: give the TF checkpoint to freeze')
    mode = prec.effective_precision(cfg, logger)
    model, prefix = build_and_restore(factory, cfg, cfg.model.checkpoint, jit_compile=False)
    twin = task.integer_model(model) if mode == 'int8' else None
    if mode == 'int8' and twin is None:
        prec.calibration_count(cfg)  # before the long work
    pb_model = model  # the graph of the .pb: XLA deformable convs, bfloat16 layers, int8 twin
    if twin is not None:
        pb_model = twin
    elif cfg.export.pb_xla_dcn or mode == 'bfloat16':
        pb_model, _ = build_and_restore(factory, cfg, prefix,
                                        jit_compile=bool(cfg.export.pb_xla_dcn))
    graph_precision = 'float32'
    if mode == 'bfloat16':
        prec.apply_bfloat16(cfg, task, pb_model, logger)
        graph_precision = 'bfloat16'
    if twin is not None:
        graph_precision = 'int8'
        logger.info(f'int8: {type(twin).__name__} ({twin.int8_summary()})')
    if graph_precision != 'float32' and cfg.precision.guard:
        prec.guard(cfg, task, factory, prefix or '', pb_model, mode, logger, enforce=True)
    pb = os.path.join(cfg.output_dir, f'{cfg.model.name}.pb')
    path, meta = freeze(task, pb_model, pb, precision=graph_precision)
    shapes = ', '.join(f'{i["name"]} {i["shape"]}' for i in meta['inputs'])
    logger.info(f'Froze {prefix or cfg.model.name} -> {path} ({graph_precision}; input {shapes}, '
                f'output {meta["output"]} {meta["output_dtype"]}, {meta["nodes"]} nodes)')
    frozen = FrozenGraphModel(path)
    inputs = [np.asarray(x) for x in task.example_inputs(model)]
    y_live = np.asarray(task.serve(pb_model, *[tf.constant(x) for x in inputs]))
    if meta['output_dtype'] == 'uint8':
        y_live = np.round(np.clip(y_live, 0, 1) * 255)
    err = float(np.abs(frozen(*inputs).numpy().astype(np.float64) - y_live).max())
    logger.info(f'Frozen graph vs live model: max abs diff {err:.3g} on input '
                f'{[list(x.shape) for x in inputs]}')
    result = dict(pb=path, pb_max_abs_diff=err, precision=mode)
    if cfg.export.onnx or (mode == 'int8' and twin is None):
        onnx_path = os.path.splitext(path)[0] + '.onnx'
        source, reference = path, frozen
        if pb_model is not model:  # tf2onnx needs the plain float32 graph of core ops
            source = os.path.join(cfg.output_dir, f'.plain-{cfg.model.name}.pb')
            freeze(task, model, source)
        try:
            export_onnx(source, onnx_path, cfg.export.onnx_opset)
            if source != path:
                reference = FrozenGraphModel(source)
            diff = check_onnx(onnx_path, reference, inputs)
        finally:
            if source != path:
                for p in (source, os.path.splitext(source)[0] + '.json'):
                    if os.path.exists(p):
                        os.remove(p)
        meta['onnx_precision'] = 'float32'  # the sidecar is shared by the .pb and the .onnx
        _atomic_write(os.path.splitext(path)[0] + '.json', json.dumps(meta, indent=1).encode())
        logger.info(f'ONNX written to {onnx_path} (float32); onnxruntime vs TF float32: max abs '
                    f'diff {diff:.3g}')
        result.update(onnx=onnx_path, onnx_max_abs_diff=diff)
        if mode == 'int8' and twin is None:
            result.update(_export_int8(cfg, task, factory, prefix, frozen, onnx_path, logger))
    return result


def _export_int8(cfg, task, factory, prefix, frozen, onnx_path, logger):
    """Calibrate through the loaded float ``frozen`` graph, quantize the float ONNX next to it;
    guard; rename into place."""
    from ascendcv.runner import precision as prec
    from ascendcv.runner.onnx_int8 import OnnxModel
    final = os.path.splitext(onnx_path)[0] + '.int8.onnx'
    staged = os.path.join(os.path.dirname(final), '.staged-' + os.path.basename(final))
    calib = prec.calibration_inputs(cfg, task, frozen, logger)
    report = prec.quantize_exported(cfg, task, frozen.path, onnx_path, staged, logger, calib)
    staged_meta, final_meta = (os.path.splitext(p)[0] + '.json' for p in (staged, final))
    try:
        int8 = OnnxModel(staged, intra_op_num_threads=int(cfg.precision.ort_threads))
        if cfg.precision.guard:
            prec.guard(cfg, task, factory, prefix or '', int8, 'int8', logger, enforce=True)
        os.replace(staged_meta, final_meta)
        os.replace(staged, final)
    finally:
        for p in (staged, staged_meta):
            if os.path.exists(p):
                os.remove(p)
    logger.info(f'int8 ONNX written to {final}')
    return dict(int8_onnx=final, int8_quantization=report)

