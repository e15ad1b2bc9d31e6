"""The one entry point behind every script: the ``ascendvsr`` command (``pip install .``) and
``tools/main.py``.

    ascendvsr MODE --config-file configs/edvr.yaml [KEY VALUE | KEY=VALUE ...]
    python tools/main.py --config-file configs/edvr.yaml --mode MODE [KEY VALUE | KEY=VALUE ...]

Modes:
  train      train (resumes from output_dir/checkpoints when present)
  eval       per-video PSNR/SSIM on the validation set with model.checkpoint (TF checkpoint or .pb)
  inference  restore inference.source (video file or frame folder) with model.checkpoint
  freeze     write output_dir/<Model>.pb (frozen GraphDef) and, with export.onnx, <Model>.onnx
  convert    official PyTorch checkpoint (convert.source) -> TF checkpoint (convert.output)
"""
import argparse
import logging
import os
import re
import sys

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

MODES = ('train', 'eval', 'inference', 'freeze', 'convert')


def parse_args(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in MODES:  # `ascendvsr eval ...` = `--mode eval ...`
        argv = ['--mode', argv[0]] + argv[1:]
    ap = argparse.ArgumentParser(prog='ascendvsr', description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--config-file', default='', help='YAML file under configs/')
    ap.add_argument('--mode', choices=MODES, help='what to run (overrides the config key "mode")')
    ap.add_argument('--debug', action='store_true',
                    help='show the traceback of an error (also: ASCENDVSR_DEBUG=1)')
    ap.add_argument('opts', nargs=argparse.REMAINDER, help='config overrides: KEY VALUE or KEY=VALUE')
    return ap.parse_args(argv)


def load_model_for_inference(cfg, entry, task, logger):
    """The model to run: a frozen ``.pb`` or an exported ``.onnx`` as is, or the registered
    model with a TF checkpoint in ``model.precision`` (:mod:`ascendcv.runner.precision`)."""
    return load_model(cfg, entry, task, logger)[0]


def load_model(cfg, entry, task, logger):
    """``(model, precision it runs in, whether it came from a TF checkpoint)``."""
    from ascendcv.utils.torch_checkpoint import CheckpointError
    ckpt = cfg.model.checkpoint
    if ckpt.endswith(('.pb', '.onnx')):
        exported, held = _load_exported(ckpt, cfg.model.precision)
        logger.info(f'Running the exported model {ckpt} ({held})')
        return exported, held, False
    if task.needs_checkpoint and not ckpt:
        raise CheckpointError('model.checkpoint is empty: give a TF checkpoint (prefix or folder), '
                              'a frozen .pb or an exported .onnx (e.g. bash '
                              'scripts/run_evaluation.sh 0 CKPT)')
    from ascendcv.runner.precision import reduced_model
    model, precision = reduced_model(cfg, task, entry.build,
                                        ckpt if task.needs_checkpoint else '', logger)
    return model, precision, True


def _load_exported(path, requested):
    """A ``.pb`` (:class:`FrozenGraphModel`) or ``.onnx`` (:class:`OnnxModel`); refuses one
    whose recorded precision is not ``requested`` (float32 = take what the file holds)."""
    if path.endswith('.pb'):
        from ascendcv.runner.freezer import FrozenGraphModel
        model = FrozenGraphModel(path)
    else:
        from ascendcv.runner.onnx_int8 import OnnxModel
        model = OnnxModel(path)
    meta = model.meta
    if path.endswith('.pb'):
        held = meta.get('precision', 'float32')
    else:  # a float .onnx shares the .pb's sidecar; a quantized one has its own
        held = 'int8' if meta.get('precision') == 'int8' else meta.get('onnx_precision', 'float32')
    if requested != 'float32' and held != requested:
        hint = ('the .int8.onnx that --mode freeze model.precision=int8 writes' if requested == 'int8'
                else f'a file frozen with model.precision={requested}')
        raise ValueError(f'model.precision={requested} but {path} holds a {held} model: give '
                         f'{hint}, or the TF checkpoint')
    return model, held


def run(cfg, logger):
    """Run ``cfg.mode`` for the model registered as ``cfg.model.name``: the runner gets the
    config, the task, the model factory (and builds the distributed backend itself)."""
    from ascendvsr.zoo import get_entry
    entry = get_entry(cfg.model.name)
    task = entry.make_task(cfg)
    if cfg.mode == 'train':
        from ascendcv.runner.trainer import train
        train(cfg, task, entry.build, logger)
    elif cfg.mode == 'eval':
        model, precision, from_checkpoint = load_model(cfg, entry, task, logger)
        report = task.evaluate(model, logger)
        if precision != 'float32' and cfg.precision.guard and from_checkpoint:
            from ascendcv.runner.precision import guard
            guard(cfg, task, entry.build, cfg.model.checkpoint, model, precision, logger,
                  reduced_report=report)
    elif cfg.mode == 'inference':
        task.infer(load_model_for_inference(cfg, entry, task, logger), logger)
    elif cfg.mode == 'freeze':
        from ascendcv.runner.freezer import export_and_check
        export_and_check(cfg, task, entry.build, logger)
    elif cfg.mode == 'convert':
        from ascendvsr.convert import convert_checkpoint
        convert_checkpoint(cfg, entry, logger=logger.info)


def _one_line(err):
    """The message of an expected failure (a TensorFlow runtime error: the first line of its
    message without the ``{{function_node ...}}`` prefix)."""
    import tensorflow as tf
    if isinstance(err, tf.errors.OpError):
        first = (err.message.strip().splitlines() or [type(err).__name__])[0]
        return re.sub(r'^[{][{]function_node [^}]*[}][}] *', '', first)
    text = str(err).strip()
    if isinstance(err, KeyError) and len(err.args) == 1:
        text = str(err.args[0])
    return text or type(err).__name__


def _expected_failures():
    """Exception classes that mean bad input or a broken environment (one line, exit 1), not a
    bug (a traceback)."""
    import tensorflow as tf

    from ascendcv.utils.torch_checkpoint import CheckpointError
    return (CheckpointError, ValueError, OSError, RuntimeError, IndexError, KeyError,
            tf.errors.OpError)


def _checked_config(args):
    """Load the config of the parsed ``args``; ConfigError for anything wrong with it."""
    from ascendvsr.config import ConfigError, parse_overrides
    from ascendvsr.zoo import registered_models
    parse_overrides(list(args.opts))  # a dangling KEY is blamed before --mode is appended
    opts = list(args.opts) + (['mode', args.mode] if args.mode else [])
    from ascendvsr.config.stored import load_run_config  # the config stored with a checkpoint
    cfg, stored = load_run_config(args.config_file, opts)
    if stored and not args.config_file:
        print(f'Config: {stored} (stored with the checkpoint)')
    if cfg.mode not in MODES:
        raise ConfigError(f"mode '{cfg.mode}' is not one of {MODES}")
    if cfg.model.name not in registered_models():
        raise ConfigError(f'model.name={cfg.model.name!r} is not a registered model; known: '
                          f'{registered_models()} (ascendvsr/zoo/)')
    from ascendcv.runner.device import check_device
    try:
        check_device(cfg.device, cfg.device_id)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    return cfg


def _run_logged(cfg):
    """Create the output folder and the logger, select the device and run; returns the exit
    code (expected failures are raised to :func:`main`)."""
    from ascendcv.runner.device import select_device
    from ascendcv.runner.logging_utils import get_logger
    from ascendcv.runner.trainer import NonFiniteLossError
    try:
        os.makedirs(cfg.output_dir, exist_ok=True)
    except OSError as err:
        raise OSError(f'cannot create output_dir {cfg.output_dir}: {err}') from None
    logger = get_logger(cfg.output_dir if cfg.mode == 'train' else None, cfg.log_file)
    try:
        select_device(cfg, logger.info)
        run(cfg, logger)
    except KeyboardInterrupt:
        logger.error('Interrupted.')
        return 130
    except NonFiniteLossError:  # already logged with the checkpoint to go back to
        return 3
    return 0


def main(argv=None):
    """Exit codes: 0 done, 1 an expected failure (one line ``Error: ...``; with ``--debug`` or
    ``ASCENDVSR_DEBUG=1`` the traceback too), 2 a config error, 3 a non-finite loss, 130
    interrupted."""
    args = parse_args(argv)
    debug = args.debug or os.environ.get('ASCENDVSR_DEBUG', '') not in ('', '0')
    from ascendvsr.config import ConfigError
    try:
        cfg = _checked_config(args)
    except ConfigError as err:
        if debug:
            raise
        print(f'Config error: {err}', file=sys.stderr)
        return 2
    try:
        return _run_logged(cfg)
    except KeyboardInterrupt:
        print('Interrupted.', file=sys.stderr)
        return 130
    except Exception as err:
        if debug or not isinstance(err, _expected_failures()):
            raise
        print(f'Error: {_one_line(err)}', file=sys.stderr)
        return 1


def run_cli(argv=None):
    """Run :func:`main` and exit with its code (the console script ``ascendvsr``)."""
    code = main(argv)
    if code:  # skip interpreter shutdown: after an error, tf.data iterator destructors can block
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == '__main__':
    run_cli()
