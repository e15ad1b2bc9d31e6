"""Compute report of an SCI model: parameters, MACs and, for Q-SCI, bit operations and the
theoretical speed-up over full precision.

    .venv/bin/python tools/sci_compute.py --config-file configs/qsci_b4.yaml --size 256 256
    .venv/bin/python tools/sci_compute.py --config-file configs/efficientsci_s.yaml [KEY=VALUE ...]

Prints one JSON object. How it counts:

* **MACs** from the model's own graph: the serving computation is traced (not run) for one
  measurement of ``--size`` and every ``Conv2D`` / ``Conv3D`` / ``MatMul`` / ``BatchMatMulV2``
  contributes ``output elements x reduction length`` (``kd kh kw C_in`` for a convolution, the
  inner dimension for a product; the attention's ``q k^T`` and ``attn v`` included). Element-wise
  work (activations, additions, quantizer arithmetic) is not counted, as in the papers' FLOPs.
* **Bit widths** (Q-SCI): each convolution / linear product takes the ``nbits`` of its layer
  (weights and input activations have the same width in Q-SCI: ``Conv3dQ(nbits_w)`` quantizes
  both); the attention products take the model's ``bit_depth`` (q, k, v and the probabilities
  are quantized to it). Full precision = 32 bits.
* **BOPs** = sum of ``b_w * b_a * MACs`` (Baskin et al.'s bit operations); the full-precision
  model has ``32 * 32 * MACs``.
* **Theoretical speed-up as the Q-SCI paper states it**: the full-precision cost over the
  quantized cost with every MAC weighted by its bit width,
  ``speedup = 32 * MACs_fp / sum_layers(b * MACs)`` with ``MACs_fp`` those of the real-valued
  EfficientSCI of the same size -- ``32 / b`` for a uniform ``b``-bit network, reduced by the
  8-bit parallel branches of the low-bit tree (which also add MACs). For 4-bit EfficientSCI-S
  at 256 x 256 x 8: 32 x 563.41 G / (4 x 563.41 G + 8 x 8.62 G) = 7.76, the paper's 7.8x;
  ``bops_speedup`` (``32^2 / (b_w b_a)`` weighting, 64x for uniform 4-bit) is printed too.

The MACs of a fully convolutional SCI network grow with ``H x W``; ``--size`` defaults to
``data.eval_in_size`` (256 x 256 when that is dynamic).
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

FP_BITS = 32
COUNTED = ('Conv2D', 'Conv3D', 'MatMul', 'BatchMatMulV2')


def _op_macs(op):
    """MACs of one convolution / matrix product op (static shapes)."""
    out = op.outputs[0].shape
    if op.type in ('Conv2D', 'Conv3D'):
        kernel = op.inputs[1].shape
        return out.num_elements() * kernel[:-1].num_elements()
    a = op.inputs[0].shape
    transpose = op.get_attr('transpose_a') if op.type == 'MatMul' else op.get_attr('adj_x')
    inner = a[-2] if transpose else a[-1]
    return out.num_elements() * int(inner)


def _kernel_layer(op, captured, owners):
    """The fake-quant layer whose kernel feeds ``op`` (through ReadVariableOp), or None."""
    seen, stack = set(), [op.inputs[1]] if len(op.inputs) > 1 else []
    while stack:
        t = stack.pop()
        if id(t) in seen:
            continue
        seen.add(id(t))
        if t.op.type == 'Placeholder' and id(t) in captured:
            return owners.get(captured[id(t)])
        stack.extend(t.op.inputs)
    return None


def _count(task, model, h, w, frames):
    """``[(op, MACs)]`` of the traced serving graph for one ``h x w`` measurement."""
    import tensorflow as tf
    specs = [tf.TensorSpec([1, h, w], tf.float32),  # SCI serving inputs: meas, mask
             tf.TensorSpec([h, w, frames], tf.float32)]
    graph = tf.function(lambda *x: task.serve(model, *x)).get_concrete_function(*specs).graph
    return graph, [(op, _op_macs(op)) for op in graph.get_operations() if op.type in COUNTED]


def compute_report(cfg, size=None):
    """The report dict for the model of ``cfg`` at measurement size ``(H, W)``."""
    from ascendcv.layers.fake_quant import quantizers_of
    from ascendvsr.zoo import get_entry
    entry = get_entry(cfg.model.name)
    task = entry.make_task(cfg)
    is_qsci = cfg.model.name == 'Q-SCI'
    # quantizers off: the same layers and products, and no calibration needed to trace
    model = entry.build(cfg, **({'quantize': False} if is_qsci else {}))
    if size is None:
        size = [int(s) if int(s) > 0 else 256 for s in cfg.data.eval_in_size]
    h, w = (int(s) for s in size)
    frames = int(cfg.sci.compression_ratio)
    graph, ops = _count(task, model, h, w, frames)
    macs = sum(n for _, n in ops)
    params = sum(int(v.shape.num_elements()) for v in model.trainable_variables)
    report = dict(model=cfg.model.name, arch=dict(getattr(model, 'arch', {})),
                  measurement=[h, w, frames], params=params, macs=macs, gmacs=macs / 1e9)
    if not is_qsci:
        return report
    captured = {id(inner): id(outer) for outer, inner in graph.captures}
    owners = {id(q.kernel.handle): q for q in quantizers_of(model) if hasattr(q, 'kernel')}
    by_bits = {}
    for op, n in ops:
        layer = _kernel_layer(op, captured, owners)
        bits = layer.nbits if layer is not None else model.bit_depth  # attention products
        by_bits[bits] = by_bits.get(bits, 0) + n
    # the real-valued counterpart, EfficientSCI of the same size: the 8-bit tree is its tree;
    # the low-bit tree is it plus the parallel 8-bit branches (its *_1 convs are EfficientSCI's
    # fem.0/2/4 and vrm.0/2/4), so EfficientSCI's MACs are those of everything but the branches
    fp_macs = macs if model.bit_depth == 8 else macs - by_bits.get(8, 0)
    bit_macs = sum(b * n for b, n in by_bits.items())
    bops = sum(b * b * n for b, n in by_bits.items())
    quant = sum(int(v.shape.num_elements()) for q in quantizers_of(model)
                for v in (q.alpha, getattr(q, 'zero_point', None)) if v is not None)
    moves = sum(int(v.shape.num_elements()) for v in model.trainable_variables
                if 'moveq' in v.path or 'movek' in v.path)
    report.update(
        params_weights_biases=params - quant - moves, params_quantizers=quant,
        params_moveq_movek=moves, macs_by_bits={str(b): n for b, n in sorted(by_bits.items())},
        fp_macs=fp_macs, bops=bops, gbops=bops / 1e9, fp_bops=FP_BITS * FP_BITS * fp_macs,
        speedup=FP_BITS * fp_macs / bit_macs,
        speedup_definition='32 * MACs(real-valued EfficientSCI) / sum over layers of '
                           '(bits * MACs) (the Q-SCI paper\'s 7.8x for 4-bit EfficientSCI-S)',
        bops_speedup=FP_BITS * FP_BITS * fp_macs / bops,
        bops_speedup_definition='32*32 * MACs(EfficientSCI) / sum(b_w * b_a * MACs)')
    return report


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--config-file', required=True)
    parser.add_argument('--size', type=int, nargs=2, metavar=('H', 'W'), default=None)
    parser.add_argument('opts', nargs='*', help='config overrides KEY=VALUE')
    args = parser.parse_args(argv)
    from ascendvsr.config import load_config
    cfg = load_config(args.config_file, args.opts)
    print(json.dumps(compute_report(cfg, args.size), indent=1))


if __name__ == '__main__':
    main()
