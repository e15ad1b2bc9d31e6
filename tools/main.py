"""The one entry point behind every script.

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
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

MODES = ('train', 'eval', 'inference', 'freeze', 'convert')


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--config-file', default='', help='YAML file under configs/')
    ap.add_argument('--mode', choices=MODES, help='what to run (overrides the config key "mode")')
    ap.add_argument('opts', nargs=argparse.REMAINDER, help='config overrides: KEY VALUE or KEY=VALUE')
    return ap.parse_args(argv)


def load_model_for_inference(cfg, entry, task, logger):
    """The model to run: a frozen ``.pb`` as is, or the registered model with a TF checkpoint."""
    from ascendcv.runner.checkpoint import build_and_restore
    from ascendcv.utils.torch_checkpoint import CheckpointError
    ckpt = cfg.model.checkpoint
    if ckpt.endswith('.pb'):
        from ascendcv.runner.freezer import FrozenGraphModel
        logger.info(f'Running the frozen graph {ckpt}')
        return FrozenGraphModel(ckpt)
    if task.needs_checkpoint and not ckpt:
        raise CheckpointError('model.checkpoint is empty: give a TF checkpoint (prefix or folder) '
                              'or a frozen .pb (e.g. bash scripts/run_evaluation.sh 0 CKPT)')
    model, _ = build_and_restore(entry.build, cfg, ckpt if task.needs_checkpoint else '',
                                 logger=logger.info)
    return model


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
        task.evaluate(load_model_for_inference(cfg, entry, task, logger), logger)
    elif cfg.mode == 'inference':
        task.infer(load_model_for_inference(cfg, entry, task, logger), logger)
    elif cfg.mode == 'freeze':
        from ascendcv.runner.freezer import export_and_check
        export_and_check(cfg, task, entry.build, logger)
    elif cfg.mode == 'convert':
        from ascendvsr.convert import convert_checkpoint
        convert_checkpoint(cfg, entry, logger=logger.info)


def main(argv=None):
    args = parse_args(argv)
    from ascendvsr.config import ConfigError, load_config
    opts = list(args.opts)
    if args.mode:
        opts += ['mode', args.mode]
    try:
        cfg = load_config(args.config_file or None, opts)
    except ConfigError as err:
        print(f'Config error: {err}', file=sys.stderr)
        return 2
    if cfg.mode not in MODES:
        print(f"Config error: mode '{cfg.mode}' is not one of {MODES}", file=sys.stderr)
        return 2
    from ascendcv.runner.device import check_device, select_device
    from ascendvsr.zoo import registered_models
    if cfg.model.name not in registered_models():
        print(f'Config error: model.name={cfg.model.name!r} is not a registered model; known: '
              f'{registered_models()} (ascendvsr/zoo/)', file=sys.stderr)
        return 2
    try:
        check_device(cfg.device, cfg.device_id)
    except ValueError as err:
        print(f'Config error: {err}', file=sys.stderr)
        return 2
    from ascendcv.runner.logging_utils import get_logger
    from ascendcv.runner.trainer import NonFiniteLossError
    from ascendcv.utils.torch_checkpoint import CheckpointError
    try:
        os.makedirs(cfg.output_dir, exist_ok=True)
    except OSError as err:
        print(f'Error: cannot create output_dir {cfg.output_dir}: {err}', file=sys.stderr)
        return 1
    logger = get_logger(cfg.output_dir if cfg.mode == 'train' else None, cfg.log_file)
    try:
        select_device(cfg, logger.info)
        run(cfg, logger)
    except KeyboardInterrupt:
        logger.error('Interrupted.')
        return 130
    except NonFiniteLossError:
        return 3
    except (CheckpointError, ValueError, FileNotFoundError, OSError, RuntimeError,
            IndexError, KeyError) as err:
        print(f'Error: {err}', file=sys.stderr)
        return 1
    except Exception as err:  # a TensorFlow runtime error (tf.errors.OpError): its first line
        import tensorflow as tf
        if not isinstance(err, tf.errors.OpError):
            raise
        first = (err.message.strip().splitlines() or [type(err).__name__])[0]
        print(f'Error: {re.sub(r"^[{][{]function_node [^}]*[}][}] *", "", first)}',
              file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    code = main()
    if code:  # skip interpreter shutdown: after an error, tf.data iterator destructors can block
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)
