"""Bits per pixel of a neural video representation, from what is actually stored.

Definition used here (``bpp``)::

    bpp = stored_values * bits_per_value / (frames * H * W)

* ``stored_values``: the **non-zero** entries of every parameter tensor of the decoder -- stem
  and conv weights, RGB-head weights, all biases, and BatchNorm weights/statistics when
  ``norm='bn'``. Pruned weights are exact zeros and are not stored; a bias or head weight that
  is exactly zero would not be stored either (the official Huffman count uses the same
  ``v != 0`` rule for every tensor). The positional encoding has no parameters (it is computed
  from the frame index), so it costs nothing; the architecture hyper-parameters (a few bytes)
  are ignored.
* ``bits_per_value``: ``quant_bit`` after quantisation, 32 for float32 weights.
* pixels: ``frames * H * W`` (not times 3 channels), as the paper.

Not included in ``bpp`` (as in the paper and the official README's formula), reported
separately: the per-channel/per-tensor ``min`` and ``scale`` of the quantiser
(``quant_overhead_bits``, 2 x 32 bits per quantised slice), the positions of the non-zero
weights of pruned tensors (``mask_bits``: a 1-bit-per-weight bitmap of the prunable tensors;
entropy-coded it would cost ``n * H2(sparsity)``, also given), and the gain of entropy coding the
quantised codes (``bpp_huffman``: Huffman code over the codes, as the official evaluation
measures its "encoding efficiency").

The official README's ``ModelParameter * (1 - ModelSparsity) * QuantBit / PixelNum`` leaves open
whether biases count, over which parameters the sparsity is taken, whether pixels count colour
channels and what the side information costs; its code measures sparsity over **all**
parameters (zeros / total), which makes its formula identical to ``stored_values`` above.
"""
import heapq
import math

import numpy as np

from ascendcv.layers.torch_compat import torch_state_dict

__all__ = ['huffman_bits', 'storage_report']


def huffman_bits(codes):
    """Total bits of a Huffman code for the symbols ``codes`` (any integer array/list)."""
    values = np.concatenate([np.asarray(c).ravel() for c in codes]) if isinstance(
        codes, (list, tuple)) else np.asarray(codes).ravel()
    if values.size == 0:
        return 0
    _, counts = np.unique(values, return_counts=True)
    if len(counts) == 1:
        return int(values.size)  # one symbol still needs one bit per value
    heap = [int(c) for c in counts]
    heapq.heapify(heap)
    total = 0
    while len(heap) > 1:  # total cost = sum of the weights of all internal nodes
        merged = heapq.heappop(heap) + heapq.heappop(heap)
        total += merged
        heapq.heappush(heap, merged)
    return int(total)


def _h2(p):
    return 0.0 if p <= 0 or p >= 1 else -(p * math.log2(p) + (1 - p) * math.log2(1 - p))


def storage_report(model, num_frames, height, width, quant_bit=None, quant_axis=0, codes=None):
    """What the decoder of ``num_frames`` frames of ``height x width`` costs to store.

    Args:
        model: a NeRV (anything with ``torch_weights`` naming its parameters).
        quant_bit (int | None): bits per stored value (None/-1: float32 = 32 bits).
        quant_axis (int): the quantiser's axis (for the range side information).
        codes (dict | None): ``{name: int codes}`` from :func:`quantize_model`, for Huffman.

    Returns a dict (see the module docstring): ``params``, ``stored_values``,
    ``bits_per_value``, ``pixels``, ``bpp``, ``bpp_dense`` (no pruning credit),
    ``quant_overhead_bits``, ``mask_bits``, ``mask_bits_entropy``, ``bpp_with_side_info``
    (+ range and bitmap side information), ``bpp_huffman`` (when ``codes`` are given),
    ``size_bytes`` (``stored_values * bits / 8``).
    """
    from ascendvsr.compression.quantization import tensor_axis
    quantized = quant_bit is not None and int(quant_bit) > 0
    bits = int(quant_bit) if quantized else 32
    sd = torch_state_dict(model)
    params = sum(int(v.size) for v in sd.values())
    stored = sum(int(np.count_nonzero(v)) for v in sd.values())
    pixels = int(num_frames) * int(height) * int(width)
    overhead = 0
    if quantized:
        for name, v in sd.items():
            axis = tensor_axis(name, v, quant_axis)
            overhead += 64 * (1 if axis == -1 or v.ndim < 2 else v.shape[axis])
    prunable = [f'{p}.weight' for p in model.prunable_layers()] if hasattr(
        model, 'prunable_layers') else []
    n_prunable = sum(int(sd[k].size) for k in prunable if k in sd)
    z_prunable = sum(int(sd[k].size - np.count_nonzero(sd[k])) for k in prunable if k in sd)
    mask_bits = n_prunable if z_prunable else 0
    mask_entropy = n_prunable * _h2(z_prunable / n_prunable) if z_prunable else 0.0
    report = dict(params=params, stored_values=stored, bits_per_value=bits, pixels=pixels,
                  frames=int(num_frames), height=int(height), width=int(width),
                  bpp=stored * bits / pixels, bpp_dense=params * bits / pixels,
                  quant_overhead_bits=overhead, mask_bits=mask_bits,
                  mask_bits_entropy=mask_entropy,
                  bpp_with_side_info=(stored * bits + overhead + mask_bits) / pixels,
                  size_bytes=stored * bits / 8.0,
                  prunable_sparsity=z_prunable / n_prunable if n_prunable else 0.0)
    if codes is not None:
        total = huffman_bits(list(codes.values()))
        report['bpp_huffman'] = total / pixels
        report['huffman_bits_per_value'] = total / max(stored, 1)
    return report
