"""Fit a reduced NeRV to Big Buck Bunny, then prune / quantise it; JSON, CSV and PNG out.

1. Fit ``configs/nerv_small.yaml`` (132 frames at 180x320) for ``--epochs`` epochs with the
   official loss (Fusion6) and warm-up + cosine schedule, evaluating PSNR / MS-SSIM every
   ``--eval-every`` epochs (the PSNR-vs-epochs curve).
2. Post-training quantisation of the fit (``quant_axis`` 0) at 8 / 6 / 4 bits.
3. For each sparsity in ``--sparsity`` (official ``prune_ratio = 1 - sparsity``): prune the fit
   (global magnitude, stem + block convs), fine-tune ``--finetune-epochs`` epochs (warm-up 0,
   cosine, as the official pruning command), evaluate in float32 and at 8 bits. Sparsity 0 is
   the same fine-tuning without pruning: the baseline the pruned points compare with.
4. Write ``fit.json`` (everything), ``rd.csv`` and ``rd.png`` (PSNR vs bpp) to ``--out``.

bpp = non-zero parameters x bits / (132 x 180 x 320) -- see ascendvsr.compression.bpp.

    python benchmarks/nerv_fit.py --epochs 40 --out outputs/nerv_fit
"""
import argparse
import json
import os
import shutil
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--config', default=os.path.join(ROOT, 'configs', 'nerv_small.yaml'))
    ap.add_argument('--epochs', type=int, default=40)
    ap.add_argument('--eval-every', type=int, default=5)
    ap.add_argument('--finetune-epochs', type=int, default=5)
    ap.add_argument('--sparsity', type=float, nargs='*', default=[0.0, 0.1, 0.2, 0.3, 0.4, 0.5],
                    help='0.0 = the same fine-tuning without pruning (the baseline)')
    ap.add_argument('--bits', type=int, nargs='*', default=[8, 6, 4])
    ap.add_argument('--out', default=os.path.join(ROOT, 'outputs', 'nerv_fit'))
    ap.add_argument('opts', nargs='*', help='extra config overrides KEY VALUE ...')
    args = ap.parse_args()

    import keras
    from ascendcv.runner.checkpoint import restore_checkpoint, save_checkpoint
    from ascendcv.runner.distributed import SingleDevice
    from ascendcv.runner.logging_utils import get_logger
    from ascendcv.runner.trainer import Trainer
    from ascendvsr.compression.pruning import prune_model
    from ascendvsr.compression.rd import plot_rd, write_rd_csv
    from ascendvsr.config import load_config
    from ascendvsr.tasks.nerv import NervTask
    from ascendvsr.zoo import get_entry
    build_model = get_entry('NeRV').build

    out = os.path.abspath(args.out)
    if os.path.isdir(out):
        shutil.rmtree(out)
    os.makedirs(out)
    log = get_logger(out, 'log.txt')
    spe = 132  # batch 1
    base = ['output_dir', os.path.join(out, 'fit'), 'solver.total_steps', str(args.epochs * spe),
            'solver.checkpoint_interval', str(args.eval_every * spe), 'nerv.curve', 'curve.json',
            *args.opts]
    cfg = load_config(args.config, base)
    quiet = load_config(args.config, base + ['eval.report', '', 'nerv.curve', ''])

    # ------------------------------------------------------------------ 1. fit
    keras.utils.set_random_seed(cfg.seed)
    model = build_model(cfg)
    trainer = Trainer(cfg, model, NervTask(cfg), log, SingleDevice())
    log.info(f'Fitting {cfg.nerv.num_frames} frames at {model.output_size}, '
             f'{model.count_parameters():,} parameters, {args.epochs} epochs')
    curve, t_train = [], 0.0
    t_start = time.time()
    for epoch in range(args.eval_every, args.epochs + 1, args.eval_every):
        t0 = time.time()
        trainer.train(until=epoch * spe)
        t_train += time.time() - t0
        rep = NervTask(cfg).evaluate(model, log, step=epoch * spe)
        curve.append(dict(epoch=epoch, psnr=rep['psnr'], ms_ssim=rep['ms_ssim'],
                          train_s=round(t_train, 1), decode_fps=rep['decode_fps']))
        log.info(f'epoch {epoch}: PSNR {rep["psnr"]:.2f} dB, MS-SSIM {rep["ms_ssim"]:.4f}, '
                 f'training {t_train / epoch:.1f} s/epoch')
    fit_ckpt = save_checkpoint(model, os.path.join(out, 'fit', 'final'))
    fit = NervTask(quiet).evaluate(model, log)
    rows = [dict(series='fit float32', bpp=fit['bpp'], psnr=fit['psnr'], ms_ssim=fit['ms_ssim'],
                 sparsity=0.0, quant_bit=32)]

    # bfloat16 decoding of the same weights (speed option): its PSNR cost
    bf = build_model(cfg, compute_dtype='bfloat16')
    restore_checkpoint(bf, fit_ckpt)
    bf16 = NervTask(quiet).evaluate(bf, log)

    # ------------------------------------------------------------------ 2. quantisation
    for bit in args.bits:
        qcfg = load_config(args.config, base + ['eval.report', '', 'nerv.curve', '',
                                                'nerv.quant_bit', str(bit)])
        qm = build_model(cfg)
        restore_checkpoint(qm, fit_ckpt)
        rep = NervTask(qcfg).evaluate(qm, log)
        rows.append(dict(series='quantised', bpp=rep['bpp'], psnr=rep['psnr'],
                         ms_ssim=rep['ms_ssim'], sparsity=0.0, quant_bit=bit,
                         bpp_huffman=rep['storage']['bpp_huffman']))

    # ------------------------------------------------------------------ 3. pruning
    for s in args.sparsity:
        ratio = round(1.0 - s, 6)
        pdir = os.path.join(out, f'prune_{s:.1f}')
        popts = ['output_dir', pdir, 'model.checkpoint', fit_ckpt, 'nerv.prune_ratio',
                 str(ratio), 'nerv.warmup', '0.0', 'solver.total_steps',
                 str(args.finetune_epochs * spe), 'solver.checkpoint_interval',
                 str(args.finetune_epochs * spe), 'eval.report', '', 'nerv.curve', '']
        pcfg = load_config(args.config, base + popts)
        t0 = time.time()
        pm = build_model(pcfg)
        restore_checkpoint(pm, fit_ckpt)
        no_ft = build_model(pcfg)
        restore_checkpoint(no_ft, fit_ckpt)
        prune_model(no_ft, s)
        before_ft = NervTask(pcfg).evaluate(no_ft, log)
        Trainer(pcfg, pm, NervTask(pcfg), log, SingleDevice()).train()
        ft_s = time.time() - t0
        rep = NervTask(pcfg).evaluate(pm, log)
        rows.append(dict(series='pruned + fine-tuned', bpp=rep['bpp'], psnr=rep['psnr'],
                         ms_ssim=rep['ms_ssim'], sparsity=s, prune_ratio=ratio, quant_bit=32,
                         psnr_before_finetune=before_ft['psnr'], finetune_s=round(ft_s, 1),
                         prunable_sparsity=rep['storage']['prunable_sparsity']))
        q8 = load_config(args.config, base + popts + ['nerv.quant_bit', '8'])
        rep8 = NervTask(q8).evaluate(pm, log)
        rows.append(dict(series='pruned + fine-tuned, 8 bit', bpp=rep8['bpp'], psnr=rep8['psnr'],
                         ms_ssim=rep8['ms_ssim'], sparsity=s, prune_ratio=ratio, quant_bit=8,
                         bpp_huffman=rep8['storage']['bpp_huffman']))

    write_rd_csv(os.path.join(out, 'rd.csv'), rows)
    plot_rd(os.path.join(out, 'rd.png'), rows, title='NeRV-small on Big Buck Bunny (180x320)')
    result = dict(benchmark='nerv_fit', config=os.path.relpath(args.config, ROOT),
                  frames=fit['frames'], size=[fit['height'], fit['width']],
                  params=fit['storage']['params'], epochs=args.epochs,
                  train_s_per_epoch=round(t_train / args.epochs, 2),
                  wall_s=round(time.time() - t_start, 1), psnr_vs_epoch=curve,
                  final=dict(psnr=fit['psnr'], psnr_uint8=fit['psnr_uint8'],
                             ms_ssim=fit['ms_ssim'], bpp=fit['bpp'],
                             decode_fps_batch=dict(fps=fit['decode_fps'],
                                                   batch=cfg.data.eval_batch_size)),
                  bf16_decoding=dict(psnr=bf16['psnr'], psnr_drop=fit['psnr'] - bf16['psnr'],
                                     decode_fps=bf16['decode_fps']),
                  rate_distortion=rows, load_average=[round(v, 2) for v in os.getloadavg()])
    with open(os.path.join(out, 'fit.json'), 'w') as f:
        json.dump(result, f, indent=1)
    print(json.dumps(result, indent=1))


if __name__ == '__main__':
    main()
