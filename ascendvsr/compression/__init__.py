"""Model compression for neural video representations (NeRV): global magnitude pruning,
post-training quantisation, bits-per-pixel accounting and rate-distortion reports.

* :mod:`~ascendvsr.compression.pruning` -- official ``prune_ratio``/``prune_steps`` semantics;
* :mod:`~ascendvsr.compression.quantization` -- official ``quantize_per_tensor`` (``quant_bit``,
  ``quant_axis``);
* :mod:`~ascendvsr.compression.bpp` -- bits per pixel from the stored (non-zero) values;
* :mod:`~ascendvsr.compression.rd` -- CSV and PNG (PIL) of PSNR against bpp.
"""
from ascendvsr.compression.bpp import huffman_bits, storage_report  # noqa: F401
from ascendvsr.compression.pruning import (  # noqa: F401
    global_magnitude_prune, mask_optimizer_state, prunable_variables, prune_model, prune_schedule,
    sparsity)
from ascendvsr.compression.quantization import (quantize_model, quantize_per_tensor,  # noqa: F401
                                                quantize_state_dict)
from ascendvsr.compression.rd import plot_rd, read_rd_csv, write_rd_csv  # noqa: F401
