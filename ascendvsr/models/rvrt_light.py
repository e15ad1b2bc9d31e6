"""RVRT Light (mindspore-lab/mindediting ``mindediting/models/mutil_task/rvrt_light.py``
``RVRT_LIGHT``): RVRT whose guided deformable attention is a plain 3x3 local attention over both
frames of the previous clip (no SpyNet, no flows, no offsets) and whose Swin windows have no
relative position bias.

It is not a separate network: :class:`ascendvsr.models.rvrt.RVRT` built with
``attention='local'`` (plus the MindSpore numerics of the port: tanh GELU, LayerNorm epsilon
1e-7). This module only maps the ``rvrt_light`` config node to those constructor arguments.
"""
from ascendvsr.models.rvrt import RVRT

#: the constructor options that make an RVRT the light model of mindediting
LIGHT = dict(attention='local')


def rvrt_light_kwargs(cfg):
    """RVRT constructor arguments from ``cfg.rvrt_light``."""
    r = cfg.rvrt_light
    return dict(LIGHT, clip_size=r.clip_size, window_size=list(r.window_size),
                num_blocks=list(r.num_blocks), depths=list(r.depths),
                embed_dims=list(r.embed_dims), num_heads=list(r.num_heads),
                mlp_ratio=r.mlp_ratio, inputconv_groups=list(r.inputconv_groups),
                attention_heads=r.attention_heads, attention_window=list(r.attention_window),
                relative_position_bias=r.relative_position_bias,
                approximate_gelu=r.approximate_gelu, norm_eps=r.norm_eps,
                num_frame=r.num_frame, jit_compile=r.jit_compile)


def build_rvrt_light(cfg, **overrides):
    """The RVRT Light of ``cfg.rvrt_light`` (``overrides`` replace constructor arguments;
    ``attention`` cannot be overridden: that would be RVRT)."""
    kwargs = rvrt_light_kwargs(cfg)
    if overrides.get('attention', 'local') != 'local':
        raise ValueError(f"RVRT-Light always uses attention='local'; got "
                         f"attention={overrides['attention']!r} (use model.name=RVRT)")
    kwargs.update(overrides)
    name = kwargs.pop('name', 'RVRT_Light')
    return RVRT(name=name, **kwargs)
