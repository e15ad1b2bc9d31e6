"""The official PyTorch side of ``benchmarks/vs_official.py``: one model's forward time and peak
memory, the official code imported from a checkout (never copied), random weights, eval, no_grad,
``torch.set_num_threads(--threads)``. Needs torch + numpy only (a throwaway venv); prints one JSON
line. Not meant to be run by hand: ``vs_official.py`` calls it with the torch interpreter.

Models (the official constructors with the configurations our configs name):

* ``nerv_s``  -- haochen-rye/NeRV ``model_nerv.Generator``, the README's NeRV-S command (embed
  1.25_40, stem 512_1, fc 9_16_26, strides 5 2 2 2 2, lower width 96, swish), one frame per call
  (positional encoding included, as the official ``evaluate`` times it), 720x1280 out;
* ``efficientsci_{t,s,b,l}`` -- ucaswangls/EfficientSCI ``cacti.models.efficientsci``, one
  8 x ``hw`` x ``hw`` measurement (``y``, ``Phi``, ``Phi_s`` as ``tools/test.py`` feeds them);
* ``edvr_m`` -- XPixelGroup/BasicSR ``EDVR`` (EDVR-M, TSA), input 1 x 5 x 3 x 180 x 320, its
  DCN through torchvision's ``deform_conv2d`` (needs torchvision);
* ``revsci`` -- BoChenGroup/RevSCI-net ``re_3dcnn`` (18 blocks, 2 groups), one 8 x ``hw`` x ``hw``
  measurement;
* ``rvrt`` -- JingyunLiang/RVRT ``models/network_rvrt.RVRT``, the VSR configuration of
  ``main_test_rvrt.py`` (tasks 001/002), input 1 x T x 3 x h x w; its CUDA attention extension
  replaced by the pure-PyTorch forward of ``tools/fixtures/make_rvrt_extra_fixture.py``.

    <torch python> benchmarks/official_side.py --model nerv_s --src /tmp/nerv [--repeats 3]
"""
import argparse
import json
import os
import statistics
import sys
import types

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_common import peak_rss_mb, timed_calls  # noqa: E402  (standard library only)

ESCI_SIZES = dict(t=(16, 8, 2), s=(32, 8, 2), b=(64, 8, 4), l=(64, 12, 4))  # in_ch, units, groups
RVRT_VSR = dict(upscale=4, clip_size=2, window_size=[2, 8, 8], num_blocks=[1, 2, 1],
                depths=[2, 2, 2], embed_dims=[144, 144, 144], num_heads=[6, 6, 6],
                inputconv_groups=[1, 1, 1, 1, 1, 1], deformable_groups=12, attention_heads=12,
                attention_window=[3, 3], cpu_cache_length=100)


def build_nerv(src, _args):
    import torch
    sys.path.insert(0, src)
    from model_nerv import Generator
    from utils import PositionalEncoding
    pe = PositionalEncoding('1.25_40')
    model = Generator(embed_length=pe.embed_length, stem_dim_num='512_1', fc_hw_dim='9_16_26',
                      expansion=1.0, num_blocks=1, norm='none', act='swish', bias=True,
                      reduction=2, conv_type='conv', stride_list=[5, 2, 2, 2, 2], sin_res=True,
                      lower_width=96, sigmoid=False).eval()
    frames = 132

    def step(i):
        return model(pe(torch.tensor([i / (frames - 1)], dtype=torch.float32)))[-1]
    return model, step


def build_efficientsci(src, args):
    import numpy as np
    import torch
    sys.path.insert(0, src)
    from cacti.models.efficientsci import EfficientSCI
    in_ch, units, groups = ESCI_SIZES[args.model.rsplit('_', 1)[1]]
    model = EfficientSCI(in_ch=in_ch, units=units, group_num=groups, color_ch=1).eval()
    rng = np.random.default_rng(0)
    hw, b = args.hw, 8
    mask = (rng.random((1, b, hw, hw)) < 0.5).astype(np.float32)
    y = (rng.random((1, b, hw, hw), dtype=np.float32) * mask).sum(1)
    phi = torch.from_numpy(mask)
    phi_s = phi.sum(1)
    phi_s[phi_s == 0] = 1
    y = torch.from_numpy(y)
    return model, lambda _i: model(y, phi, phi_s)[-1]


EDVR_M = dict(num_in_ch=3, num_out_ch=3, num_feat=64, num_frame=5, deformable_groups=8,
              num_extract_block=5, num_reconstruct_block=10, center_frame_idx=None,
              hr_in=False, with_predeblur=False, with_tsa=True)


def build_edvr(src, args):
    """BasicSR ``basicsr/archs/edvr_arch.EDVR`` (EDVR-M) from a checkout holding
    ``basicsr/archs/{edvr_arch,arch_util}.py``, ``basicsr/ops/dcn/`` and
    ``basicsr/utils/registry.py``: the package ``__init__`` files (which import every dataset,
    model and metric) are left out, ``get_root_logger`` is the standard logger. Its DCN is
    ``torchvision.ops.deform_conv2d`` (BasicSR's own CUDA op is not built)."""
    import logging

    import numpy as np
    import torch
    sys.path.insert(0, src)
    utils = types.ModuleType('basicsr.utils')
    utils.__path__ = [os.path.join(src, 'basicsr', 'utils')]
    utils.get_root_logger = lambda *a, **k: logging.getLogger('basicsr')
    sys.modules['basicsr.utils'] = utils
    from basicsr.archs.edvr_arch import EDVR
    model = EDVR(**EDVR_M).eval()
    n, t, h, w = 1, 5, 180, 320
    x = torch.from_numpy(np.random.default_rng(0).random((n, t, 3, h, w), dtype=np.float32))
    return model, lambda _i: model(x)


def build_revsci(src, args):
    """BoChenGroup/RevSCI-net ``models.re_3dcnn`` with ``--num_block 18 --num_group 2``, one
    8 x ``hw`` x ``hw`` normalized measurement as ``test.py`` feeds it."""
    import numpy as np
    import torch
    sys.path.insert(0, src)
    from models import re_3dcnn
    hw, b = args.hw, 8
    opts = types.SimpleNamespace(num_block=18, num_group=2, B=b, size=[hw, hw])
    model = re_3dcnn(opts).eval()
    rng = np.random.default_rng(0)
    model.mask = torch.from_numpy((rng.random((b, hw, hw)) < 0.5).astype(np.float32))
    meas_re = torch.from_numpy(rng.random((1, b, hw, hw), dtype=np.float32))
    return model, lambda _i: model(meas_re, opts)


def build_rvrt(src, args):
    import numpy as np
    import torch
    import torch.utils.cpp_extension as ext
    sys.path.insert(0, os.path.join(ROOT, 'tools', 'fixtures'))
    from make_rvrt_extra_fixture import _fake_extension
    ext.load = lambda *a, **k: _fake_extension()
    try:
        import torchvision  # noqa: F401  (imported, never used by network_rvrt.py)
    except ImportError:
        sys.modules['torchvision'] = types.ModuleType('torchvision')
    sys.path.insert(0, src)
    from models.network_rvrt import RVRT
    n, t, h, w = args.shape
    model = RVRT(img_size=[2, h, w], **RVRT_VSR).eval()
    x = torch.from_numpy(np.random.default_rng(0).random((n, t, 3, h, w), dtype=np.float32))

    def step(_i):
        model.is_mirror_extended = False  # the official state flag, reset per call
        return model(x)
    return model, step


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--model', required=True)
    ap.add_argument('--src', required=True, help='checkout of the official repository')
    ap.add_argument('--repeats', type=int, default=3, help='timed calls after one warm-up')
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--hw', type=int, default=256, help='SCI measurement size')
    ap.add_argument('--shape', type=int, nargs=4, default=[1, 6, 64, 64], help='RVRT n t h w')
    args = ap.parse_args()
    import torch
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    build = dict(nerv_s=build_nerv, rvrt=build_rvrt, edvr_m=build_edvr,
                 revsci=build_revsci).get(args.model, build_efficientsci)
    model, step = build(args.src, args)
    calls = iter(range(1, args.repeats + 1))  # NeRV decodes another frame per call
    with torch.no_grad():
        out = step(0)  # warm-up
        walls, cpus = timed_calls(lambda: step(next(calls)), args.repeats)
    print(json.dumps(dict(side='official', model=args.model, forward_s=statistics.median(walls),
                          runs_s=[round(s, 3) for s in walls],
                          cpu_s=round(statistics.median(cpus), 3),
                          peak_rss_mb=round(peak_rss_mb(), 1),
                          parameters=sum(p.numel() for p in model.parameters()),
                          output=list(out.shape), torch=torch.__version__,
                          threads=torch.get_num_threads())))


if __name__ == '__main__':
    main()
