"""``model.precision`` for evaluation, inference and freezing: float32, bfloat16 or int8, with an
accuracy guard.

* **bfloat16**: the weight layers' products run in bfloat16 in the TF graph
  (:func:`ascendcv.layers.precision.set_precision`; everything between them stays float32), minus
  the layers the task (:meth:`Task.keep_float`) and ``precision.keep_float`` keep in float32.
  The frozen ``.pb`` holds the bfloat16 graph.
* **int8**: a task with a model of its own integer arithmetic (:meth:`Task.integer_model`;
  Q-SCI: its calibrated quantizers on oneDNN's int8 convolutions in the TF graph) runs that
  twin, and an int8 freeze writes its integer graph as the ``.pb``. Otherwise onnxruntime's
  integer kernels: the model is frozen in float32, exported to ONNX, calibrated on the first
  ``precision.calibration_batches`` model calls of the evaluation data and quantized statically
  (:mod:`ascendcv.runner.onnx_int8`); the model then runs as an
  :class:`~ascendcv.runner.onnx_int8.OnnxModel`, the ``.pb`` of an int8 freeze stays float32
  and the int8 model is ``<Model>.int8.onnx``.
* **guard** (``precision.guard``): the task's evaluation runs in float32 and in the reduced mode;
  the drop of :meth:`Task.headline_psnr` is reported (``<output_dir>/precision/report.json``) and
  a freeze whose drop exceeds ``precision.max_drop_<mode>`` dB is refused, nothing written.

The CPU check (:func:`ascendcv.layers.precision.check_cpu`) falls back to float32 with one warning
line where the instruction sets are missing (``precision.allow_fallback``).
"""
import contextlib
import json
import os

from ascendcv.layers.precision import check_cpu, set_precision
from ascendcv.runner.freezer import FrozenGraphModel
from ascendcv.utils.fileio import atomic_write_bytes


class PrecisionGuardError(RuntimeError):
    """A reduced-precision mode loses more PSNR than ``precision.max_drop_<mode>`` allows."""


class _CalibrationDone(Exception):
    """Raised by :class:`_Recorder` once it holds enough calls (ends the calibration run)."""


def effective_precision(cfg, logger=None):
    """``model.precision`` after the CPU check (float32 where it falls back)."""
    log = None if logger is None else logger.warning
    return check_cpu(cfg.model.precision, cfg.precision.allow_fallback, log=log)


def keep_float(cfg, task, precision):
    """Layer-name substrings kept in float32: the task's list for ``precision`` and the config's."""
    return tuple(task.keep_float(precision)) + tuple(cfg.precision.keep_float)


def apply_bfloat16(cfg, task, model, logger):
    """Switch ``model``'s weight layers to bfloat16 (before its first call); logs how many."""
    split = set_precision(model, 'bfloat16', keep_float(cfg, task, 'bfloat16'))
    kept = split['float32']
    logger.info(f'bfloat16 compute in {len(split["reduced"])} weight layers'
                + (f'; float32 kept in {len(kept)}: {", ".join(kept[:8])}'
                   + (' ...' if len(kept) > 8 else '') if kept else ''))
    return split


@contextlib.contextmanager
def overridden(cfg, values):
    """Run with the config keys ``values`` (``{'a.b': value}``) set, then restore them."""
    frozen = cfg.is_frozen()
    cfg.defrost()
    old = {}
    for key, value in values.items():
        *path, leaf = key.split('.')
        node = cfg
        for part in path:
            node = node[part]
        old[key] = (node, leaf, node[leaf])
        node[leaf] = value
    try:
        yield cfg
    finally:
        for node, leaf, value in old.values():
            node[leaf] = value
        if frozen:
            cfg.freeze()


@contextlib.contextmanager
def output_dir_of(cfg, sub):
    """Run with ``cfg.output_dir`` = ``<output_dir>/<sub>`` (reports of side runs go there)."""
    path = os.path.join(cfg.output_dir, sub)
    os.makedirs(path, exist_ok=True)
    with overridden(cfg, {'output_dir': path}):
        yield path


class _Recorder(FrozenGraphModel):
    """Wraps an exported model (tasks see a frozen graph with its sidecar): forwards calls and
    keeps the inputs of the first ``limit`` (numpy, the graph's input order), then ends the run
    with :class:`_CalibrationDone`."""

    def __init__(self, model, limit):  # the wrapped model is loaded already

        self.model, self.limit, self.calls = model, int(limit), []
        self.meta, self.name, self.path = model.meta, model.name, model.path

    def __call__(self, *inputs, **kwargs):
        import numpy as np
        if len(self.calls) >= self.limit:
            raise _CalibrationDone()
        self.calls.append(tuple(np.asarray(x) for x in inputs))
        return self.model(*inputs, **kwargs)


def calibration_count(cfg):
    """``precision.calibration_batches``; an error naming the key when it is 0."""
    n = int(cfg.precision.calibration_batches)
    if n <= 0:
        raise ValueError('model.precision=int8 needs calibration data: set '
                         'precision.calibration_batches > 0 (model calls of the evaluation data)')
    return n


def calibration_inputs(cfg, task, frozen, logger):
    """The inputs of the first ``precision.calibration_batches`` calls the task's evaluation
    makes to ``frozen`` (a float32 :class:`FrozenGraphModel`); its reports go to a side folder."""
    recorder = _Recorder(frozen, calibration_count(cfg))
    with output_dir_of(cfg, os.path.join('precision', 'calibration')):
        try:
            task.evaluate(recorder, logger)
        except _CalibrationDone:
            pass
        except (OSError, ValueError) as err:
            raise ValueError(f'int8 calibration runs the evaluation data of --mode eval, which '
                             f'failed: {err}') from err
    if not recorder.calls:
        raise ValueError('int8 calibration: the evaluation data made no model call '
                         '(precision.calibration_batches needs evaluation data)')
    logger.info(f'int8 calibration on {len(recorder.calls)} model call(s) of the evaluation '
                f'data, input shapes {[list(x.shape) for x in recorder.calls[0]]}')
    return recorder.calls


def quantize_exported(cfg, task, pb, onnx_path, out, logger, calib=None):
    """Calibrate on the evaluation data through the float ``pb`` (its ``.onnx`` export is
    ``onnx_path``; or take the recorded inputs ``calib``) and write the int8 ONNX ``out``;
    returns the quantization report."""
    from ascendcv.runner.onnx_int8 import quantize_onnx
    if calib is None:
        calib = calibration_inputs(cfg, task, FrozenGraphModel(pb), logger)
    report = quantize_onnx(onnx_path, out, calib, keep_float=keep_float(cfg, task, 'int8'))
    logger.info(f'int8 ONNX {out}: {_summary(report)}')
    return report


def int8_model(cfg, task, factory, model, logger, folder):
    """Freeze ``model`` (float32, any frame size) into ``folder``, export ONNX, calibrate and
    quantize it: returns ``(OnnxModel of <Model>.int8.onnx, quantization report)``."""
    from ascendcv.runner.freezer import export_onnx, freeze
    from ascendcv.runner.onnx_int8 import OnnxModel
    calibration_count(cfg)  # before any work
    os.makedirs(folder, exist_ok=True)
    pb = os.path.join(folder, f'{cfg.model.name}.pb')
    # the configured input size (static shapes export best); where the evaluation data does not
    # fit it, any frame size and batch
    freeze(task, model, pb)
    try:
        calib = calibration_inputs(cfg, task, FrozenGraphModel(pb), logger)
    except ValueError as err:
        if 'was frozen for input' not in str(err):
            raise
        logger.info('int8: the data does not fit data.eval_in_size; exporting for any size')
        with overridden(cfg, {'data.eval_in_size': [-1, -1], 'export.batch_size': 0}):
            freeze(task, model, pb)
        calib = calibration_inputs(cfg, task, FrozenGraphModel(pb), logger)
    onnx_float = os.path.splitext(pb)[0] + '.onnx'
    export_onnx(pb, onnx_float, cfg.export.onnx_opset)
    out = os.path.splitext(pb)[0] + '.int8.onnx'
    report = quantize_exported(cfg, task, pb, onnx_float, out, logger, calib)
    return OnnxModel(out, intra_op_num_threads=int(cfg.precision.ort_threads)), report


def _summary(report):
    """One line of a :func:`quantize_onnx` report: what became integer, what stayed float."""
    quantized = ', '.join(f'{n} {op}' for op, n in sorted(report.get('quantized', {}).items()))
    left = sorted(report.get('float_ops', {}))
    size = report.get('size_bytes')
    return (f'quantized {quantized or "nothing"}; float ops left: {", ".join(left) or "none"}'
            + (f'; {size / 2**20:.1f} MiB' if size else ''))


def reduced_model(cfg, task, factory, checkpoint, logger, precision=None):
    """The model to run in ``model.precision`` (after the CPU check) from a TF ``checkpoint``:
    ``(model, precision)``."""
    from ascendcv.runner.checkpoint import build_and_restore
    precision = precision or effective_precision(cfg, logger)
    # int8 exports ONNX: a plain graph of core ops (no XLA functions), as the freezer builds it
    overrides = dict(jit_compile=False) if precision == 'int8' else {}
    model, _ = build_and_restore(factory, cfg, checkpoint, logger=logger.info, **overrides)
    if precision == 'bfloat16':
        apply_bfloat16(cfg, task, model, logger)
    elif precision == 'int8':
        twin = task.integer_model(model)
        if twin is not None:
            logger.info(f'int8: {type(twin).__name__}, integer kernels in the TF graph '
                        f'({twin.int8_summary()})')
            return twin, precision
        folder = os.path.join(cfg.output_dir, 'precision', 'int8')
        model, _ = int8_model(cfg, task, factory, model, logger, folder)
    return model, precision


def guard(cfg, task, factory, checkpoint, reduced, precision, logger, enforce=False,
          reduced_report=None):
    """Evaluate float32 (into ``<output_dir>/precision/float32``) and ``reduced`` (into
    ``<output_dir>/precision/<precision>``; or take its ``reduced_report``) and compare
    :meth:`Task.headline_psnr`. Writes and returns ``<output_dir>/precision/report.json``; with
    ``enforce`` a drop above ``precision.max_drop_<precision>`` raises
    :class:`PrecisionGuardError`."""
    from ascendcv.runner.checkpoint import build_and_restore
    reference, _ = build_and_restore(factory, cfg, checkpoint)
    with output_dir_of(cfg, os.path.join('precision', 'float32')):
        float_report = task.evaluate(reference, logger)
    if reduced_report is None:
        with output_dir_of(cfg, os.path.join('precision', precision)):
            reduced_report = task.evaluate(reduced, logger)
    return judge(cfg, task, float_report, reduced_report, precision, logger, enforce)


def judge(cfg, task, float_report, mode_report, precision, logger, enforce=False):
    """Compare two evaluation reports (see :func:`guard`); writes ``precision/report.json``."""
    bound = float(cfg.precision[f'max_drop_{precision}'])
    psnr32, psnr = task.headline_psnr(float_report), task.headline_psnr(mode_report)
    drop = psnr32 - psnr
    summary = dict(model=cfg.model.name, checkpoint=cfg.model.checkpoint, precision=precision,
                   float32_psnr=psnr32, psnr=psnr, drop_db=drop, max_drop_db=bound,
                   passed=bool(drop <= bound))
    path = os.path.join(cfg.output_dir, 'precision', 'report.json')
    os.makedirs(os.path.dirname(path), exist_ok=True)
    atomic_write_bytes(path, json.dumps(summary, indent=1).encode())
    line = (f'Precision guard: {precision} PSNR {psnr:.4f} dB against float32 {psnr32:.4f} dB '
            f'(drop {drop:+.4f} dB, bound {bound:g} dB: {"pass" if summary["passed"] else "FAIL"})'
            f'; {path}')
    logger.info(line)
    if enforce and not summary['passed']:
        raise PrecisionGuardError(
            f'model.precision={precision} loses {drop:.4f} dB PSNR against float32 on the '
            f'evaluation data (precision.max_drop_{precision} = {bound:g} dB): not exported; '
            f'keep more layers in float32 (precision.keep_float) or raise the bound')
    return summary
