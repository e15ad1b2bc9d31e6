"""The one entry point behind every script.

    python tools/main.py --config-file configs/edvr.yaml --mode MODE [KEY VALUE | KEY=VALUE ...]

Modes:
  convert    official PyTorch checkpoint (convert.source) -> TF checkpoint (convert.output)
  inference  restore inference.source (video file or frame folder) with model.checkpoint
"""
import argparse
import logging
import os
import sys

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

MODES = ('convert', 'inference')


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--config-file', default='', help='YAML file under configs/')
    ap.add_argument('--mode', choices=MODES, help='what to run (overrides the config key "mode")')
    ap.add_argument('opts', nargs=argparse.REMAINDER, help='config overrides: KEY VALUE or KEY=VALUE')
    return ap.parse_args(argv)


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
    log = logging.getLogger('ascendvsr')
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter('%(asctime)s %(message)s', '%Y-%m-%d %H:%M:%S'))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    from ascendcv.utils.torch_checkpoint import CheckpointError
    try:
        if cfg.mode == 'convert':
            from ascendvsr.convert import convert_checkpoint
            convert_checkpoint(cfg, logger=log.info)
        elif cfg.mode == 'inference':
            from ascendcv.runner.inferencer import run_inference
            from ascendvsr.models import build_model
            from ascendcv.runner.checkpoint import restore_checkpoint
            model = build_model(cfg)
            if not cfg.model.checkpoint:
                raise CheckpointError('model.checkpoint is empty: give the TF checkpoint to run '
                                      '(e.g. the output of --mode convert)')
            restore_checkpoint(model, cfg.model.checkpoint)
            run_inference(cfg, model, logger=log.info)
    except (CheckpointError, ValueError, FileNotFoundError, OSError, RuntimeError) as err:
        print(f'Error: {err}', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
